//! automerge-repo document ids: 16 random bytes, shown as bs58check text,
//! and written in URLs as `automerge:<id>`.

use std::fmt;
use std::str::FromStr;

use crate::ProtocolError;

/// The URL scheme automerge-repo uses for document references.
pub const URL_PREFIX: &str = "automerge:";

/// A document id as automerge-repo spells it (bs58check of 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

impl DocumentId {
    /// A fresh random id (UUID v4 bytes, as automerge-repo makes them).
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// `automerge:<id>`, the form stock clients pass to `repo.find`.
    pub fn to_url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Accepts both the bare id and the `automerge:` URL (a `#heads` suffix is ignored).
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let bare = text.strip_prefix(URL_PREFIX).unwrap_or(text);
        let bare = bare.split('#').next().unwrap_or(bare);
        let bytes = bs58::decode(bare)
            .with_check(None)
            .into_vec()
            .map_err(|_| ProtocolError::InvalidDocumentId(text.to_owned()))?;
        let array: [u8; 16] = bytes
            .try_into()
            .map_err(|_| ProtocolError::InvalidDocumentId(text.to_owned()))?;
        Ok(Self(array))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_url() {
        let id = DocumentId::random();
        assert_eq!(DocumentId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(DocumentId::parse(&id.to_url()).unwrap(), id);
    }

    #[test]
    fn rejects_bad_checksum_and_wrong_length() {
        let id = DocumentId::random().to_string();
        let mut chars: Vec<char> = id.chars().collect();
        chars[3] = if chars[3] == 'a' { 'b' } else { 'a' };
        let corrupted: String = chars.into_iter().collect();
        assert!(DocumentId::parse(&corrupted).is_err());
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert!(DocumentId::parse(&short).is_err());
    }

    #[test]
    fn leading_zero_bytes_survive_the_text_form() {
        let zero = DocumentId::from_bytes([0; 16]);
        let text = zero.to_string();
        assert_eq!(DocumentId::parse(&text).unwrap(), zero);
        assert!(
            text.starts_with('1'),
            "bs58 encodes leading zero bytes as '1': {text}"
        );
    }
}

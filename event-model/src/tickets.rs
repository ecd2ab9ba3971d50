//! Signed ticket codes: a ticket a tablet can admit without having the
//! attendee in its local list, because the code itself says who it is for
//! and the event's key vouches for it (pretix's answer to the download a
//! fresh scanner needs; here it sits beside the CRDT merge: the scan made on
//! a signed code is an ordinary scan record and merges like any other).
//!
//! A code is `TK1:` followed by the RFC 4648 base32 (no padding) of a small
//! binary record and its Ed25519 signature. Base32's alphabet, the prefix
//! and its colon are all in a QR code's alphanumeric mode, which packs 5.5
//! bits per character, so a code for a UUID attendee and a short ticket
//! type (about 170 characters) fits a version 8 QR code at level M.
//!
//! ```text
//! byte   0      format version (1)
//! bytes  1..5   the event's tag: the first 4 bytes of SHA-256(event document id)
//! byte   5      attendee id form: 0 text, then its length (u8) and UTF-8 bytes;
//!                                 1 a UUID, then its 16 bytes
//! ...           ticket type: length (u8) and UTF-8 bytes
//! ...           issued at, valid from, valid until: u32 big-endian Unix seconds each
//!               (0 for "no bound" in the last two)
//! last 64       Ed25519 signature of "event-ticket/v1" followed by everything above
//! ```
//!
//! The event's key pair is the server's (it derives one per event document
//! and never stores or sends the private half); the public key lives in the
//! event document, where only an administrator may write it.

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// What every signed code starts with (its format version is the digit).
pub const CODE_PREFIX: &str = "TK1:";
/// What a public key's text form starts with.
pub const KEY_PREFIX: &str = "ed25519:";
const FORMAT_VERSION: u8 = 1;
/// Signed before the record, so a signature made for anything else (another
/// protocol using the same key) never passes for a ticket.
const SIGNING_CONTEXT: &[u8] = b"event-ticket/v1";
/// The longest attendee id or ticket type a code carries, in bytes.
pub const MAX_FIELD_BYTES: usize = 64;
const TAG_BYTES: usize = 4;
const ID_TEXT: u8 = 0;
const ID_UUID: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketCodeError {
    #[error("not a signed ticket code (it does not start with {CODE_PREFIX})")]
    NotSigned,
    #[error("malformed signed ticket code: {0}")]
    Malformed(&'static str),
    #[error("signed ticket code format {0} is newer than this app understands")]
    UnknownVersion(u8),
    #[error("the ticket is for another event")]
    OtherEvent,
    #[error("the ticket's signature does not verify: the code was forged or altered")]
    InvalidSignature,
    #[error("the {what} is longer than {MAX_FIELD_BYTES} bytes")]
    TooLong { what: &'static str },
    #[error("the {what} is outside the years 1970-2106 a code can carry")]
    OutOfRange { what: &'static str },
    #[error("malformed ticket key: {0}")]
    BadKey(&'static str),
}

/// What a signed code says about its ticket. Times are Unix milliseconds,
/// carried to the second: `valid_from_ms` and `issued_at_ms` rounded down,
/// `valid_until_ms` up, so a code is never valid for less than was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketClaims {
    pub attendee_id: String,
    pub ticket_type: String,
    /// When the code was made: a revocation of the attendee made later
    /// refuses it, a code issued after the revocation is good.
    pub issued_at_ms: i64,
    pub valid_from_ms: Option<i64>,
    /// The first moment it is no longer valid.
    pub valid_until_ms: Option<i64>,
}

/// Whether a code is valid at a moment, by its own dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    NotYetValid { from_ms: i64 },
    Expired { until_ms: i64 },
}

impl TicketClaims {
    pub fn validity_at(&self, now_ms: i64) -> Validity {
        if let Some(from_ms) = self.valid_from_ms
            && now_ms < from_ms
        {
            return Validity::NotYetValid { from_ms };
        }
        if let Some(until_ms) = self.valid_until_ms
            && now_ms >= until_ms
        {
            return Validity::Expired { until_ms };
        }
        Validity::Valid
    }
}

/// The tag that ties a code to one event: the first bytes of the SHA-256
/// of its document id.
fn event_tag(event_document: &str) -> [u8; TAG_BYTES] {
    let digest = Sha256::digest(event_document.as_bytes());
    let mut tag = [0; TAG_BYTES];
    tag.copy_from_slice(&digest[..TAG_BYTES]);
    tag
}

/// Whether `code` has the form of a signed code (says nothing of its
/// signature): what a scanner asks before trying the signature.
pub fn looks_signed(code: &str) -> bool {
    code.trim()
        .get(..CODE_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(CODE_PREFIX))
}

fn seconds(ms: i64, round_up: bool, what: &'static str) -> Result<u32, TicketCodeError> {
    let secs = if round_up {
        ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
    } else {
        ms.div_euclid(1000)
    };
    u32::try_from(secs).map_err(|_| TicketCodeError::OutOfRange { what })
}

fn bound(ms: Option<i64>, round_up: bool, what: &'static str) -> Result<u32, TicketCodeError> {
    match ms {
        None => Ok(0),
        // 0 means "no bound", so the epoch itself is carried as a second later.
        Some(ms) => seconds(ms, round_up, what).map(|s| s.max(1)),
    }
}

fn push_text(out: &mut Vec<u8>, text: &str, what: &'static str) -> Result<(), TicketCodeError> {
    let len = u8::try_from(text.len())
        .ok()
        .filter(|len| usize::from(*len) <= MAX_FIELD_BYTES)
        .ok_or(TicketCodeError::TooLong { what })?;
    out.push(len);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The record a code signs (everything but the signature).
fn encode_claims(event_document: &str, claims: &TicketClaims) -> Result<Vec<u8>, TicketCodeError> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&event_tag(event_document));
    // A UUID in its usual text form (lowercase, hyphenated) is carried as its
    // 16 bytes, less than half its text; only where the text comes back
    // exactly, so the id read out is the id written in.
    match uuid::Uuid::parse_str(&claims.attendee_id) {
        Ok(id) if id.hyphenated().to_string() == claims.attendee_id => {
            out.push(ID_UUID);
            out.extend_from_slice(id.as_bytes());
        }
        _ => {
            out.push(ID_TEXT);
            push_text(&mut out, &claims.attendee_id, "attendee id")?;
        }
    }
    push_text(&mut out, &claims.ticket_type, "ticket type")?;
    out.extend_from_slice(&seconds(claims.issued_at_ms, false, "issue time")?.to_be_bytes());
    out.extend_from_slice(&bound(claims.valid_from_ms, false, "start of validity")?.to_be_bytes());
    out.extend_from_slice(&bound(claims.valid_until_ms, true, "end of validity")?.to_be_bytes());
    Ok(out)
}

/// Reads a record back; `Malformed` for anything but exactly one record.
fn decode_claims(bytes: &[u8]) -> Result<([u8; TAG_BYTES], TicketClaims), TicketCodeError> {
    let mut reader = Reader(bytes);
    let version = reader.byte()?;
    if version != FORMAT_VERSION {
        return Err(TicketCodeError::UnknownVersion(version));
    }
    let mut tag = [0; TAG_BYTES];
    tag.copy_from_slice(reader.take(TAG_BYTES)?);
    let attendee_id = match reader.byte()? {
        ID_TEXT => reader.text()?,
        ID_UUID => {
            let bytes: [u8; 16] = reader
                .take(16)?
                .try_into()
                .map_err(|_| TicketCodeError::Malformed("short attendee id"))?;
            uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
        }
        _ => return Err(TicketCodeError::Malformed("unknown attendee id form")),
    };
    let ticket_type = reader.text()?;
    let issued = reader.u32()?;
    let from = reader.u32()?;
    let until = reader.u32()?;
    if !reader.0.is_empty() {
        return Err(TicketCodeError::Malformed("bytes after the record"));
    }
    let ms = |secs: u32| i64::from(secs) * 1000;
    Ok((
        tag,
        TicketClaims {
            attendee_id,
            ticket_type,
            issued_at_ms: ms(issued),
            valid_from_ms: (from != 0).then(|| ms(from)),
            valid_until_ms: (until != 0).then(|| ms(until)),
        },
    ))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TicketCodeError> {
        if self.0.len() < n {
            return Err(TicketCodeError::Malformed("the record ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, TicketCodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, TicketCodeError> {
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| TicketCodeError::Malformed("the record ends early"))?;
        Ok(u32::from_be_bytes(bytes))
    }

    fn text(&mut self) -> Result<String, TicketCodeError> {
        let len = usize::from(self.byte()?);
        if len > MAX_FIELD_BYTES {
            return Err(TicketCodeError::Malformed("a text field is too long"));
        }
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| TicketCodeError::Malformed("a text field is not UTF-8"))
    }
}

fn signed_message(record: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, record].concat()
}

/// Makes the signed code for `claims` on the event whose document id is
/// `event_document`, with that event's signing key.
pub fn issue(
    key: &SigningKey,
    event_document: &str,
    claims: &TicketClaims,
) -> Result<String, TicketCodeError> {
    let mut record = encode_claims(event_document, claims)?;
    let signature = key.sign(&signed_message(&record));
    record.extend_from_slice(&signature.to_bytes());
    Ok(format!("{CODE_PREFIX}{}", BASE32_NOPAD.encode(&record)))
}

/// Checks a scanned code against the event's public key: what the ticket
/// says, once its signature holds and it names this event. Any change to
/// the code (one character) fails here; its dates are the caller's to
/// check against the time (`TicketClaims::validity_at`).
pub fn verify(
    key: &VerifyingKey,
    event_document: &str,
    code: &str,
) -> Result<TicketClaims, TicketCodeError> {
    let code = code.trim();
    if !looks_signed(code) {
        return Err(TicketCodeError::NotSigned);
    }
    // Scanners and people may hand the code over in lower case.
    let body = code[CODE_PREFIX.len()..].to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| TicketCodeError::Malformed("not base32"))?;
    let Some(split) = bytes.len().checked_sub(Signature::BYTE_SIZE) else {
        return Err(TicketCodeError::Malformed("too short to carry a signature"));
    };
    let (record, signature) = bytes.split_at(split);
    let (tag, claims) = decode_claims(record)?;
    if tag != event_tag(event_document) {
        return Err(TicketCodeError::OtherEvent);
    }
    let signature =
        Signature::from_slice(signature).map_err(|_| TicketCodeError::InvalidSignature)?;
    key.verify_strict(&signed_message(record), &signature)
        .map_err(|_| TicketCodeError::InvalidSignature)?;
    Ok(claims)
}

/// A public key as the event document and the REST API carry it.
pub fn key_text(key: &VerifyingKey) -> String {
    format!("{KEY_PREFIX}{}", BASE32_NOPAD.encode(key.as_bytes()))
}

/// Reads a public key written by [`key_text`].
pub fn parse_key(text: &str) -> Result<VerifyingKey, TicketCodeError> {
    let body = text
        .trim()
        .strip_prefix(KEY_PREFIX)
        .ok_or(TicketCodeError::BadKey("it does not start with ed25519:"))?;
    let bytes: [u8; 32] = BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(TicketCodeError::BadKey("not 32 bytes in base32"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| TicketCodeError::BadKey("not a curve point"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENT: &str = "2Jj6VQh9Tdb3ZfZ8Dmbiw2KSqdCw";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims() -> TicketClaims {
        TicketClaims {
            attendee_id: "0b9e3c1c-2f4d-4b8e-9d4a-6f1e2a3b4c5d".into(),
            ticket_type: "day".into(),
            issued_at_ms: 1_780_000_000_000,
            valid_from_ms: Some(1_780_100_000_000),
            valid_until_ms: Some(1_780_200_000_000),
        }
    }

    #[test]
    fn a_code_verifies_under_its_events_key_and_says_what_was_signed() {
        let code = issue(&key(1), EVENT, &claims()).unwrap();
        assert!(code.starts_with(CODE_PREFIX) && looks_signed(&code));
        assert!(
            code.len() <= 180,
            "{} characters: too long for the QR version promised",
            code.len()
        );
        assert_eq!(
            verify(&key(1).verifying_key(), EVENT, &code).unwrap(),
            claims()
        );
        // As a scanner may hand it over: lower case, with a newline.
        let lower = format!("{}\n", code.to_ascii_lowercase());
        assert_eq!(
            verify(&key(1).verifying_key(), EVENT, &lower).unwrap(),
            claims()
        );
    }

    #[test]
    fn another_key_another_event_and_plain_codes_are_refused_clearly() {
        let code = issue(&key(1), EVENT, &claims()).unwrap();
        assert_eq!(
            verify(&key(2).verifying_key(), EVENT, &code),
            Err(TicketCodeError::InvalidSignature)
        );
        assert_eq!(
            verify(&key(1).verifying_key(), "another event", &code),
            Err(TicketCodeError::OtherEvent)
        );
        assert_eq!(
            verify(&key(1).verifying_key(), EVENT, "CODE-0001"),
            Err(TicketCodeError::NotSigned)
        );
        assert!(!looks_signed("CODE-0001"));
        assert_eq!(
            verify(&key(1).verifying_key(), EVENT, "TK1:not base32!"),
            Err(TicketCodeError::Malformed("not base32"))
        );
        assert_eq!(
            verify(&key(1).verifying_key(), EVENT, "TK1:AAAA"),
            Err(TicketCodeError::Malformed("too short to carry a signature"))
        );
        // A future format is named as such, not as a forgery.
        let mut bytes = BASE32_NOPAD.decode(&code.as_bytes()[4..]).unwrap();
        bytes[0] = 2;
        let future = format!("TK1:{}", BASE32_NOPAD.encode(&bytes));
        assert_eq!(
            verify(&key(1).verifying_key(), EVENT, &future),
            Err(TicketCodeError::UnknownVersion(2))
        );
    }

    #[test]
    fn text_ids_long_fields_and_far_dates() {
        let mut text_id = claims();
        text_id.attendee_id = "A-0042".into();
        text_id.valid_from_ms = None;
        text_id.valid_until_ms = None;
        let code = issue(&key(3), EVENT, &text_id).unwrap();
        assert_eq!(verify(&key(3).verifying_key(), EVENT, &code), Ok(text_id));
        // An upper-case UUID is text: it comes back exactly as it went in.
        let mut upper = claims();
        upper.attendee_id = upper.attendee_id.to_ascii_uppercase();
        let code = issue(&key(3), EVENT, &upper).unwrap();
        assert_eq!(verify(&key(3).verifying_key(), EVENT, &code), Ok(upper));
        let mut long = claims();
        long.ticket_type = "x".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            issue(&key(3), EVENT, &long),
            Err(TicketCodeError::TooLong {
                what: "ticket type"
            })
        );
        let mut far = claims();
        far.valid_until_ms = Some(5_000_000_000_000);
        assert_eq!(
            issue(&key(3), EVENT, &far),
            Err(TicketCodeError::OutOfRange {
                what: "end of validity"
            })
        );
    }

    #[test]
    fn dates_round_outwards_and_bound_validity() {
        let mut odd = claims();
        odd.valid_from_ms = Some(1_000_500);
        odd.valid_until_ms = Some(2_000_500);
        let read = verify(
            &key(4).verifying_key(),
            EVENT,
            &issue(&key(4), EVENT, &odd).unwrap(),
        )
        .unwrap();
        assert_eq!(read.valid_from_ms, Some(1_000_000));
        assert_eq!(read.valid_until_ms, Some(2_001_000));
        assert_eq!(
            read.validity_at(999_999),
            Validity::NotYetValid { from_ms: 1_000_000 }
        );
        assert_eq!(read.validity_at(1_000_000), Validity::Valid);
        assert_eq!(read.validity_at(2_000_999), Validity::Valid);
        assert_eq!(
            read.validity_at(2_001_000),
            Validity::Expired {
                until_ms: 2_001_000
            }
        );
    }

    #[test]
    fn keys_round_trip_through_text_and_bad_keys_say_why() {
        let public = key(5).verifying_key();
        let text = key_text(&public);
        assert!(text.starts_with(KEY_PREFIX));
        assert_eq!(parse_key(&text).unwrap(), public);
        assert_eq!(parse_key(&text.to_ascii_lowercase()).unwrap(), public);
        assert!(matches!(
            parse_key("ed25519:AAAA"),
            Err(TicketCodeError::BadKey(_))
        ));
        assert!(matches!(
            parse_key("rsa:AAAA"),
            Err(TicketCodeError::BadKey(_))
        ));
    }

    proptest! {
        /// Changing any one character of a code (to another base32 one)
        /// never yields a code that verifies.
        #[test]
        fn every_altered_code_is_refused(position in 0usize..1000, replacement in 0usize..32) {
            let code = issue(&key(6), EVENT, &claims()).unwrap();
            let body: Vec<char> = code[CODE_PREFIX.len()..].chars().collect();
            let at = position % body.len();
            let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".chars().collect();
            let mut altered = body.clone();
            altered[at] = alphabet[replacement];
            prop_assume!(altered != body);
            let altered = format!("{CODE_PREFIX}{}", altered.into_iter().collect::<String>());
            prop_assert!(verify(&key(6).verifying_key(), EVENT, &altered).is_err());
        }

        /// Whatever fits a code comes back as it went in.
        #[test]
        fn claims_round_trip(
            attendee_id in "[a-zA-Z0-9-]{1,64}",
            ticket_type in "\\PC{0,16}",
            issued in 0i64..4_000_000_000,
            from in proptest::option::of(1i64..4_000_000_000),
            until in proptest::option::of(1i64..4_000_000_000),
        ) {
            let claims = TicketClaims {
                attendee_id,
                ticket_type,
                issued_at_ms: issued * 1000,
                valid_from_ms: from.map(|s| s * 1000),
                valid_until_ms: until.map(|s| s * 1000),
            };
            prop_assume!(claims.ticket_type.len() <= MAX_FIELD_BYTES);
            let code = issue(&key(7), EVENT, &claims).unwrap();
            prop_assert_eq!(verify(&key(7).verifying_key(), EVENT, &code), Ok(claims));
        }
    }
}

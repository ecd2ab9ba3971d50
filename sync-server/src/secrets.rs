//! Secrets sealed at rest: TOTP secrets and the refresh-derivation secret
//! are stored encrypted (XChaCha20-Poly1305, RustCrypto) under a key the
//! server reads from a file or the environment, never from the database. A
//! copy of the store without the key holds no usable secret.
//!
//! A sealed value is text: `sealed:v1:<key id>:<base64 of nonce || ciphertext>`.
//! The key id (the first 8 bytes of the key's SHA-256, in hex) says which key
//! sealed it, so several keys can be known at once while rotating: the
//! current one seals, any known one opens. Each value is bound to what it is
//! (`purpose`, e.g. the user it belongs to) as associated data, so a sealed
//! secret moved to another row does not open.

use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";
/// The environment variable that may hold the current key (base64).
pub const KEY_ENV: &str = "SYNC_SECRETS_KEY";
/// Where the embedded store's key is made when none is configured.
pub const DEFAULT_KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write a new secrets key to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key {0} is not 32 bytes in base64")]
    BadKey(String),
    #[error(
        "with PostgreSQL, every node needs the same secrets key: set `secrets_key_file` or {KEY_ENV}"
    )]
    KeyRequired,
    #[error("the value is not sealed")]
    NotSealed,
    #[error(
        "sealed under key {0}, which this server does not have (was the store moved without its key?)"
    )]
    UnknownKey(String),
    #[error("the sealed value does not open: altered, or sealed for something else")]
    Tampered,
}

struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    fn new(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        Self {
            id: hex::encode(&digest[..8]),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The keys this server knows: the current one first.
pub struct SecretKeys {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A new random key, as the text a key file holds.
pub fn new_key_text() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Writes `text` to a new file only the owner can read.
pub fn write_key_file(path: &Path, text: &str) -> Result<(), SecretsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = |path: &Path| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write(path).map_err(|source| SecretsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn parse_key(text: &str, what: &str) -> Result<[u8; 32], SecretsError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| SecretsError::BadKey(what.to_owned()))
}

fn read_key(path: &Path) -> Result<[u8; 32], SecretsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_key(&text, &path.display().to_string())
}

impl SecretKeys {
    /// From raw keys (tests, and the loaders below).
    pub fn from_keys(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        Self {
            current: SealingKey::new(current),
            previous: previous.iter().map(SealingKey::new).collect(),
        }
    }

    /// The server's keys: `key_file`, else [`KEY_ENV`], else (embedded store
    /// only) `data_dir/secrets.key`, made on first start. `previous_files`
    /// are keys being rotated away from (they open, never seal).
    pub fn load(
        key_file: Option<&Path>,
        previous_files: &[PathBuf],
        data_dir: &Path,
        shared_database: bool,
    ) -> Result<Self, SecretsError> {
        let current = match (key_file, std::env::var(KEY_ENV)) {
            (Some(path), _) => read_key(path)?,
            (None, Ok(text)) => parse_key(&text, KEY_ENV)?,
            (None, Err(_)) if shared_database => return Err(SecretsError::KeyRequired),
            (None, Err(_)) => {
                let path = data_dir.join(DEFAULT_KEY_FILE);
                if !path.exists() {
                    std::fs::create_dir_all(data_dir).map_err(|source| SecretsError::Write {
                        path: path.clone(),
                        source,
                    })?;
                    write_key_file(&path, &new_key_text())?;
                    tracing::info!(path = %path.display(), "made a secrets key (back it up apart from the store)");
                }
                read_key(&path)?
            }
        };
        let previous = previous_files
            .iter()
            .map(|path| read_key(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_keys(&current, &previous))
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let mut nonce = XNonce::default();
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length this server stores");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ciphertext);
        format!(
            "{PREFIX}{}:{}",
            self.current.id,
            base64::engine::general_purpose::STANDARD.encode(body)
        )
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(SecretsError::NotSealed)?;
        let (id, body) = rest.split_once(':').ok_or(SecretsError::Tampered)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_owned()))?;
        let body = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SecretsError::Tampered)?;
        if body.len() < 24 {
            return Err(SecretsError::Tampered);
        }
        let (nonce, ciphertext) = body.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretsError::Tampered)?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Tampered)
    }

    /// Whether `stored` is sealed, and by the current key (rotation's test).
    pub fn sealed_by_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }

    /// `stored` sealed by the current key: opened first if sealed by another
    /// known key, sealed as it is if it is still plaintext (a store from
    /// before sealing). `Ok(None)` when it already is.
    pub fn reseal(&self, purpose: &str, stored: &str) -> Result<Option<String>, SecretsError> {
        if self.sealed_by_current(stored) {
            return Ok(None);
        }
        let plain = match self.open(purpose, stored) {
            Ok(plain) => plain,
            Err(SecretsError::NotSealed) => stored.as_bytes().to_vec(),
            Err(other) => return Err(other),
        };
        Ok(Some(self.seal(purpose, &plain)))
    }
}

/// What a user's TOTP secret is bound to.
pub fn totp_purpose(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// What a shared server secret is bound to.
pub fn server_secret_purpose(name: &str) -> String {
    format!("server_secret:{name}")
}

/// The named shared secret in plain bytes, stored sealed: made (sealed) if
/// absent, sealed in place if a store from before sealing holds it plain.
/// One sealed under a key this server lacks is left alone (the nodes that
/// have the key keep using it) and this server uses a secret of its own: it
/// only derives the answer to a retried refresh, so nothing else is lost.
pub async fn shared_secret(
    store: &crate::store::Store,
    keys: &SecretKeys,
    name: &str,
) -> Result<Vec<u8>, crate::store::StoreError> {
    let purpose = server_secret_purpose(name);
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    let candidate = keys.seal(&purpose, &fresh);
    let stored = store
        .secrets
        .shared_secret(name, candidate.as_bytes())
        .await?;
    let text = String::from_utf8_lossy(&stored).into_owned();
    match keys.open(&purpose, &text) {
        Ok(plain) => {
            if !keys.sealed_by_current(&text) {
                let resealed = keys.seal(&purpose, &plain);
                store
                    .secrets
                    .replace_shared_secret(name, &stored, resealed.as_bytes())
                    .await?;
            }
            Ok(plain)
        }
        Err(SecretsError::NotSealed) => {
            let sealed = keys.seal(&purpose, &stored);
            store
                .secrets
                .replace_shared_secret(name, &stored, sealed.as_bytes())
                .await?;
            Ok(stored)
        }
        Err(error) => {
            tracing::error!(%error, name, "a shared secret did not open; this server uses its own");
            Ok(fresh.to_vec())
        }
    }
}

/// What [`reseal_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Values now sealed by the current key (plaintext, or another known key).
    pub resealed: usize,
    /// Values already sealed by the current key.
    pub current: usize,
    /// Values sealed by a key this server does not have (left as they are).
    pub unknown: usize,
}

/// Seals every TOTP secret under the current key: plaintext from a store of
/// before sealing, or values sealed by a previous key (rotation). Each row
/// is replaced only if unchanged meanwhile, so a concurrent enrollment wins.
pub async fn reseal_all(
    store: &crate::store::Store,
    keys: &SecretKeys,
) -> Result<Resealed, crate::store::StoreError> {
    let mut done = Resealed::default();
    for (user_id, stored) in store.secrets.totp_secrets().await? {
        match keys.reseal(&totp_purpose(&user_id), &stored) {
            Ok(None) => done.current += 1,
            Ok(Some(sealed)) => {
                if store
                    .secrets
                    .replace_totp_secret(&user_id, &stored, &sealed)
                    .await?
                {
                    done.resealed += 1;
                }
            }
            Err(error) => {
                tracing::warn!(%error, user_id, "a TOTP secret cannot be resealed");
                done.unknown += 1;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_what_it_should() {
        let keys = SecretKeys::from_keys(&[7; 32], &[]);
        let sealed = keys.seal("totp:u1", b"JBSWY3DPEHPK3PXP");
        assert!(sealed.starts_with("sealed:v1:"));
        assert!(!sealed.contains("JBSWY3DP"));
        assert_eq!(keys.open("totp:u1", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        // Twice the same secret: two different texts (random nonces).
        assert_ne!(sealed, keys.seal("totp:u1", b"JBSWY3DPEHPK3PXP"));
        // Moved to another user's row: does not open.
        assert!(matches!(
            keys.open("totp:u2", &sealed),
            Err(SecretsError::Tampered)
        ));
        // Another key (a store copied without its key).
        let other = SecretKeys::from_keys(&[8; 32], &[]);
        assert!(matches!(
            other.open("totp:u1", &sealed),
            Err(SecretsError::UnknownKey(_))
        ));
        // Altered by one character.
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            keys.open("totp:u1", std::str::from_utf8(&altered).unwrap()),
            Err(SecretsError::Tampered)
        ));
        assert!(matches!(
            keys.open("totp:u1", "JBSWY3DPEHPK3PXP"),
            Err(SecretsError::NotSealed)
        ));
    }

    #[test]
    fn rotation_reseals_under_the_new_key_and_plaintext_gets_sealed() {
        let old = SecretKeys::from_keys(&[1; 32], &[]);
        let sealed_old = old.seal("totp:u1", b"secret");
        let rotating = SecretKeys::from_keys(&[2; 32], &[[1; 32]]);
        // Still opens while the old key is known...
        assert_eq!(rotating.open("totp:u1", &sealed_old).unwrap(), b"secret");
        // ...and reseal moves it to the new key.
        let resealed = rotating.reseal("totp:u1", &sealed_old).unwrap().unwrap();
        assert!(rotating.sealed_by_current(&resealed));
        let new_only = SecretKeys::from_keys(&[2; 32], &[]);
        assert_eq!(new_only.open("totp:u1", &resealed).unwrap(), b"secret");
        assert_eq!(new_only.reseal("totp:u1", &resealed).unwrap(), None);
        // A plaintext value from before sealing is sealed as it is.
        let sealed_plain = new_only.reseal("totp:u1", "secret").unwrap().unwrap();
        assert_eq!(new_only.open("totp:u1", &sealed_plain).unwrap(), b"secret");
    }
}

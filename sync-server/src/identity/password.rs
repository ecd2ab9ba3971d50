//! Passwords are stored as Argon2id PHC strings (salt and parameters inside).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be at least {0} characters")]
    TooShort(usize),
    #[error("stored password hash is unreadable")]
    BadHash,
    #[error("hashing failed: {0}")]
    Hashing(String),
}

pub const MIN_LENGTH: usize = 10;

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's baseline).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort(MIN_LENGTH));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Constant-time check of `password` against a stored PHC string.
pub fn verify_password(stored: &str, password: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::BadHash)?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert_eq!(verify_password(&a, "correct horse battery"), Ok(true));
        assert_eq!(verify_password(&a, "correct horse batterx"), Ok(false));
        assert_eq!(
            verify_password("not a hash", "x"),
            Err(PasswordError::BadHash)
        );
        assert_eq!(
            hash_password("short"),
            Err(PasswordError::TooShort(MIN_LENGTH))
        );
    }
}

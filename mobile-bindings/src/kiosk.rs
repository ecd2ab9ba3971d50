//! The kiosk lock: a tablet handed to door staff is locked to the scanning
//! screen; leaving it (another event, settings, sign-out) needs the local
//! PIN. The PIN is kept only as an Argon2 hash, on this device. Wrong PINs
//! are slowed down (and the count survives a restart, so killing the app
//! does not reset it): the first few attempts are free, then each one waits
//! longer, doubling up to 15 minutes.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::TabletError;

/// Failed attempts allowed before waiting starts.
pub const FREE_ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(30);
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);

/// Device-value keys.
pub const PIN_HASH: &str = "kiosk.pin_hash";
pub const FAILURES: &str = "kiosk.failures";
pub const NEXT_ATTEMPT_MS: &str = "kiosk.next_attempt_ms";

/// A PIN is `length` or more digits (the organisation sets the length).
pub fn check_format(pin: &str, length: i64) -> Result<(), TabletError> {
    let length = length.max(4) as usize;
    if pin.len() < length || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(TabletError::invalid(format!(
            "the PIN must be at least {length} digits"
        )));
    }
    Ok(())
}

pub fn hash(pin: &str) -> Result<String, TabletError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TabletError::internal(format!("hashing the PIN: {e}")))
}

pub fn matches(hash: &str, pin: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(pin.as_bytes(), &parsed)
            .is_ok()
    })
}

/// How long to wait after `failures` wrong PINs in a row.
pub fn wait_after(failures: u32) -> Duration {
    if failures < FREE_ATTEMPTS {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_ATTEMPTS).min(16);
    (FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_digits_of_the_configured_length() {
        assert!(check_format("123456", 6).is_ok());
        assert!(check_format("1234567", 6).is_ok());
        assert!(check_format("12345", 6).is_err());
        assert!(check_format("12a456", 6).is_err());
        assert!(check_format("1234", 0).is_ok(), "never fewer than 4");
        assert!(check_format("123", 0).is_err());
    }

    #[test]
    fn a_hash_matches_its_pin_only() {
        let h = hash("424242").unwrap();
        assert!(!h.contains("424242"));
        assert!(matches(&h, "424242"));
        assert!(!matches(&h, "424243"));
        assert!(!matches("not a hash", "424242"));
    }

    #[test]
    fn waits_grow_after_the_free_attempts() {
        assert_eq!(wait_after(0), Duration::ZERO);
        assert_eq!(wait_after(FREE_ATTEMPTS - 1), Duration::ZERO);
        assert_eq!(wait_after(FREE_ATTEMPTS), Duration::from_secs(30));
        assert_eq!(wait_after(FREE_ATTEMPTS + 1), Duration::from_secs(60));
        assert_eq!(wait_after(FREE_ATTEMPTS + 40), LONGEST_WAIT);
    }
}

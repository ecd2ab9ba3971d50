//! Session rules without IO: token formats and lifetimes, what a presented
//! access or refresh token is worth, the rotated pair a refresh returns, and
//! step-up freshness. The REST handlers do the store calls around these.
//!
//! A refresh returns a pair *derived* from the presented refresh token with
//! a server-wide secret (HMAC-SHA-256), not a random one: a tablet whose
//! answer was lost retries with the same token within the grace window and
//! must get the same pair, but the store keeps only hashes, so the pair has
//! to be recomputable from what the client presents.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::credentials::hash_token;
use crate::store::records::{AccessTokenRecord, RefreshTokenRecord, TokenHashes};

pub const ACCESS_PREFIX: &str = "at_";
pub const REFRESH_PREFIX: &str = "rt_";
pub const CHALLENGE_PREFIX: &str = "ch_";

/// Lifetimes and windows; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// A used refresh token presented again within this window (and before
    /// its successor was used) gets the same answer instead of counting as reuse.
    pub refresh_grace: Duration,
    /// Privileged actions need a TOTP code entered this recently.
    pub step_up_window: Duration,
    /// Time between the password and the second factor.
    pub challenge_ttl: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(30),
            step_up_window: Duration::from_secs(5 * 60),
            challenge_ttl: Duration::from_secs(10 * 60),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Tokens as handed to a client, with what the store keeps of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_ms: i64,
    pub refresh_expires_ms: i64,
    pub generation: u32,
}

impl TokenPair {
    pub fn hashes(&self) -> TokenHashes {
        TokenHashes {
            generation: self.generation,
            access_hash: hash_token(&self.access_token),
            access_expires_ms: self.access_expires_ms,
            refresh_hash: hash_token(&self.refresh_token),
            refresh_expires_ms: self.refresh_expires_ms,
        }
    }
}

fn encode(prefix: &str, bytes: &[u8]) -> String {
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A random token with `prefix` (256 bits).
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    encode(prefix, &bytes)
}

/// The first pair of a new session.
pub fn first_pair(policy: &SessionPolicy, now_ms: i64) -> TokenPair {
    TokenPair {
        access_token: random_token(ACCESS_PREFIX),
        refresh_token: random_token(REFRESH_PREFIX),
        access_expires_ms: now_ms + ms(policy.access_ttl),
        refresh_expires_ms: now_ms + ms(policy.refresh_ttl),
        generation: 0,
    }
}

/// The pair that replaces `refresh_token` (of `generation`), exchanged at
/// `exchanged_ms`: the same inputs always give the same pair.
pub fn next_pair(
    secret: &[u8],
    refresh_token: &str,
    generation: u32,
    exchanged_ms: i64,
    policy: &SessionPolicy,
) -> TokenPair {
    let derive = |label: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(refresh_token.as_bytes());
        mac.finalize().into_bytes()
    };
    TokenPair {
        access_token: encode(ACCESS_PREFIX, &derive("access")),
        refresh_token: encode(REFRESH_PREFIX, &derive("refresh")),
        access_expires_ms: exchanged_ms + ms(policy.access_ttl),
        refresh_expires_ms: exchanged_ms + ms(policy.refresh_ttl),
        generation: generation + 1,
    }
}

/// Why a token no longer opens anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    /// The session was ended (logout, reuse, an administrator).
    SessionRevoked,
    /// The device was revoked: it must wipe local event data.
    DeviceRevoked,
    UserDisabled,
}

impl Refusal {
    /// Stable code for clients.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Expired => "token_expired",
            Refusal::SessionRevoked => "session_revoked",
            Refusal::DeviceRevoked => "device_revoked",
            Refusal::UserDisabled => "user_disabled",
        }
    }
}

/// What a presented access token is worth at `now_ms`.
pub fn check_access(record: &AccessTokenRecord, now_ms: i64) -> Result<(), Refusal> {
    if record.device.revoked_ms.is_some() {
        Err(Refusal::DeviceRevoked)
    } else if record.session_revoked {
        Err(Refusal::SessionRevoked)
    } else if record.user.disabled {
        Err(Refusal::UserDisabled)
    } else if now_ms >= record.expires_ms {
        Err(Refusal::Expired)
    } else {
        Ok(())
    }
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// First use: mark it used and hand out [`next_pair`] exchanged now.
    Exchange,
    /// A retry of the latest exchange within the grace window: hand out the
    /// same pair again ([`next_pair`] exchanged at `exchanged_ms`).
    Retry {
        exchanged_ms: i64,
    },
    /// A used token presented again: someone else may hold it. End the
    /// whole session (the family) and raise an alert.
    Reuse,
    Refused(Refusal),
}

pub fn decide_refresh(
    record: &RefreshTokenRecord,
    now_ms: i64,
    policy: &SessionPolicy,
) -> RefreshDecision {
    if record.device_revoked {
        return RefreshDecision::Refused(Refusal::DeviceRevoked);
    }
    if record.session_revoked {
        return RefreshDecision::Refused(Refusal::SessionRevoked);
    }
    if record.user_disabled {
        return RefreshDecision::Refused(Refusal::UserDisabled);
    }
    match record.used_ms {
        Some(used) => {
            if !record.later_generation_used && now_ms - used <= ms(policy.refresh_grace) {
                RefreshDecision::Retry { exchanged_ms: used }
            } else {
                RefreshDecision::Reuse
            }
        }
        None if now_ms >= record.expires_ms => RefreshDecision::Refused(Refusal::Expired),
        None => RefreshDecision::Exchange,
    }
}

/// Whether a second factor entered at `second_factor_ms` still covers a
/// privileged action at `now_ms`.
pub fn step_up_fresh(second_factor_ms: Option<i64>, now_ms: i64, policy: &SessionPolicy) -> bool {
    second_factor_ms.is_some_and(|at| now_ms - at <= ms(policy.step_up_window) && at <= now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(used_ms: Option<i64>, later_used: bool) -> RefreshTokenRecord {
        RefreshTokenRecord {
            session_id: "s".into(),
            user_id: "u".into(),
            device_id: "d".into(),
            generation: 3,
            expires_ms: 1_000_000,
            used_ms,
            later_generation_used: later_used,
            session_revoked: false,
            device_revoked: false,
            user_disabled: false,
        }
    }

    #[test]
    fn derived_pairs_are_stable_per_token_and_secret() {
        let policy = SessionPolicy::default();
        let a = next_pair(b"secret", "rt_one", 3, 1000, &policy);
        assert_eq!(a, next_pair(b"secret", "rt_one", 3, 1000, &policy));
        assert_eq!(a.generation, 4);
        assert!(a.access_token.starts_with(ACCESS_PREFIX));
        assert!(a.refresh_token.starts_with(REFRESH_PREFIX));
        assert_ne!(a.access_token, a.refresh_token);
        let other_token = next_pair(b"secret", "rt_two", 3, 1000, &policy);
        let other_secret = next_pair(b"secret2", "rt_one", 3, 1000, &policy);
        assert_ne!(a.refresh_token, other_token.refresh_token);
        assert_ne!(a.refresh_token, other_secret.refresh_token);
        assert_eq!(a.access_expires_ms, 1000 + 15 * 60 * 1000);
        let first = first_pair(&policy, 0);
        assert_ne!(first.refresh_token, first_pair(&policy, 0).refresh_token);
        assert_eq!(
            first.hashes().refresh_hash,
            hash_token(&first.refresh_token)
        );
    }

    #[test]
    fn refresh_decisions() {
        let p = SessionPolicy::default();
        assert_eq!(
            decide_refresh(&record(None, false), 10, &p),
            RefreshDecision::Exchange
        );
        assert_eq!(
            decide_refresh(&record(None, false), 1_000_000, &p),
            RefreshDecision::Refused(Refusal::Expired)
        );
        // A retry inside the grace window gets the same answer...
        assert_eq!(
            decide_refresh(&record(Some(100), false), 100 + 30_000, &p),
            RefreshDecision::Retry { exchanged_ms: 100 }
        );
        // ...not after it, and not once the successor was used.
        assert_eq!(
            decide_refresh(&record(Some(100), false), 100 + 30_001, &p),
            RefreshDecision::Reuse
        );
        assert_eq!(
            decide_refresh(&record(Some(100), true), 200, &p),
            RefreshDecision::Reuse
        );
        let mut revoked = record(Some(100), false);
        revoked.device_revoked = true;
        revoked.session_revoked = true;
        assert_eq!(
            decide_refresh(&revoked, 200, &p),
            RefreshDecision::Refused(Refusal::DeviceRevoked)
        );
        revoked.device_revoked = false;
        assert_eq!(
            decide_refresh(&revoked, 200, &p),
            RefreshDecision::Refused(Refusal::SessionRevoked)
        );
    }

    #[test]
    fn step_up_lasts_five_minutes() {
        let p = SessionPolicy::default();
        assert!(!step_up_fresh(None, 0, &p));
        assert!(step_up_fresh(Some(1000), 1000 + 300_000, &p));
        assert!(!step_up_fresh(Some(1000), 1000 + 300_001, &p));
    }
}

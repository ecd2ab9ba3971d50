//! Throttling of failed sign-in steps, per key (an account, an address):
//! a few free attempts, then a delay that doubles with each failure up to a
//! ceiling, forgotten after a quiet period. Never a permanent lockout, which
//! an attacker could otherwise trigger against any account.

use std::collections::HashMap;
use std::time::Duration;

pub use server_store::throttle::{ThrottlePolicy, ThrottleRecord};

/// Failure records per key, in memory (one node); the caller passes the
/// clock, so tests need none.
#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    records: HashMap<String, ThrottleRecord>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            records: HashMap::new(),
        }
    }

    /// `Err(wait)` if `key` must wait before its next attempt.
    pub fn check(&mut self, key: &str, now_ms: i64) -> Result<(), Duration> {
        match self.policy.wait(self.records.get(key), now_ms) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records a failure; returns the delay now imposed on `key`.
    pub fn failure(&mut self, key: &str, now_ms: i64) -> Duration {
        let next = self
            .policy
            .after_failure(self.records.get(key).copied(), now_ms);
        self.records.insert(key.to_owned(), next);
        Duration::from_millis(next.not_before_ms.saturating_sub(now_ms).max(0) as u64)
    }

    /// A success clears the key's record.
    pub fn success(&mut self, key: &str) {
        self.records.remove(key);
    }

    /// Drops records that have been quiet long enough (bounded memory).
    pub fn prune(&mut self, now_ms: i64) {
        let policy = self.policy;
        self.records.retain(|_, r| !policy.forgotten(r, now_ms));
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_never_become_a_lockout() {
        let mut t = Throttle::new(ThrottlePolicy::default());
        let mut now: i64 = 1_700_000_000_000;
        let mut delays = Vec::new();
        for _ in 0..16 {
            assert_eq!(t.check("ada", now), Ok(()));
            let delay = t.failure("ada", now);
            delays.push(delay.as_secs());
            if !delay.is_zero() {
                assert!(t.check("ada", now).is_err());
            }
            now += delay.as_millis() as i64;
        }
        assert_eq!(&delays[..7], &[0, 0, 0, 1, 2, 4, 8]);
        assert_eq!(*delays.last().unwrap(), 15 * 60, "capped");
        // Other keys are unaffected; waiting out the delay always allows a try.
        assert_eq!(t.check("grace", now), Ok(()));
        assert_eq!(t.check("ada", now), Ok(()));
        // A success clears it; so does a long quiet period.
        t.success("ada");
        assert_eq!(t.failure("ada", now), Duration::ZERO);
        for _ in 0..5 {
            t.failure("bob", now);
        }
        assert!(t.check("bob", now).is_err());
        let later = now + 2 * 60 * 60 * 1000;
        assert_eq!(t.check("bob", later), Ok(()));
        assert_eq!(
            t.failure("bob", later),
            Duration::ZERO,
            "forgotten after the quiet period"
        );
        t.prune(later + 2 * 60 * 60 * 1000);
        assert!(t.is_empty());
    }
}

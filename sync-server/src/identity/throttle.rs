//! Throttling of failed sign-in steps, per key (an account, an address):
//! a few free attempts, then a delay that doubles with each failure up to a
//! ceiling, forgotten after a quiet period. Never a permanent lockout, which
//! an attacker could otherwise trigger against any account.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay.
    pub free_attempts: u32,
    /// Delay after the first failure beyond the free ones; doubles after each.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A key with no failure for this long starts over.
    pub forget_after: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    not_before: Instant,
}

/// Failure records per key; the caller passes the clock, so tests need none.
#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    records: HashMap<String, Record>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            records: HashMap::new(),
        }
    }

    /// `Err(wait)` if `key` must wait before its next attempt.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        let Some(record) = self.records.get(key) else {
            return Ok(());
        };
        if now.duration_since(record.last_failure) >= self.policy.forget_after {
            self.records.remove(key);
            return Ok(());
        }
        match record.not_before.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns the delay now imposed on `key`.
    pub fn failure(&mut self, key: &str, now: Instant) -> Duration {
        let policy = self.policy;
        let record = self.records.entry(key.to_owned()).or_insert(Record {
            failures: 0,
            last_failure: now,
            not_before: now,
        });
        if now.duration_since(record.last_failure) >= policy.forget_after {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_failure = now;
        let over = record.failures.saturating_sub(policy.free_attempts);
        let delay = if over == 0 {
            Duration::ZERO
        } else {
            policy
                .base_delay
                .saturating_mul(1u32.checked_shl(over - 1).unwrap_or(u32::MAX))
                .min(policy.max_delay)
        };
        record.not_before = now + delay;
        delay
    }

    /// A success clears the key's record.
    pub fn success(&mut self, key: &str) {
        self.records.remove(key);
    }

    /// Drops records that have been quiet long enough (bounded memory).
    pub fn prune(&mut self, now: Instant) {
        let forget = self.policy.forget_after;
        self.records
            .retain(|_, r| now.duration_since(r.last_failure) < forget);
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
        let start = Instant::now();
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..16 {
            assert_eq!(t.check("ada", now), Ok(()));
            let delay = t.failure("ada", now);
            delays.push(delay.as_secs());
            if !delay.is_zero() {
                assert!(t.check("ada", now).is_err());
            }
            now += delay;
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
        let later = now + Duration::from_secs(2 * 60 * 60);
        assert_eq!(t.check("bob", later), Ok(()));
        assert_eq!(
            t.failure("bob", later),
            Duration::ZERO,
            "forgotten after the quiet period"
        );
        t.prune(later + Duration::from_secs(2 * 60 * 60));
        assert!(t.is_empty());
    }
}

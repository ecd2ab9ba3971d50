//! Throttling of failed sign-in steps, per key (an account, an address):
//! a few free attempts, then a delay that doubles with each failure up to a
//! ceiling, forgotten after a quiet period. Never a permanent lockout, which
//! an attacker could otherwise trigger against any account.

use std::collections::HashMap;
use std::time::Duration;

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

/// One key's failures. Times are unix milliseconds, so nodes sharing a
/// store (each with its own clock source) can keep one record per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRecord {
    pub failures: u32,
    pub last_failure_ms: i64,
    pub not_before_ms: i64,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl ThrottlePolicy {
    /// Whether `record` is old enough to be forgotten at `now_ms`.
    pub fn forgotten(&self, record: &ThrottleRecord, now_ms: i64) -> bool {
        now_ms.saturating_sub(record.last_failure_ms) >= millis(self.forget_after)
    }

    /// How long the key must wait at `now_ms` (`None`: it may try now).
    pub fn wait(&self, record: Option<&ThrottleRecord>, now_ms: i64) -> Option<Duration> {
        let record = record.filter(|r| !self.forgotten(r, now_ms))?;
        let wait = record.not_before_ms.saturating_sub(now_ms);
        (wait > 0).then(|| Duration::from_millis(wait as u64))
    }

    /// The record after one more failure at `now_ms`.
    pub fn after_failure(&self, record: Option<ThrottleRecord>, now_ms: i64) -> ThrottleRecord {
        let failures = match record {
            Some(r) if !self.forgotten(&r, now_ms) => r.failures + 1,
            _ => 1,
        };
        let over = failures.saturating_sub(self.free_attempts);
        let delay = if over == 0 {
            Duration::ZERO
        } else {
            self.base_delay
                .saturating_mul(1u32.checked_shl(over - 1).unwrap_or(u32::MAX))
                .min(self.max_delay)
        };
        ThrottleRecord {
            failures,
            last_failure_ms: now_ms,
            not_before_ms: now_ms.saturating_add(millis(delay)),
        }
    }
}

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

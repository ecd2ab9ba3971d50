//! A failed sign-in step's throttle, as kept by every node sharing a store:
//! the policy (free attempts, a doubling delay up to a ceiling, forgotten
//! after a quiet period) and one key's record. Here, below the server's
//! in-memory throttle, because a shared store computes the next record from
//! the stored one under a row lock.

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

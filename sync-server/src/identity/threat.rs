//! Bursts of suspicious events (failed codes, refused writes) per key, so a
//! `security_alert` is raised once per burst rather than once per event.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct BurstDetector {
    window: Duration,
    threshold: usize,
    events: HashMap<String, VecDeque<Instant>>,
}

impl BurstDetector {
    /// Alerts when `threshold` events for one key fall within `window`.
    pub fn new(threshold: usize, window: Duration) -> Self {
        Self {
            window,
            threshold: threshold.max(1),
            events: HashMap::new(),
        }
    }

    /// Records an event; true exactly when it completes a burst (the count
    /// then starts over, so a continuing burst alerts once per `threshold`).
    pub fn record(&mut self, key: &str, now: Instant) -> bool {
        if self.events.len() > 10_000 {
            let window = self.window;
            self.events.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < window)
            });
        }
        let times = self.events.entry(key.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|first| now.duration_since(*first) >= self.window)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() >= self.threshold {
            times.clear();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_once_per_burst_within_the_window() {
        let mut d = BurstDetector::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!d.record("a", t0));
        assert!(!d.record("a", t0 + Duration::from_secs(1)));
        assert!(!d.record("b", t0 + Duration::from_secs(1)));
        assert!(d.record("a", t0 + Duration::from_secs(2)));
        assert!(!d.record("a", t0 + Duration::from_secs(3)));
        // Spread out beyond the window: no alert.
        let mut slow = BurstDetector::new(3, Duration::from_secs(60));
        for i in 0..10 {
            assert!(!slow.record("a", t0 + Duration::from_secs(40 * i)));
        }
    }
}

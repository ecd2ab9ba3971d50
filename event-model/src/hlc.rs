//! Hybrid logical clocks: timestamps that follow wall time but never go
//! backwards on a device and always come after anything the device has seen
//! from others, so "later" means the same thing on every replica even when
//! tablet clocks disagree. Ties (same wall time and counter) are broken by
//! the node id, and scans by their id, so the order is total.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A point in hybrid logical time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the largest wall time seen).
    pub wall_ms: i64,
    /// Events at the same `wall_ms`, in order.
    pub counter: u32,
    /// The device that made it.
    pub node: String,
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.counter, &self.node).cmp(&(other.wall_ms, other.counter, &other.node))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Text form `WWWWWWWWWWWWWWW-CCCCCC-node`, whose byte order is the clock
/// order (zero-padded), so it sorts correctly in SQL too.
impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:015}-{:06}-{}", self.wall_ms, self.counter, self.node)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a hybrid logical clock value: `{0}`")]
pub struct HlcParseError(pub String);

impl FromStr for Hlc {
    type Err = HlcParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || HlcParseError(text.to_owned());
        let mut parts = text.splitn(3, '-');
        let wall_ms = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let counter = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let node = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
        Ok(Hlc {
            wall_ms,
            counter,
            node: node.to_owned(),
        })
    }
}

/// One device's clock.
#[derive(Debug, Clone)]
pub struct HlcClock {
    node: String,
    wall_ms: i64,
    counter: u32,
}

impl HlcClock {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            wall_ms: 0,
            counter: 0,
        }
    }

    /// A timestamp for a local event at physical time `now_ms`: later than
    /// every timestamp this clock made or observed before.
    pub fn tick(&mut self, now_ms: i64) -> Hlc {
        if now_ms > self.wall_ms {
            self.wall_ms = now_ms;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        Hlc {
            wall_ms: self.wall_ms,
            counter: self.counter,
            node: self.node.clone(),
        }
    }

    /// Takes in a timestamp from another device, so the next tick comes after it.
    pub fn observe(&mut self, remote: &Hlc) {
        if (remote.wall_ms, remote.counter) > (self.wall_ms, self.counter) {
            self.wall_ms = remote.wall_ms;
            self.counter = remote.counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_monotonic_even_when_the_wall_clock_goes_back() {
        let mut clock = HlcClock::new("a");
        let t1 = clock.tick(1_000);
        let t2 = clock.tick(900);
        let t3 = clock.tick(1_000);
        let t4 = clock.tick(1_001);
        assert!(t1 < t2 && t2 < t3 && t3 < t4);
        assert_eq!((t2.wall_ms, t2.counter), (1_000, 1));
        assert_eq!((t4.wall_ms, t4.counter), (1_001, 0));
    }

    #[test]
    fn after_observing_a_remote_time_the_next_tick_is_later() {
        let mut fast = HlcClock::new("fast");
        let remote = fast.tick(5_000);
        let mut slow = HlcClock::new("slow");
        slow.observe(&remote);
        let next = slow.tick(1_000);
        assert!(next > remote);
    }

    #[test]
    fn the_text_form_sorts_like_the_clock_and_round_trips() {
        let a = Hlc {
            wall_ms: 999,
            counter: 12,
            node: "tablet-1".into(),
        };
        let b = Hlc {
            wall_ms: 1_000,
            counter: 0,
            node: "a".into(),
        };
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<Hlc>().unwrap(), a);
        assert!("nonsense".parse::<Hlc>().is_err());
        assert!("1-2-".parse::<Hlc>().is_err());
    }
}

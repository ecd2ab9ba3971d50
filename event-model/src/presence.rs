//! Presence: which devices are online on an event, at which check-in list,
//! and when each last synced. Sent as automerge-repo `ephemeral` messages on
//! the event document (never stored), encoded as CBOR like every ephemeral
//! payload, so stock peers relay or ignore them without trouble.

use serde::{Deserialize, Serialize};

/// How often a device repeats its beacon, and how long one counts.
pub const BEACON_EVERY_MS: i64 = 10_000;
pub const ONLINE_FOR_MS: i64 = 30_000;

const KIND: &str = "presence/1";

/// One device's "I am here".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// Always `presence/1` (other ephemeral payloads are ignored).
    pub kind: String,
    pub device_id: String,
    /// The check-in list the device is scanning for, if any.
    pub list_id: Option<String>,
    /// When it last had every local change confirmed by the server.
    pub last_synced_ms: Option<i64>,
    pub sent_ms: i64,
}

impl Beacon {
    pub fn new(
        device_id: impl Into<String>,
        list_id: Option<String>,
        last_synced_ms: Option<i64>,
        sent_ms: i64,
    ) -> Self {
        Self {
            kind: KIND.into(),
            device_id: device_id.into(),
            list_id,
            last_synced_ms,
            sent_ms,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("writing CBOR to memory cannot fail");
        out
    }

    /// A beacon, if `data` is one (other ephemeral payloads give `None`).
    pub fn decode(data: &[u8]) -> Option<Self> {
        ciborium::from_reader::<Self, _>(data)
            .ok()
            .filter(|b| b.kind == KIND && !b.device_id.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_round_trip_and_other_payloads_are_ignored() {
        let beacon = Beacon::new("tablet-7", Some("main".into()), Some(5), 10);
        assert_eq!(Beacon::decode(&beacon.encode()), Some(beacon));
        let mut other = Vec::new();
        ciborium::into_writer(&serde_json::json!({ "cursor": 3 }), &mut other).unwrap();
        assert_eq!(Beacon::decode(&other), None);
        assert_eq!(Beacon::decode(b"\xff\x00"), None);
    }
}

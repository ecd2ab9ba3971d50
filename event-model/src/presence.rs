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
    /// Fleet readiness (absent from older apps' beacons): whether it holds
    /// the event's whole document (its download ended), how many of its
    /// changes and scans the server has not confirmed, its app's version.
    #[serde(default)]
    pub holds_event: Option<bool>,
    #[serde(default)]
    pub pending_uploads: Option<u64>,
    #[serde(default)]
    pub app_version: Option<String>,
}

/// What a beacon says of the device's readiness.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readiness {
    pub holds_event: bool,
    pub pending_uploads: u64,
    pub app_version: String,
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
            holds_event: None,
            pending_uploads: None,
            app_version: None,
        }
    }

    /// The same beacon telling the device's readiness too.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.holds_event = Some(readiness.holds_event);
        self.pending_uploads = Some(readiness.pending_uploads);
        self.app_version = Some(readiness.app_version);
        self
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

    #[test]
    fn readiness_travels_and_an_older_beacon_without_it_still_reads() {
        let ready = Beacon::new("tablet-7", None, None, 10).with_readiness(Readiness {
            holds_event: true,
            pending_uploads: 3,
            app_version: "1.2.0".into(),
        });
        let read = Beacon::decode(&ready.encode()).unwrap();
        assert_eq!(read.holds_event, Some(true));
        assert_eq!(read.pending_uploads, Some(3));
        assert_eq!(read.app_version.as_deref(), Some("1.2.0"));
        // As an app before these fields wrote it.
        let mut older = Vec::new();
        ciborium::into_writer(
            &serde_json::json!({
                "kind": "presence/1", "device_id": "old", "list_id": null,
                "last_synced_ms": null, "sent_ms": 5
            }),
            &mut older,
        )
        .unwrap();
        let read = Beacon::decode(&older).unwrap();
        assert_eq!((read.device_id.as_str(), read.holds_event), ("old", None));
    }
}

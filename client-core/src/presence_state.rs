//! What presence keeps in the replica: this device's intent and the
//! beacons heard from others. Reading and writing them is `presence`.

use std::collections::HashMap;

use serde::Serialize;
use sync_protocol::DocumentId;

/// Another device on the same event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerPresence {
    pub device_id: String,
    pub list_id: Option<String>,
    pub last_synced_ms: Option<i64>,
    /// When its last beacon arrived here (unix ms).
    pub heard_ms: i64,
    /// Whether it holds the event's whole document (unknown from older apps).
    pub holds_event: Option<bool>,
    /// Its changes and scans the server has not confirmed yet.
    pub pending_uploads: Option<u64>,
    pub app_version: Option<String>,
}

/// What this device announces: the event and, optionally, the list.
pub(crate) type PresenceIntent = Option<(DocumentId, Option<String>)>;

#[derive(Default)]
pub(crate) struct Heard {
    pub(crate) by_document: HashMap<DocumentId, HashMap<String, PeerPresence>>,
}

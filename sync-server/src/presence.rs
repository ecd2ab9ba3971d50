//! Who is online on which document, from the presence beacons devices send
//! as ephemeral messages (see `event_model::presence`). Kept in memory per
//! node: a beacon counts while its connection is attached and for
//! `ONLINE_FOR_MS` after it was sent. The identity comes from the
//! connection (never from the beacon); the list and last sync from the beacon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use event_model::presence::{Beacon, ONLINE_FOR_MS};
use serde::Serialize;
use sync_protocol::DocumentId;

use crate::doc_core::PeerKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DevicePresence {
    /// The signed-in device, or the device id the client gave (API keys).
    pub device_id: String,
    /// Who is connected (`user:<id>` or `api_key:<id>`).
    pub actor: String,
    pub list_id: Option<String>,
    pub last_synced_ms: Option<i64>,
    /// When the server last heard from it (unix ms).
    pub seen_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct PresenceBoard {
    entries: Arc<Mutex<HashMap<DocumentId, HashMap<PeerKey, DevicePresence>>>>,
}

impl PresenceBoard {
    /// Records a beacon from the connection `peer`, if `data` is one.
    pub fn heard(
        &self,
        document: DocumentId,
        peer: PeerKey,
        actor: &str,
        device: Option<&str>,
        data: &[u8],
    ) {
        let Some(beacon) = Beacon::decode(data) else {
            return;
        };
        let entry = DevicePresence {
            device_id: device.map_or(beacon.device_id, str::to_owned),
            actor: actor.to_owned(),
            list_id: beacon.list_id,
            last_synced_ms: beacon.last_synced_ms,
            seen_ms: crate::auth::unix_ms(),
        };
        self.entries
            .lock()
            .expect("presence poisoned")
            .entry(document)
            .or_default()
            .insert(peer, entry);
    }

    /// The connection left the document.
    pub fn gone(&self, document: DocumentId, peer: PeerKey) {
        let mut entries = self.entries.lock().expect("presence poisoned");
        if let Some(peers) = entries.get_mut(&document) {
            peers.remove(&peer);
            if peers.is_empty() {
                entries.remove(&document);
            }
        }
    }

    /// Devices online on `document` now, by device id.
    pub fn online(&self, document: DocumentId) -> Vec<DevicePresence> {
        let cutoff = crate::auth::unix_ms() - ONLINE_FOR_MS;
        let entries = self.entries.lock().expect("presence poisoned");
        let mut out: Vec<DevicePresence> = entries
            .get(&document)
            .map(|peers| {
                peers
                    .values()
                    .filter(|p| p.seen_ms >= cutoff)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        out.dedup_by(|a, b| a.device_id == b.device_id);
        out
    }
}

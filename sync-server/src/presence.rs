//! Who is online on which document, from the presence beacons devices send
//! as ephemeral messages (see `event_model::presence`). A beacon counts while
//! its connection is attached and for `ONLINE_FOR_MS` after it was sent. The
//! identity comes from the connection (never from the beacon); the list and
//! last sync from the beacon.
//!
//! One node alone keeps the board in memory. Nodes sharing a PostgreSQL
//! store also tell each other what they hear ([`PresenceNote`], sent through
//! the store's notifications), so every node's board lists the devices
//! connected to any node; a node that dies takes its entries with it once
//! they age out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use event_model::presence::{Beacon, ONLINE_FOR_MS};
use serde::{Deserialize, Serialize};
use sync_protocol::DocumentId;
use tokio::sync::mpsc;

use crate::doc_core::PeerKey;

/// A device online on a document: the body of `GET /api/presence` and
/// what nodes tell each other.
pub use api_types::DevicePresence;

/// What one node tells the others: a connection of its own was heard on a
/// document (`entry`), or left it (`entry: None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceNote {
    pub document: String,
    pub peer: PeerKey,
    pub entry: Option<DevicePresence>,
}

/// Whose connection an entry is: this node's, or another node's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Local(PeerKey),
    Remote { node: String, peer: PeerKey },
}

#[derive(Debug, Clone, Default)]
pub struct PresenceBoard {
    entries: Arc<Mutex<HashMap<DocumentId, HashMap<Slot, DevicePresence>>>>,
    /// Where this node's notes go for the other nodes (`None` alone).
    outbox: Option<mpsc::UnboundedSender<PresenceNote>>,
}

impl PresenceBoard {
    /// A board whose local changes are also sent to `outbox` (for the
    /// other nodes; see `server::share_presence`).
    pub fn shared(outbox: mpsc::UnboundedSender<PresenceNote>) -> Self {
        Self {
            entries: Arc::default(),
            outbox: Some(outbox),
        }
    }

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
        self.put(document, Slot::Local(peer), Some(entry.clone()));
        self.tell(document, peer, Some(entry));
    }

    /// The connection left the document.
    pub fn gone(&self, document: DocumentId, peer: PeerKey) {
        if self.put(document, Slot::Local(peer), None) {
            self.tell(document, peer, None);
        }
    }

    /// What another node said.
    pub fn apply_remote(&self, node: &str, note: PresenceNote) {
        let Ok(document) = DocumentId::parse(&note.document) else {
            return;
        };
        let slot = Slot::Remote {
            node: node.to_owned(),
            peer: note.peer,
        };
        self.put(document, slot, note.entry);
        // A node that died says nothing more: its entries age out here.
        let cutoff = crate::auth::unix_ms() - ONLINE_FOR_MS;
        let mut entries = self.entries.lock().expect("presence poisoned");
        if let Some(peers) = entries.get_mut(&document) {
            peers.retain(|slot, p| matches!(slot, Slot::Local(_)) || p.seen_ms >= cutoff);
            if peers.is_empty() {
                entries.remove(&document);
            }
        }
    }

    /// Sets or removes one entry; whether there was one to remove.
    fn put(&self, document: DocumentId, slot: Slot, entry: Option<DevicePresence>) -> bool {
        let mut entries = self.entries.lock().expect("presence poisoned");
        match entry {
            Some(entry) => {
                entries.entry(document).or_default().insert(slot, entry);
                true
            }
            None => {
                let Some(peers) = entries.get_mut(&document) else {
                    return false;
                };
                let removed = peers.remove(&slot).is_some();
                if peers.is_empty() {
                    entries.remove(&document);
                }
                removed
            }
        }
    }

    fn tell(&self, document: DocumentId, peer: PeerKey, entry: Option<DevicePresence>) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(PresenceNote {
                document: document.to_string(),
                peer,
                entry,
            });
        }
    }

    /// Devices online on `document` now, on any node, by device id.
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
        // The newest word on each device first, then one per device.
        out.sort_by(|a, b| {
            a.device_id
                .cmp(&b.device_id)
                .then(b.seen_ms.cmp(&a.seen_ms))
        });
        out.dedup_by(|a, b| a.device_id == b.device_id);
        out
    }

    /// Distinct devices online now on any document, on any node.
    pub fn devices_online(&self) -> usize {
        let cutoff = crate::auth::unix_ms() - ONLINE_FOR_MS;
        let entries = self.entries.lock().expect("presence poisoned");
        entries
            .values()
            .flat_map(|peers| peers.values())
            .filter(|p| p.seen_ms >= cutoff)
            .map(|p| p.device_id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

//! Presence on events: this device says which event and list it is working
//! on (sent by the sync client as ephemeral beacons, repeated every few
//! seconds), and hears the other devices' beacons.

use event_model::presence::{Beacon, ONLINE_FOR_MS, Readiness};
use sync_protocol::DocumentId;

use crate::presence_state::PeerPresence;
use crate::time::now_ms;
use crate::{ClientCore, ClientError};

impl ClientCore {
    /// Announces that this device works on `event` (at `list_id`) while syncing.
    pub fn set_presence(&self, event: DocumentId, list_id: Option<&str>) {
        self.presence_intent
            .send_replace(Some((event, list_id.map(str::to_owned))));
    }

    /// Stops announcing presence.
    pub fn clear_presence(&self) {
        self.presence_intent.send_replace(None);
    }

    /// Other devices heard on `event` recently (beacons are repeated every
    /// 10 s; one counts for 30 s).
    pub fn presence(&self, event: DocumentId) -> Vec<PeerPresence> {
        let cutoff = now_ms() - ONLINE_FOR_MS;
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<PeerPresence> = heard
            .by_document
            .get(&event)
            .map(|devices| {
                devices
                    .values()
                    .filter(|p| p.heard_ms >= cutoff)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        out
    }

    pub(crate) fn heard_presence(&self, document: DocumentId, data: &[u8]) {
        let Some(beacon) = Beacon::decode(data) else {
            return;
        };
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.by_document.entry(document).or_default().insert(
            beacon.device_id.clone(),
            PeerPresence {
                device_id: beacon.device_id,
                list_id: beacon.list_id,
                last_synced_ms: beacon.last_synced_ms,
                heard_ms: now_ms(),
                holds_event: beacon.holds_event,
                pending_uploads: beacon.pending_uploads,
                app_version: beacon.app_version,
            },
        );
    }

    /// This device's beacon for its current intent, if any.
    pub(crate) fn beacon(&self) -> Result<Option<(DocumentId, Vec<u8>)>, ClientError> {
        let Some((event, list)) = self.presence_intent.borrow().clone() else {
            return Ok(None);
        };
        let device = self.device_id()?;
        let status = self.sync_status();
        let last_synced = status.last_sync_ms();
        // The whole event is here once its document has been indexed (a
        // download ends with it; a scan before it leaves no index).
        let holds_event = self.has_document(event)
            && crate::event_index::is_indexed(&self.index_reader(), &event.to_string())?;
        let readiness = Readiness {
            holds_event,
            pending_uploads: status.pending_changes,
            app_version: crate::APP_VERSION.to_owned(),
        };
        Ok(Some((
            event,
            Beacon::new(device, list, last_synced, now_ms())
                .with_readiness(readiness)
                .encode(),
        )))
    }
}

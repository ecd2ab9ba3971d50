//! The replica as the sync client's peer: what to sync, the messages to
//! send, and the server's messages applied, stored and indexed.

use std::time::{Duration, SystemTime};

use automerge::Automerge;
use automerge::sync::SyncDoc;
use sync_protocol::{DocumentId, doc_layout};

use crate::replica::{DocSlot, lock_doc, persist_chunk_unindexed, reload};
use crate::store;
use crate::time::{thread_cpu_time, unix_ms};
use crate::{ChangeOrigin, ClientCore, ClientError, DocEvent, event_index};

/// How often the time of the last full sync is written to the store.
const LAST_SYNC_STORE_EVERY: Duration = Duration::from_secs(5);

/// How long an index step that ended for a waiter gives it to take the
/// store's lock before the next step goes for the lock itself.
const YIELD_TO_WAITERS: Duration = Duration::from_millis(5);

impl ClientCore {
    // ---- used by the sync client ----

    /// Documents to sync on (re)connect: (id, has content, wanted).
    pub(crate) fn sync_targets(&self) -> Vec<(DocumentId, bool, bool)> {
        let slots: Vec<(DocumentId, DocSlot)> = self
            .lock()
            .docs
            .iter()
            .map(|(id, slot)| (*id, slot.clone()))
            .collect();
        slots
            .into_iter()
            .map(|(id, slot)| {
                let d = lock_doc(&slot);
                (id, !d.doc.get_heads().is_empty(), d.wanted)
            })
            .collect()
    }

    pub(crate) fn generate_sync_message(
        &self,
        id: DocumentId,
        state: &mut automerge::sync::State,
    ) -> Option<Vec<u8>> {
        let slot = self.slot(id)?;
        let local = lock_doc(&slot);
        local.doc.generate_sync_message(state).map(|m| m.encode())
    }

    /// Applies `data` as if the server had sent it for document `id`, from
    /// a fresh sync state: the entry the fuzz target `client_receive` feeds
    /// arbitrary bytes through (the `fuzzing` feature; not part of the API).
    #[cfg(feature = "fuzzing")]
    pub fn receive_from_server_for_fuzzing(
        &self,
        id: DocumentId,
        data: &[u8],
    ) -> Result<bool, ClientError> {
        self.receive_sync_message(id, &mut automerge::sync::State::new(), data)
    }

    /// Applies a sync message from the server, committing any new changes
    /// before returning. Returns whether the document changed.
    pub(crate) fn receive_sync_message(
        &self,
        id: DocumentId,
        state: &mut automerge::sync::State,
        data: &[u8],
    ) -> Result<bool, ClientError> {
        let started = thread_cpu_time();
        let message = automerge::sync::Message::decode(data)
            .map_err(|e| ClientError::Corrupt(format!("sync message from server: {e}")))?;
        sync_protocol::sync_data::check(&message)
            .map_err(|e| ClientError::Corrupt(format!("sync message from server: {e}")))?;
        let Some(slot) = self.slot(id) else {
            return Ok(false);
        };
        // The document's lock, held throughout (the next message of this
        // document waits); the store's only for short steps.
        let mut local = lock_doc(&slot);
        let before = local.doc.get_heads();
        let incoming = message.changes.iter().map(<[u8]>::len).sum();
        doc_layout::before_large_batch(&mut local.doc, incoming);
        // automerge panics on some crafted input instead of refusing it
        // (`sync_protocol::sync_data`): contained, and the document reloaded.
        let received = sync_protocol::sync_data::contain_panic(|| {
            local.doc.receive_sync_message(state, message)
        });
        match received {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                reload(&self.lock().store, id, &mut local)?;
                return Err(error.into());
            }
            Err(panicked) => {
                reload(&self.lock().store, id, &mut local)?;
                *state = automerge::sync::State::new();
                return Err(ClientError::Corrupt(format!(
                    "sync message from server: {panicked}"
                )));
            }
        }
        let heads = local.doc.get_heads();
        let changed = heads != before;
        if changed {
            // A fresh replica's first message loads the whole document.
            let local = &mut *local;
            local.layout.changed(&mut local.doc, before.is_empty());
        }
        let mut server_heads = state
            .their_heads
            .clone()
            .filter(|confirmed| *confirmed != local.server_heads);
        if changed {
            // The received changes, as automerge encodes them (one pass),
            // with the server's new heads in the same transaction (one
            // commit, one sync to disk).
            let chunk = local.doc.save_after(&before);
            let persisted = {
                let mut inner = self.lock();
                persist_chunk_unindexed(
                    &mut inner.store,
                    &self.path,
                    id,
                    &slot,
                    &mut local,
                    &chunk,
                    server_heads.as_deref(),
                )
            };
            if let Err(error) = persisted {
                reload(&self.lock().store, id, &mut local)?;
                return Err(error);
            }
            if let Some(confirmed) = server_heads.take() {
                local.server_heads = confirmed;
            }
            local.wanted = false;
            self.index_in_steps(id, &local.doc);
        }
        if let Some(confirmed) = server_heads {
            // The server's heads are a hint (what is counted as pending);
            // if a power loss takes this write back, the next sync confirms
            // them again. So it does not wait for the disk, which a busy
            // reconnect kept a door scan waiting for (up to 460 ms).
            let mut inner = self.lock();
            store::without_disk_sync(inner.store.conn_mut(), |conn| {
                store::write_server_heads(conn, id, &confirmed)
            })?;
            drop(inner);
            local.server_heads = confirmed;
        }
        // Counted under the document's lock alone: it walks the changes
        // since the server's heads (all of them when those heads are not
        // here yet), and a scan waiting for the store waited 459 ms for it
        // (BENCHMARKS.md, "The door tablet on a CPU of its own").
        let pending = local.pending_changes();
        // The count goes in before the document's lock does: a local change
        // made in between adds to the count this one replaces, and would be
        // lost from it (shown as confirmed while the server lacks it).
        let mut guard = self.lock();
        drop(local);
        let inner = &mut *guard;
        tracing::debug!(doc = %id, changed, pending, server_heads = ?state.their_heads, "sync message applied");
        inner.pending.insert(id, pending);
        inner.receive_cpu += thread_cpu_time().saturating_sub(started);
        let count = inner.pending_count();
        let all_confirmed = inner.pending_total() == 0;
        // The stored time of the last full sync is what a restarted app
        // shows until it syncs again: a few seconds old is as good, and
        // writing it on every message was a commit (and an fsync) each.
        let store_due = inner
            .last_sync_stored
            .is_none_or(|at| at.elapsed() >= LAST_SYNC_STORE_EVERY);
        if all_confirmed && store_due {
            // Shown until the next sync; not worth a wait for the disk.
            let now = unix_ms(SystemTime::now()).to_string();
            store::without_disk_sync(inner.store.conn_mut(), |conn| {
                store::write_meta(conn, "last_sync_at_ms", &now)
            })?;
            inner.last_sync_stored = Some(std::time::Instant::now());
        }
        drop(guard);
        self.publish_pending(count, |s| {
            if all_confirmed {
                s.last_sync_at = Some(SystemTime::now());
            }
        });
        if changed {
            let _ = self.events.send(DocEvent::Changed {
                document: id,
                origin: ChangeOrigin::Remote,
                heads,
            });
        }
        Ok(changed)
    }

    pub(crate) fn mark_unavailable(&self, id: DocumentId) {
        let _ = self.events.send(DocEvent::Unavailable { document: id });
    }

    /// Brings the event index of `id` up to `doc` in short steps, each its
    /// own transaction under the store's lock, so a scan waits at most one
    /// step. The caller holds the document's lock. A failure is logged: the
    /// changes are stored and the index catches up from its recorded heads.
    fn index_in_steps(&self, id: DocumentId, doc: &Automerge) {
        let _span = tracing::debug_span!("index_in_steps", doc = %id).entered();
        let indexed = match event_index::indexed_heads(self.lock().store.conn(), id) {
            Ok(indexed) => indexed,
            Err(error) => {
                tracing::error!(%error, doc = %id, "event index unreadable; it will catch up");
                return;
            }
        };
        // Read out of the document without the store's lock.
        let mut work = match event_index::IndexWork::read(indexed, id, doc) {
            Ok(Some(work)) => work,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, doc = %id, "event index update failed; it will catch up");
                return;
            }
        };
        let someone_waits = || self.store_watch.someone_waits();
        let end = event_index::StepEnd::yielding(&someone_waits);
        loop {
            let mut step = || -> Result<bool, ClientError> {
                let mut inner = self.lock();
                // The index is rebuilt from the document if a crash loses
                // a step: its commits need not wait for the disk, so the
                // store is held for the work alone.
                store::without_disk_sync(inner.store.conn_mut(), |conn| {
                    let tx = store::write_tx(conn)?;
                    let more = work.write_step(&tx, &end)?;
                    tx.commit()?;
                    Ok(more)
                })
            };
            match step() {
                Ok(true) => {
                    // A step that ended for a waiter lets it in before the
                    // next: the lock is not fair, and this thread, already
                    // running, would most often take it back first.
                    let yielded = std::time::Instant::now();
                    while someone_waits() && yielded.elapsed() < YIELD_TO_WAITERS {
                        std::thread::yield_now();
                    }
                    continue;
                }
                Ok(false) => return,
                Err(error) => {
                    tracing::error!(%error, doc = %id, "event index update failed; it will catch up");
                    return;
                }
            }
        }
    }
}

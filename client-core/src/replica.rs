//! The replica: every local document, its SQLite store and what is
//! pending sync. Feature modules (events, accounts, settings, ...) add
//! their operations to [`ClientCore`] in `impl` blocks of their own; the
//! sync client's side is in `sync_peer`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, UNIX_EPOCH};

use automerge::transaction::Transaction;
use automerge::{Automerge, ChangeHash};
use sync_protocol::{DocumentId, doc_layout};
use tokio::sync::{broadcast, watch};

use crate::store::{COMPACT_AFTER_CHUNKS, LocalStore};
use crate::{
    ChangeOrigin, ClientError, DocEvent, SyncStatus, event_index, journal_table, presence_state,
    store, store_guard,
};

pub(crate) struct LocalDoc {
    pub(crate) doc: Automerge,
    /// Whether `doc` still has the layout of a load (see `doc_layout`).
    pub(crate) layout: doc_layout::Layout,
    pub(crate) last_seq: u64,
    pub(crate) chunks_since_snapshot: u64,
    /// Heads the server confirmed having.
    pub(crate) server_heads: Vec<ChangeHash>,
    pub(crate) wanted: bool,
    /// A background compaction of this document is running.
    pub(crate) compacting: Arc<AtomicBool>,
}

impl LocalDoc {
    fn empty(wanted: bool) -> Self {
        Self {
            doc: Automerge::new(),
            layout: doc_layout::Layout::Settled,
            last_seq: 0,
            chunks_since_snapshot: 0,
            server_heads: Vec::new(),
            wanted,
            compacting: Arc::default(),
        }
    }

    pub(crate) fn pending_changes(&self) -> u64 {
        let known: Vec<ChangeHash> = self
            .server_heads
            .iter()
            .copied()
            .filter(|h| self.doc.get_change_meta_by_hash(h).is_some())
            .collect();
        self.doc.get_changes_meta(&known).len() as u64
    }
}

/// One document's lock. Locking rule: a document's lock may be taken and
/// then the store's ([`ClientCore::lock`]), never the other way round; so
/// applying a large remote batch to a document (seconds) holds only that
/// document, and a scan, which needs only the store, never waits behind it.
pub(crate) type DocSlot = Arc<Mutex<LocalDoc>>;

pub(crate) fn lock_doc(slot: &DocSlot) -> MutexGuard<'_, LocalDoc> {
    // As for the store: a panic cannot leave SQLite half-written.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) struct Inner {
    pub(crate) store: LocalStore,
    pub(crate) docs: HashMap<DocumentId, DocSlot>,
    /// Pending changes per document, summed into the status.
    pub(crate) pending: HashMap<DocumentId, u64>,
    /// Numbers each pending count read ([`Inner::pending_count`]).
    pub(crate) pending_seq: u64,
    /// Scans answered but not yet written into their documents (the scan
    /// journal); they are pending too.
    pub(crate) journaled: u64,
    /// CPU time spent taking in remote sync messages.
    pub(crate) receive_cpu: Duration,
    /// When `last_sync_at_ms` was last written (see `receive_sync_message`).
    pub(crate) last_sync_stored: Option<std::time::Instant>,
}

impl Inner {
    pub(crate) fn slot(&self, id: DocumentId) -> Option<DocSlot> {
        self.docs.get(&id).cloned()
    }

    pub(crate) fn pending_total(&self) -> u64 {
        self.pending.values().sum::<u64>() + self.journaled
    }

    /// The pending total as of now, numbered: read under the store's lock,
    /// where every change of the counts happens, so a larger number is a
    /// later count (see [`ClientCore::publish_pending`]).
    pub(crate) fn pending_count(&mut self) -> PendingCount {
        self.pending_seq += 1;
        PendingCount {
            seq: self.pending_seq,
            total: self.pending_total(),
        }
    }
}

/// A pending total and when it was read ([`Inner::pending_count`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingCount {
    seq: u64,
    total: u64,
}

/// A client's local replica. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct ClientCore {
    /// The store's read-only connection (see [`ClientCore::index_reader`]).
    /// Declared first so it closes before the writing connection: SQLite
    /// folds the write-ahead log into the database file when its last
    /// connection closes, and a read-only connection cannot, which left a
    /// closed store's documents only in its `-wal` file.
    pub(crate) reader: Arc<Mutex<rusqlite::Connection>>,
    pub(crate) inner: Arc<Mutex<Inner>>,
    pub(crate) events: broadcast::Sender<DocEvent>,
    pub(crate) status: Arc<watch::Sender<SyncStatus>>,
    /// The number of the pending count the status shows
    /// ([`ClientCore::publish_pending`]).
    pub(crate) pending_shown: Arc<AtomicU64>,
    pub(crate) path: PathBuf,
    /// What this device announces as presence (the sync client sends it).
    pub(crate) presence_intent: Arc<watch::Sender<presence_state::PresenceIntent>>,
    /// Other devices' presence beacons.
    pub(crate) heard: Arc<Mutex<presence_state::Heard>>,
    /// Wakes the writer that moves journaled scans into their documents.
    pub(crate) journal: Arc<journal_table::Signal>,
    /// Where the store's lock was last taken (a check-in answer that
    /// waited for it names what it most likely waited for) and who waits
    /// for it now (see [`ClientCore::lock`]).
    pub(crate) store_watch: Arc<store_guard::LockWatch>,
}

/// A [`ClientCore`] that does not keep it alive (held by its background
/// journal writer, which ends when the last clone is dropped).
pub(crate) struct WeakCore {
    pub(crate) inner: Weak<Mutex<Inner>>,
    pub(crate) events: broadcast::WeakSender<DocEvent>,
    pub(crate) status: Weak<watch::Sender<SyncStatus>>,
    pub(crate) pending_shown: Weak<AtomicU64>,
    pub(crate) path: PathBuf,
    pub(crate) presence_intent: Weak<watch::Sender<presence_state::PresenceIntent>>,
    pub(crate) heard: Weak<Mutex<presence_state::Heard>>,
    pub(crate) journal: Weak<journal_table::Signal>,
    pub(crate) store_watch: Weak<store_guard::LockWatch>,
    pub(crate) reader: Weak<Mutex<rusqlite::Connection>>,
}

impl WeakCore {
    pub(crate) fn upgrade(&self) -> Option<ClientCore> {
        Some(ClientCore {
            inner: self.inner.upgrade()?,
            events: self.events.upgrade()?,
            status: self.status.upgrade()?,
            pending_shown: self.pending_shown.upgrade()?,
            path: self.path.clone(),
            presence_intent: self.presence_intent.upgrade()?,
            heard: self.heard.upgrade()?,
            journal: self.journal.upgrade()?,
            store_watch: self.store_watch.upgrade()?,
            reader: self.reader.upgrade()?,
        })
    }
}

impl ClientCore {
    /// The replica of the store at `path` (created and migrated if needed)
    /// with every document in it loaded and indexed; [`ClientCore::open`]
    /// then writes the journaled scans and starts the journal's writer.
    pub(crate) fn load(path: &Path) -> Result<Self, ClientError> {
        let path = path.to_path_buf();
        let store = LocalStore::open(&path)?;
        let reader = LocalStore::open_reader(&path)?;
        let mut docs = HashMap::new();
        let mut pending = HashMap::new();
        for id in store.document_ids()? {
            let stored = store.load(id)?.ok_or(ClientError::NotFound(id))?;
            let (doc, layout) = doc_layout::load(
                stored.snapshot.as_deref(),
                stored.chunks.iter().map(Vec::as_slice),
            )?;
            let local = LocalDoc {
                doc,
                layout,
                last_seq: stored.last_seq,
                chunks_since_snapshot: stored.chunks.len() as u64,
                server_heads: stored.server_heads,
                wanted: stored.wanted,
                compacting: Arc::default(),
            };
            pending.insert(id, local.pending_changes());
            docs.insert(id, local);
        }
        let mut store = store;
        for (id, local) in &docs {
            index_document(&mut store, *id, &local.doc);
        }
        let journaled = journal_table::count(store.conn())?;
        let docs = docs
            .into_iter()
            .map(|(id, local)| (id, Arc::new(Mutex::new(local))))
            .collect();
        let last_sync_at = store
            .meta("last_sync_at_ms")?
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let status = SyncStatus {
            pending_changes: pending.values().sum::<u64>() + journaled,
            last_sync_at,
            ..SyncStatus::default()
        };
        let (events, _) = broadcast::channel(1024);
        let core = Self {
            inner: Arc::new(Mutex::new(Inner {
                store,
                docs,
                pending,
                pending_seq: 0,
                journaled,
                receive_cpu: Duration::ZERO,
                last_sync_stored: None,
            })),
            events,
            status: Arc::new(watch::channel(status).0),
            pending_shown: Arc::default(),
            path,
            presence_intent: Arc::new(watch::channel(None).0),
            heard: Arc::default(),
            journal: Arc::default(),
            store_watch: Arc::default(),
            reader: Arc::new(Mutex::new(reader)),
        };
        Ok(core)
    }

    pub(crate) fn downgrade(&self) -> WeakCore {
        WeakCore {
            inner: Arc::downgrade(&self.inner),
            events: self.events.downgrade(),
            status: Arc::downgrade(&self.status),
            pending_shown: Arc::downgrade(&self.pending_shown),
            path: self.path.clone(),
            presence_intent: Arc::downgrade(&self.presence_intent),
            heard: Arc::downgrade(&self.heard),
            journal: Arc::downgrade(&self.journal),
            store_watch: Arc::downgrade(&self.store_watch),
            reader: Arc::downgrade(&self.reader),
        }
    }

    /// The lock of document `id`, if the store has it (see [`DocSlot`]).
    pub(crate) fn slot(&self, id: DocumentId) -> Option<DocSlot> {
        self.lock().slot(id)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A value this replica keeps about itself (not synced).
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.lock().store.meta(key)
    }

    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<(), ClientError> {
        self.lock().store.set_meta(key, value)
    }

    /// A value the embedding app keeps on this device (not synced): a kiosk
    /// PIN's hash, the event a tablet works on. App keys live apart from
    /// the library's own (`app.` prefix), so no app key can clobber them.
    pub fn device_value(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.meta(&format!("app.{key}"))
    }

    /// Sets (`Some`) or removes (`None`) an app value; see [`ClientCore::device_value`].
    pub fn set_device_value(&self, key: &str, value: Option<&str>) -> Result<(), ClientError> {
        let key = format!("app.{key}");
        let inner = self.lock();
        match value {
            Some(value) => inner.store.set_meta(&key, value),
            None => inner.store.delete_meta(&key),
        }
    }

    /// Deletes every local document and its changes (what a revoked device
    /// must do), then announces [`DocEvent::Wiped`].
    pub fn wipe_local_data(&self) -> Result<(), ClientError> {
        let wiped = {
            let mut inner = self.lock();
            inner.store.delete_all_documents()?;
            event_index::rebuild_search(inner.store.conn())?;
            inner.docs.clear();
            inner.pending.clear();
            inner.journaled = 0;
            inner.pending_count()
        };
        self.publish_pending(wiped, |_| {});
        let _ = self.events.send(DocEvent::Wiped);
        tracing::warn!("local documents wiped");
        Ok(())
    }

    #[track_caller]
    pub(crate) fn lock(&self) -> store_guard::StoreGuard<'_, Inner> {
        self.store_watch
            .take(&self.inner, std::panic::Location::caller())
    }

    /// The store's read-only connection, for queries that only read: it
    /// sees the last commit and does not take the store's lock, so a screen
    /// polling counts (100-900 ms each over a busy event on a loaded CPU,
    /// BENCHMARKS.md) never keeps a scan waiting. Every write commits
    /// before it returns, so a caller reads its own writes.
    pub(crate) fn index_reader(&self) -> MutexGuard<'_, rusqlite::Connection> {
        // A read-only connection has nothing a panic could leave half-done.
        self.reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the store's lock was last taken, if ever.
    pub(crate) fn store_last_taken_at(&self) -> Option<&'static std::panic::Location<'static>> {
        self.store_watch.last_taken_at()
    }

    /// A new, empty document, recorded in the store (it syncs once it has content).
    pub fn create_document(&self) -> Result<DocumentId, ClientError> {
        let id = DocumentId::random();
        let mut inner = self.lock();
        inner.store.insert_document(id, false)?;
        inner
            .docs
            .insert(id, Arc::new(Mutex::new(LocalDoc::empty(false))));
        Ok(id)
    }

    /// Whether the store holds this document with any content.
    pub fn has_document(&self, id: DocumentId) -> bool {
        self.slot(id)
            .is_some_and(|slot| !lock_doc(&slot).doc.get_heads().is_empty())
    }

    /// Returns true if the document is here; otherwise records that we want it,
    /// so the sync client asks the server for it, and returns false.
    pub fn find(&self, id: DocumentId) -> Result<bool, ClientError> {
        if self.has_document(id) {
            return Ok(true);
        }
        let mut inner = self.lock();
        if !inner.docs.contains_key(&id) {
            inner.store.insert_document(id, true)?;
            inner
                .docs
                .insert(id, Arc::new(Mutex::new(LocalDoc::empty(true))));
        }
        drop(inner);
        let _ = self.events.send(DocEvent::Wanted { document: id });
        Ok(false)
    }

    /// Every document in the store.
    pub fn document_ids(&self) -> Vec<DocumentId> {
        let mut ids: Vec<_> = self.lock().docs.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Reads a document.
    pub fn read<T>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&Automerge) -> T,
    ) -> Result<T, ClientError> {
        let slot = self.slot(id).ok_or(ClientError::NotFound(id))?;
        let local = lock_doc(&slot);
        Ok(f(&local.doc))
    }

    /// Makes a change. It is committed to SQLite before this returns; if that
    /// fails the document is reloaded from the store and the error returned,
    /// so memory never holds a change the disk does not.
    pub fn change<T, E>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, ClientError>
    where
        E: Into<ClientError>,
    {
        self.change_many(id, |doc| {
            let mut tx = doc.transaction();
            match f(&mut tx) {
                Ok(value) => {
                    tx.commit();
                    Ok(value)
                }
                Err(e) => {
                    tx.rollback();
                    Err(e.into())
                }
            }
        })
    }

    /// Like [`ClientCore::change`], for work made of several changes (an
    /// import in small batches): everything `f` commits is stored in one
    /// SQLite transaction, or, if `f` or the write fails, none of it.
    pub(crate) fn change_many<T>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.change_many_then(id, f, |_| Ok(()))
    }

    /// Like [`ClientCore::change_many`]; `also` writes in the same SQLite
    /// transaction as the new changes (the journal writer deletes the
    /// journal rows of the scans it wrote into the document), or alone
    /// when `f` changed nothing.
    pub(crate) fn change_many_then<T>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<T, ClientError>,
        also: impl FnOnce(&rusqlite::Connection) -> Result<(), ClientError>,
    ) -> Result<T, ClientError> {
        let slot = self.slot(id).ok_or(ClientError::NotFound(id))?;
        let mut guard = lock_doc(&slot);
        let local = &mut *guard;
        let before = local.doc.get_heads();
        let value = match f(&mut local.doc) {
            Ok(value) => value,
            Err(error) => {
                if local.doc.get_heads() != before {
                    reload(&self.lock().store, id, local)?;
                }
                return Err(error);
            }
        };
        let heads = local.doc.get_heads();
        if heads == before {
            also(self.lock().store.conn())?;
            return Ok(value);
        }
        local.layout.changed(&mut local.doc, before.is_empty());
        let chunk = local.doc.save_after(&before);
        let mut store_guard = self.lock();
        let inner = &mut *store_guard;
        if let Err(error) =
            persist_chunk(&mut inner.store, &self.path, id, &slot, local, &chunk, also)
        {
            reload(&inner.store, id, local)?;
            return Err(error);
        }
        // Every new local change is one the server does not have yet;
        // counting only those keeps a long offline stretch from making each
        // change cost as much as all the changes before it.
        let added = local.doc.get_changes_meta(&before).len() as u64;
        *inner.pending.entry(id).or_default() += added;
        let count = inner.pending_count();
        drop(store_guard);
        drop(guard);
        self.publish_pending(count, |_| {});
        let _ = self.events.send(DocEvent::Changed {
            document: id,
            origin: ChangeOrigin::Local,
            heads,
        });
        Ok(value)
    }

    /// Document events, local and remote.
    pub fn subscribe(&self) -> broadcast::Receiver<DocEvent> {
        self.events.subscribe()
    }

    /// CPU time this replica has spent taking in sync messages from the
    /// server (applying, storing and indexing them): what a tablet pays to
    /// catch up with the others.
    pub fn sync_receive_cpu(&self) -> Duration {
        self.lock().receive_cpu
    }

    pub fn sync_status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// Sync status updates.
    pub fn watch_sync_status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    pub(crate) fn set_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        self.status.send_modify(f);
    }

    /// Shows `count` as the status's pending changes unless a later count
    /// is already shown, then applies `also`. Counts are read under the
    /// store's lock but published after it is released, so two threads
    /// (a local change and the sync client confirming changes) can publish
    /// in the other order; without this the earlier count could stay on
    /// show, e.g. 20 changes waiting that the server already has, and
    /// nothing would correct it until the next change.
    pub(crate) fn publish_pending(&self, count: PendingCount, also: impl FnOnce(&mut SyncStatus)) {
        self.status.send_modify(|s| {
            // The watch's lock orders these closures: no two compare at once.
            if count.seq > self.pending_shown.load(Ordering::Relaxed) {
                self.pending_shown.store(count.seq, Ordering::Relaxed);
                s.pending_changes = count.total;
            }
            also(s);
        });
    }
}

/// Brings the document's SQLite index up to date. A failure is logged, not
/// returned: the change itself is safely stored, and the index catches up
/// from its own recorded heads at the next change or the next open.
fn index_document(store: &mut LocalStore, id: DocumentId, doc: &Automerge) {
    if let Err(error) = event_index::update(store.conn_mut(), id, doc) {
        tracing::error!(%error, doc = %id, "event index update failed; it will catch up");
    }
}

/// Appends a chunk; once enough have piled up, folds them into a snapshot
/// on a background thread (so no change waits for a large document to save).
fn persist_chunk(
    store: &mut LocalStore,
    path: &Path,
    id: DocumentId,
    slot: &DocSlot,
    local: &mut LocalDoc,
    chunk: &[u8],
    also: impl FnOnce(&rusqlite::Connection) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let doc = &local.doc;
    local.last_seq = store.append_chunk_then(id, chunk, also, |conn| {
        event_index::update_within(conn, id, doc)
    })?;
    after_append(path, id, slot, local);
    Ok(())
}

/// Like [`persist_chunk`], leaving the index to the caller (a remote batch
/// is indexed in steps after it is stored).
pub(crate) fn persist_chunk_unindexed(
    store: &mut LocalStore,
    path: &Path,
    id: DocumentId,
    slot: &DocSlot,
    local: &mut LocalDoc,
    chunk: &[u8],
    server_heads: Option<&[ChangeHash]>,
) -> Result<(), ClientError> {
    let also = |conn: &rusqlite::Connection| match server_heads {
        Some(heads) => store::write_server_heads(conn, id, heads),
        None => Ok(()),
    };
    local.last_seq = store.append_chunk_then(id, chunk, also, |_| Ok(()))?;
    after_append(path, id, slot, local);
    Ok(())
}

/// Counts an appended chunk; once enough have piled up, starts folding them
/// (from a copy of the live document in `slot`, which `local` is, locked).
fn after_append(path: &Path, id: DocumentId, slot: &DocSlot, local: &mut LocalDoc) {
    local.chunks_since_snapshot += 1;
    if local.chunks_since_snapshot >= COMPACT_AFTER_CHUNKS
        && !local.compacting.swap(true, Ordering::AcqRel)
    {
        local.chunks_since_snapshot = 0;
        let (path, busy) = (path.to_path_buf(), local.compacting.clone());
        let slot = Arc::downgrade(slot);
        let live = move || {
            let slot = slot.upgrade()?;
            let local = lock_doc(&slot);
            Some((local.doc.clone(), local.last_seq))
        };
        std::thread::spawn(move || {
            // The counter was reset for everything up to now: fold all of it
            // (not only when a full batch is waiting), then keep up with more.
            let mut at_least = 1;
            loop {
                // A failed compaction loses nothing: the chunks are still there.
                let folded = match store::compact_in_background(&path, id, at_least, &live) {
                    Ok(folded) => folded,
                    Err(error) => {
                        tracing::warn!(%error, doc = %id, "compaction failed");
                        busy.store(false, Ordering::Release);
                        return;
                    }
                };
                busy.store(false, Ordering::Release);
                // Not worth it yet: the next batch of chunks asks again.
                if !folded {
                    return;
                }
                // Changes that arrived after the last look, while the flag was
                // still up, triggered nothing: look once more.
                let backlog = store::uncompacted_chunks(&path, id).unwrap_or(0);
                if backlog < COMPACT_AFTER_CHUNKS || busy.swap(true, Ordering::AcqRel) {
                    return;
                }
                at_least = COMPACT_AFTER_CHUNKS;
            }
        });
    }
}

/// Replaces the in-memory document with what the store holds.
pub(crate) fn reload(
    store: &LocalStore,
    id: DocumentId,
    local: &mut LocalDoc,
) -> Result<(), ClientError> {
    let stored = store.load(id)?;
    let mut doc = Automerge::new();
    let mut layout = doc_layout::Layout::Settled;
    let mut last_seq = 0;
    let mut chunk_count = 0;
    if let Some(stored) = stored {
        (doc, layout) = doc_layout::load(
            stored.snapshot.as_deref(),
            stored.chunks.iter().map(Vec::as_slice),
        )?;
        last_seq = stored.last_seq;
        chunk_count = stored.chunks.len() as u64;
    }
    local.doc = doc;
    local.layout = layout;
    local.last_seq = last_seq;
    local.chunks_since_snapshot = chunk_count;
    Ok(())
}

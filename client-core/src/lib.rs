//! The one client library: a local SQLite store of Automerge documents and a
//! sync client that speaks the automerge-repo websocket protocol.
//!
//! Every local change is committed to SQLite before [`ClientCore::change`]
//! returns, and so before the sync client can send it. Remote changes are
//! committed before the client answers the server, so the server's view of
//! what this replica has is never ahead of its disk.

mod account;
mod admin;
pub mod attendee_csv;
mod event_index;
mod events;
mod journal;
mod org_config;
mod presence;
mod quarantine;
mod settings;
mod store;
mod store_guard;
mod sync;
mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use automerge::sync::SyncDoc;
use automerge::transaction::Transaction;
use automerge::{Automerge, AutomergeError, ChangeHash};
use tokio::sync::{broadcast, watch};

pub use account::{
    Account, AccountError, Enrollment, SessionInfo, SessionState, SignInStep, UserInfo,
    use_platform_keychain,
};
pub use admin::{AuditFilter, AuditPage, AuditVerification, DeviceRecord, UserRecord};
pub use automerge;
pub use event_model;
pub use events::{
    AnnulError, AttendeeView, CheckInResult, DuplicateView, EventSummary, ImportProgress,
    ImportReport, RowError, ScanView,
};
pub use presence::PeerPresence;
pub use quarantine::QuarantinedChange;
pub use settings_model::{self, SettingValue, Settings};
pub use sync::{SyncConfig, SyncHandle};
pub use sync_protocol::DocumentId;
use sync_protocol::doc_layout;
pub use tls::{ServerTrust, TrustError, spki_sha256};

use store::LocalStore;

/// Chunks appended to a document before they are folded into a snapshot.
pub(crate) const COMPACT_AFTER_CHUNKS: u64 = 64;
/// How often the time of the last full sync is written to the store.
const LAST_SYNC_STORE_EVERY: Duration = Duration::from_secs(5);

/// How long an index step that ended for a waiter gives it to take the
/// store's lock before the next step goes for the lock itself.
const YIELD_TO_WAITERS: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("local database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("local schema: {0}")]
    Migration(#[from] migrations::MigrationError),
    #[error("document error: {0}")]
    Automerge(#[from] AutomergeError),
    #[error("no document {0} in the local store")]
    NotFound(DocumentId),
    #[error("local data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("event data: {0}")]
    Model(Box<event_model::ModelError>),
    #[error("import: {0}")]
    Import(String),
    #[error("settings: {0}")]
    Settings(String),
}

impl From<event_model::ModelError> for ClientError {
    fn from(error: event_model::ModelError) -> Self {
        ClientError::Model(Box::new(error))
    }
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOrigin {
    Local,
    Remote,
}

/// A document changed (or was asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocEvent {
    Changed {
        document: DocumentId,
        origin: ChangeOrigin,
        heads: Vec<ChangeHash>,
    },
    /// `find` asked for a document this store does not have yet.
    Wanted { document: DocumentId },
    /// The server says it has no such document (or may not show it to us).
    Unavailable { document: DocumentId },
    /// Every local document was deleted (this device was revoked).
    Wiped,
    /// The server refused some local changes: they were set aside (see
    /// [`ClientCore::quarantined_changes`]) and the document now has `heads`.
    Quarantined {
        document: DocumentId,
        changes: usize,
        heads: Vec<ChangeHash>,
    },
}

/// The state of syncing, for a status indicator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncStatus {
    pub connected: bool,
    /// Changes in the local store the server has not confirmed yet, plus
    /// scans answered here and not yet written into their documents (the
    /// scan journal): everything that has still to reach the server.
    pub pending_changes: u64,
    /// When the server last confirmed it had every local change.
    pub last_sync_at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
}

impl SyncStatus {
    /// `last_sync_at` as unix milliseconds (what UIs and bindings pass on).
    pub fn last_sync_ms(&self) -> Option<i64> {
        self.last_sync_at.map(|t| unix_ms(t) as i64)
    }

    /// `last_error_at` as unix milliseconds.
    pub fn last_error_ms(&self) -> Option<i64> {
        self.last_error_at.map(|t| unix_ms(t) as i64)
    }
}

struct LocalDoc {
    doc: Automerge,
    /// Whether `doc` still has the layout of a load (see `doc_layout`).
    layout: doc_layout::Layout,
    last_seq: u64,
    chunks_since_snapshot: u64,
    /// Heads the server confirmed having.
    server_heads: Vec<ChangeHash>,
    wanted: bool,
    /// A background compaction of this document is running.
    compacting: Arc<AtomicBool>,
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

    fn pending_changes(&self) -> u64 {
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
type DocSlot = Arc<Mutex<LocalDoc>>;

fn lock_doc(slot: &DocSlot) -> MutexGuard<'_, LocalDoc> {
    // As for the store: a panic cannot leave SQLite half-written.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Inner {
    store: LocalStore,
    docs: HashMap<DocumentId, DocSlot>,
    /// Pending changes per document, summed into the status.
    pending: HashMap<DocumentId, u64>,
    /// Scans answered but not yet written into their documents (the scan
    /// journal); they are pending too.
    journaled: u64,
    /// CPU time spent taking in remote sync messages.
    receive_cpu: Duration,
    /// When `last_sync_at_ms` was last written (see `receive_sync_message`).
    last_sync_stored: Option<std::time::Instant>,
}

impl Inner {
    fn slot(&self, id: DocumentId) -> Option<DocSlot> {
        self.docs.get(&id).cloned()
    }

    fn pending_total(&self) -> u64 {
        self.pending.values().sum::<u64>() + self.journaled
    }
}

/// A client's local replica. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct ClientCore {
    /// The store's read-only connection (see [`ClientCore::index_reader`]).
    /// Declared first so it closes before the writing connection: SQLite
    /// folds the write-ahead log into the database file when its last
    /// connection closes, and a read-only connection cannot, which left a
    /// closed store's documents only in its `-wal` file.
    reader: Arc<Mutex<rusqlite::Connection>>,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<DocEvent>,
    status: Arc<watch::Sender<SyncStatus>>,
    path: PathBuf,
    /// What this device announces as presence (the sync client sends it).
    presence_intent: Arc<watch::Sender<presence::PresenceIntent>>,
    /// Other devices' presence beacons.
    heard: Arc<Mutex<presence::Heard>>,
    /// Wakes the writer that moves journaled scans into their documents.
    journal: Arc<journal::Signal>,
    /// Where the store's lock was last taken (a check-in answer that
    /// waited for it names what it most likely waited for) and who waits
    /// for it now (see [`ClientCore::lock`]).
    store_watch: Arc<store_guard::LockWatch>,
}

/// A [`ClientCore`] that does not keep it alive (held by its background
/// journal writer, which ends when the last clone is dropped).
struct WeakCore {
    inner: Weak<Mutex<Inner>>,
    events: broadcast::WeakSender<DocEvent>,
    status: Weak<watch::Sender<SyncStatus>>,
    path: PathBuf,
    presence_intent: Weak<watch::Sender<presence::PresenceIntent>>,
    heard: Weak<Mutex<presence::Heard>>,
    journal: Weak<journal::Signal>,
    store_watch: Weak<store_guard::LockWatch>,
    reader: Weak<Mutex<rusqlite::Connection>>,
}

impl WeakCore {
    fn upgrade(&self) -> Option<ClientCore> {
        Some(ClientCore {
            inner: self.inner.upgrade()?,
            events: self.events.upgrade()?,
            status: self.status.upgrade()?,
            path: self.path.clone(),
            presence_intent: self.presence_intent.upgrade()?,
            heard: self.heard.upgrade()?,
            journal: self.journal.upgrade()?,
            store_watch: self.store_watch.upgrade()?,
            reader: self.reader.upgrade()?,
        })
    }
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now()) as i64
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ClientCore {
    /// Opens (creating and migrating if needed) the store at `path` and loads
    /// every document in it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
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
        let journaled = journal::count(store.conn())?;
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
                journaled,
                receive_cpu: Duration::ZERO,
                last_sync_stored: None,
            })),
            events,
            status: Arc::new(watch::channel(status).0),
            path,
            presence_intent: Arc::new(watch::channel(None).0),
            heard: Arc::default(),
            journal: Arc::default(),
            store_watch: Arc::default(),
            reader: Arc::new(Mutex::new(reader)),
        };
        // Scans answered before a crash or a restart go into their
        // documents now, before anyone reads them.
        core.flush_journal()?;
        journal::start_writer(core.downgrade());
        Ok(core)
    }

    fn downgrade(&self) -> WeakCore {
        WeakCore {
            inner: Arc::downgrade(&self.inner),
            events: self.events.downgrade(),
            status: Arc::downgrade(&self.status),
            path: self.path.clone(),
            presence_intent: Arc::downgrade(&self.presence_intent),
            heard: Arc::downgrade(&self.heard),
            journal: Arc::downgrade(&self.journal),
            store_watch: Arc::downgrade(&self.store_watch),
            reader: Arc::downgrade(&self.reader),
        }
    }

    /// The lock of document `id`, if the store has it (see [`DocSlot`]).
    fn slot(&self, id: DocumentId) -> Option<DocSlot> {
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
        {
            let mut inner = self.lock();
            inner.store.delete_all_documents()?;
            event_index::rebuild_search(inner.store.conn())?;
            inner.docs.clear();
            inner.pending.clear();
            inner.journaled = 0;
        }
        self.set_status(|s| s.pending_changes = 0);
        let _ = self.events.send(DocEvent::Wiped);
        tracing::warn!("local documents wiped");
        Ok(())
    }

    #[track_caller]
    fn lock(&self) -> store_guard::StoreGuard<'_> {
        self.store_watch
            .take(&self.inner, std::panic::Location::caller())
    }

    /// The store's read-only connection, for queries that only read: it
    /// sees the last commit and does not take the store's lock, so a screen
    /// polling counts (100-900 ms each over a busy event on a loaded CPU,
    /// BENCHMARKS.md) never keeps a scan waiting. Every write commits
    /// before it returns, so a caller reads its own writes.
    fn index_reader(&self) -> MutexGuard<'_, rusqlite::Connection> {
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

    /// The document's heads, with every scan answered here written into it.
    pub fn heads(&self, id: DocumentId) -> Result<Vec<ChangeHash>, ClientError> {
        self.flush_journal_of(id)?;
        self.read(id, |d| d.get_heads())
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
        let total = inner.pending_total();
        drop(store_guard);
        drop(guard);
        self.status.send_modify(|s| s.pending_changes = total);
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

    /// Starts syncing with a server in the background (on the current tokio runtime).
    pub fn start_sync(&self, config: SyncConfig) -> SyncHandle {
        sync::start(self.clone(), config)
    }

    // ---- used by the sync client ----

    fn set_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        self.status.send_modify(f);
    }

    /// Documents to sync on (re)connect: (id, has content, wanted).
    fn sync_targets(&self) -> Vec<(DocumentId, bool, bool)> {
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

    fn generate_sync_message(
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
    fn receive_sync_message(
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
        drop(local);
        let mut guard = self.lock();
        let inner = &mut *guard;
        tracing::debug!(doc = %id, changed, pending, server_heads = ?state.their_heads, "sync message applied");
        inner.pending.insert(id, pending);
        inner.receive_cpu += thread_cpu_time().saturating_sub(started);
        let total = inner.pending_total();
        let all_confirmed = total == 0;
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
        self.set_status(|s| {
            s.pending_changes = total;
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

    fn mark_unavailable(&self, id: DocumentId) {
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

/// The calling thread's CPU time. Work that runs without an await in
/// between stays on one thread, so a difference of two readings is what
/// that work cost.
pub(crate) fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a
        // constant every unix libc defines.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    Duration::ZERO
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
fn persist_chunk_unindexed(
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
fn reload(store: &LocalStore, id: DocumentId, local: &mut LocalDoc) -> Result<(), ClientError> {
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

#[cfg(test)]
mod tests;

//! Server persistence behind one trait. Nothing above this module knows which
//! database is underneath; `sqlite` is the embedded default and a PostgreSQL
//! implementation plugs in beside it.

mod postgres;
mod postgres_sessions;
pub mod sessions;
pub(crate) mod sqlite;
mod sqlite_sessions;

use async_trait::async_trait;
use sync_protocol::DocumentId;

pub use postgres::{PostgresStore, migrate as migrate_postgres};
pub use sessions::SessionStore;
pub use sqlite::{SqliteStore, database_path as sqlite_database_path};

use crate::audit::{AuditEntry, NewAuditEntry};
use crate::credentials::Role;
pub use crate::identity::throttle::{ThrottlePolicy, ThrottleRecord};

/// A document as persisted: the last compacted snapshot and the chunks
/// appended since, in order. Loading = snapshot, then each chunk.
#[derive(Debug, Default, Clone)]
pub struct StoredDocument {
    pub snapshot: Option<Vec<u8>>,
    pub chunks: Vec<Vec<u8>>,
    /// Sequence number of the last chunk (0 when there is none).
    pub last_seq: u64,
}

/// What changed in a document since a sequence number: the snapshot if a
/// compaction folded away chunks the caller has not seen, then newer chunks.
#[derive(Debug, Default, Clone)]
pub struct ChunksAfter {
    pub snapshot: Option<Vec<u8>>,
    /// `(seq, data)` in order.
    pub chunks: Vec<(u64, Vec<u8>)>,
    /// The highest sequence number covered (snapshot or last chunk).
    pub through_seq: u64,
}

impl From<ChunksAfter> for StoredDocument {
    /// Everything after sequence number 0 is the whole document.
    fn from(all: ChunksAfter) -> Self {
        StoredDocument {
            snapshot: all.snapshot,
            chunks: all.chunks.into_iter().map(|(_, data)| data).collect(),
            last_seq: all.through_seq,
        }
    }
}

/// Another server node wrote to a document (multi-node stores only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeNotice {
    Written {
        document: DocumentId,
        seq: u64,
    },
    /// Notices may have been missed (the feed reconnected or lagged):
    /// every loaded document should catch up, and open connections be re-checked.
    Resync,
    /// Another node revoked access (`kind` is `session`, `device`, `user` or
    /// `api_key`): connections it covers must close.
    AccessRevoked {
        kind: String,
        id: String,
    },
    /// Another node heard a presence beacon, or a connection left
    /// (`note` is a JSON `presence::PresenceNote`).
    Presence {
        node: String,
        note: String,
    },
}

/// An API key as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// A person who signs in (the password hash and TOTP secret stay in the store layer's callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub totp_confirmed: bool,
    pub totp_last_step: Option<u64>,
    pub disabled: bool,
}

/// Outcome of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub schema_version: u32,
    pub expected_version: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("migration error: {0}")]
    Migration(#[from] migrations::MigrationError),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("already exists: {0}")]
    Conflict(String),
}

/// Sign-in failure records shared by every node on one store, so failures
/// spread over nodes are throttled as one. A store that serves one node
/// has none: that node keeps its records in memory.
#[async_trait]
pub trait ThrottleLedger: Send + Sync {
    /// The records of `keys`, in order (`None` where a key has none).
    async fn throttle_records(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<ThrottleRecord>>, StoreError>;
    /// One more failure for each of `keys`, computed by `policy` from the
    /// stored record under a row lock (two nodes cannot both miss one).
    async fn throttle_failure(
        &self,
        keys: &[String],
        policy: &ThrottlePolicy,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    async fn throttle_clear(&self, key: &str) -> Result<(), StoreError>;
    /// Drops records `policy` has forgotten; how many.
    async fn throttle_prune(&self, policy: &ThrottlePolicy, now_ms: i64)
    -> Result<u64, StoreError>;
}

/// Everything the server persists.
#[async_trait]
pub trait Store: SessionStore {
    /// The document's snapshot and chunks, or `None` if it was never stored.
    async fn load_document(&self, id: DocumentId) -> Result<Option<StoredDocument>, StoreError>;
    /// Appends one chunk of changes (creating the document on first write) and
    /// returns its sequence number. Durable when this returns.
    async fn append_chunk(&self, id: DocumentId, data: Vec<u8>) -> Result<u64, StoreError>;
    /// Replaces every chunk up to `through_seq` with `snapshot`, atomically.
    async fn compact(
        &self,
        id: DocumentId,
        snapshot: Vec<u8>,
        through_seq: u64,
    ) -> Result<(), StoreError>;
    /// Ids of every stored document.
    async fn list_documents(&self) -> Result<Vec<DocumentId>, StoreError>;
    /// Number of chunks not yet folded into a snapshot (for tests and metrics).
    async fn chunk_count(&self, id: DocumentId) -> Result<u64, StoreError>;
    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
    ) -> Result<ApiKey, StoreError>;
    /// The live (unrevoked) key with this token hash; records its use.
    async fn authenticate_api_key(&self, token_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Reachable, and its schema is the one this build expects.
    async fn readiness(&self) -> Result<Readiness, StoreError>;
    /// Flushes and releases the database (graceful shutdown).
    async fn close(&self) -> Result<(), StoreError>;
    /// Everything stored for the document after `after_seq` (see [`ChunksAfter`]).
    async fn chunks_after(&self, id: DocumentId, after_seq: u64)
    -> Result<ChunksAfter, StoreError>;
    /// Writes by other nodes sharing this store, for stores that can have
    /// several nodes; `None` for a single-node store.
    fn change_feed(&self) -> Option<tokio::sync::broadcast::Receiver<ChangeNotice>> {
        None
    }
    /// Tells the other nodes sharing this store to close connections of
    /// `kind`/`id` (see [`ChangeNotice::AccessRevoked`]); nothing to do alone.
    async fn announce_revocation(&self, _kind: &str, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Failure records shared with the other nodes (`None`: this node alone).
    fn throttle_ledger(&self) -> Option<&dyn ThrottleLedger> {
        None
    }
    /// Tells the other nodes sharing this store what this node heard of
    /// presence (see [`ChangeNotice::Presence`]); nothing to do alone.
    async fn announce_presence(&self, _note: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Appends a chunk and its audit entry (`entry`'s details get the
    /// chunk's `seq`); the seq once the chunk is durable. An audit entry that
    /// cannot be written is logged, never fails the write. Stores that can
    /// put both in one transaction, and several documents' writes in one
    /// commit, do (SQLite: group commit); the default is the two calls.
    async fn append_chunk_audited(
        &self,
        id: DocumentId,
        data: Vec<u8>,
        entry: NewAuditEntry,
    ) -> Result<u64, StoreError> {
        let seq = self.append_chunk(id, data).await?;
        if let Err(error) = self.append_audit(entry.with_seq(seq)).await {
            tracing::error!(%error, "audit log write failed");
        }
        Ok(seq)
    }
    /// Appends to the hash-chained audit log (serialised across writers).
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError>;
    /// Up to `limit` entries after `after_seq`, in order.
    async fn audit_entries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// The chain's recorded head: last sequence number and hash.
    async fn audit_head(&self) -> Result<(u64, String), StoreError>;

    /// Creates a user; `Conflict` if the (lower-cased) email is taken.
    async fn create_user(
        &self,
        email: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// Starts (or restarts) TOTP enrollment with a new secret, unconfirmed.
    async fn set_totp_secret(&self, user_id: &str, secret: &str) -> Result<(), StoreError>;
    /// Records `step` as the newest accepted TOTP step, atomically: false if
    /// it is not newer than the stored one (a replay, even across nodes).
    /// `confirm` also marks the enrollment confirmed.
    async fn accept_totp_step(
        &self,
        user_id: &str,
        step: u64,
        confirm: bool,
    ) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes with these hashes.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
    ) -> Result<(), StoreError>;
    /// Uses a recovery code once: false if unknown or already used.
    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError>;
}

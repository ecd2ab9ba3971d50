//! Everything the sync server persists, behind traits with one
//! implementation per database: the embedded SQLite store (feature `sqlite`,
//! the default) and PostgreSQL (feature `postgres`). A build without a
//! feature has none of that database's code. The records the traits read and
//! write, the audit chain and its check over a store live here too, so the
//! server above knows no SQL and the backends know nothing of the server.

mod api_views;
pub mod audit;
pub mod audit_verify;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod records;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod throttle;
mod traits;

use std::sync::Arc;

use async_trait::async_trait;
use sync_protocol::DocumentId;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, migrate as migrate_postgres};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, database_path as sqlite_database_path};
pub use throttle::{ThrottlePolicy, ThrottleRecord};
pub use traits::{
    AccountStore, AuditStore, DocumentStore, SecretStore, SettingsHistory, StoreNode,
};

use api_types::Role;

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

impl User {
    /// A new user: a fresh id, the email in its normal form, no second factor yet.
    pub fn new(email: &str, role: Role, password_hash: &str) -> Self {
        Self {
            id: new_id(),
            email: normalize_email(email),
            role,
            password_hash: password_hash.to_owned(),
            totp_secret: None,
            totp_confirmed: false,
            totp_last_step: None,
            disabled: false,
        }
    }
}

/// An email as stored and looked up: trimmed and lower-cased, so
/// `Ada@Example.org ` signs in as `ada@example.org`.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A new record id (users, devices, sessions, API keys).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
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

/// The server's store: one handle per job, all usually the same backend.
/// Cloning is cheap. A caller needing one job takes that handle; a test that
/// breaks one job replaces that handle only (struct update syntax).
#[derive(Clone)]
pub struct Store {
    pub documents: Arc<dyn DocumentStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub audit: Arc<dyn AuditStore>,
    pub settings_history: Arc<dyn SettingsHistory>,
    pub secrets: Arc<dyn SecretStore>,
    pub node: Arc<dyn StoreNode>,
}

impl Store {
    /// Every job served by one backend.
    pub fn new<B>(backend: B) -> Self
    where
        B: DocumentStore + AccountStore + AuditStore + SettingsHistory + SecretStore + StoreNode,
    {
        Self::shared(Arc::new(backend))
    }

    /// Every job served by one backend already shared (a test keeps its own handle).
    pub fn shared<B>(backend: Arc<B>) -> Self
    where
        B: DocumentStore + AccountStore + AuditStore + SettingsHistory + SecretStore + StoreNode,
    {
        Self {
            documents: backend.clone(),
            accounts: backend.clone(),
            audit: backend.clone(),
            settings_history: backend.clone(),
            secrets: backend.clone(),
            node: backend,
        }
    }
}

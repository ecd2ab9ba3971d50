//! What an app watches: each document's changes and the state of syncing.

use std::time::SystemTime;

use automerge::ChangeHash;
use sync_protocol::DocumentId;

use crate::time::unix_ms;

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

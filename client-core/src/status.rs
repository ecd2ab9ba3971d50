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
    /// The last failure as it came (for a details view and the logs).
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// What the last failure means, in words for the people at the door.
    pub problem: Option<SyncProblem>,
    /// When the client tries again (while it waits after a failure).
    pub next_retry_at: Option<SystemTime>,
}

/// What stands between this replica and the server, by what a person can
/// do about it (the raw error stays in `SyncStatus::last_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncProblem {
    /// No connection: the network, the Wi-Fi or the server is down.
    Unreachable,
    /// The server's certificate is not one this device trusts.
    UntrustedServer,
    /// Signed out, or the server no longer accepts this device's session.
    NotSignedIn,
    /// The server answered with an error or something this app cannot read.
    ServerError,
    /// This device's own storage failed.
    LocalStorage,
    /// The sync settings cannot work (an unreadable certificate authority).
    Settings,
}

impl SyncProblem {
    /// A sentence for a status line.
    pub fn plain(self) -> &'static str {
        match self {
            SyncProblem::Unreachable => "Can't reach the server",
            SyncProblem::UntrustedServer => "The server's certificate isn't trusted",
            SyncProblem::NotSignedIn => "Not signed in",
            SyncProblem::ServerError => "The server had a problem",
            SyncProblem::LocalStorage => "This device's storage failed",
            SyncProblem::Settings => "The sync settings can't work",
        }
    }

    /// A stable name for APIs (`unreachable`, `untrusted_server`, ...).
    pub fn code(self) -> &'static str {
        match self {
            SyncProblem::Unreachable => "unreachable",
            SyncProblem::UntrustedServer => "untrusted_server",
            SyncProblem::NotSignedIn => "not_signed_in",
            SyncProblem::ServerError => "server_error",
            SyncProblem::LocalStorage => "local_storage",
            SyncProblem::Settings => "settings",
        }
    }
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

    /// `next_retry_at` as unix milliseconds.
    pub fn next_retry_ms(&self) -> Option<i64> {
        self.next_retry_at.map(|t| unix_ms(t) as i64)
    }
}

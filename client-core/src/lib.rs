//! The one client library: a local SQLite store of Automerge documents and a
//! sync client that speaks the automerge-repo websocket protocol.
//!
//! Every local change is committed to SQLite before [`ClientCore::change`]
//! returns, and so before the sync client can send it. Remote changes are
//! committed before the client answers the server, so the server's view of
//! what this replica has is never ahead of its disk.

mod account;
mod admin;
pub mod analytics;
pub mod attendee_csv;
mod error;
mod event_index;
mod events;
mod journal;
mod journal_table;
mod open;
mod org_config;
mod presence;
mod presence_state;
mod quarantine;
mod replica;
mod settings;
mod signed_tickets;
mod status;
mod store;
mod store_guard;
mod sync;
mod sync_peer;
mod time;
mod tls;

pub use account::{
    Account, AccountError, Enrollment, SessionInfo, SessionState, SignInStep, UserInfo,
    use_platform_keychain,
};
pub use admin::{AuditFilter, AuditPage};
pub use analytics::{CheckinReport, ReportError};
pub use api_types::{
    AuditVerification, Device, IssueTicketRequest, IssuedTicket, Role, ServerStatus, TicketKey,
    UnknownRole, User,
};
pub use automerge;
pub use event_model;
pub use events::{
    AnnulError, AttendeeView, CheckInResult, DuplicateView, EventSummary, ImportProgress,
    ImportReport, RowError, ScanView,
};
pub use presence_state::PeerPresence;
pub use quarantine::QuarantinedChange;
pub use settings_model::{self, SettingValue, Settings};
pub use sync::{SyncConfig, SyncHandle};
pub use sync_protocol::DocumentId;
pub use tls::{ServerTrust, TrustError, spki_sha256};

pub use error::ClientError;

/// This build's version, as devices report it (presence beacons).
pub const APP_VERSION: &str = env!("CARGO_PKG_VERSION");
pub use replica::ClientCore;
pub use status::{ChangeOrigin, DocEvent, SyncProblem, SyncStatus};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_door_rules;
#[cfg(test)]
mod tests_signed_tickets;

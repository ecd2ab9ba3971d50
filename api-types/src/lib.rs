//! The REST API's bodies, written once: the server serves them (and derives
//! its OpenAPI schemas from them with the `openapi` feature), the client
//! core and the desktop app read them. Types move here from the server's
//! handlers and the clients as their routes are touched.

use serde::{Deserialize, Serialize};

/// `GET /api/status`: the server's health at a glance, for administrators
/// and dashboards. Cheap enough to poll every few seconds: one store round
/// trip, one audit query, counters in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerStatus {
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The git revision it was built from ("unknown" outside a checkout).
    pub git: String,
    /// When this process started (RFC 3339, UTC).
    pub started_at: String,
    pub uptime_s: u64,
    pub store: StoreStatus,
    /// Documents in this node's memory now.
    pub documents_loaded: u64,
    /// Sync connections open on this node.
    pub connections: u64,
    /// Distinct devices that sent a presence beacon lately, on any document.
    pub devices_online: u64,
    pub backups: BackupStatus,
    /// `security.alert` entries in the audit log over the last 24 hours.
    pub security_alerts_24h: u64,
    /// The newest of them.
    pub last_security_alert: Option<SecurityAlert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStatus {
    /// `sqlite` (embedded) or `postgres`.
    pub kind: String,
    /// One round trip to the store, as this request measured it.
    pub latency_ms: f64,
    /// The schema the store is at, and the one this build expects.
    pub schema_version: u32,
    pub expected_version: u32,
    pub migrations_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupStatus {
    /// Whether this server takes backups of its embedded store on a
    /// schedule (`backup_every_secs`; PostgreSQL is backed up by its own
    /// tools).
    pub scheduled: bool,
    pub every_s: Option<u64>,
    /// Verified scheduled backups on disk.
    pub count: u64,
    /// The newest of them.
    pub last: Option<BackupTaken>,
    /// Why the backups on disk could not be listed, if they could not.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupTaken {
    /// RFC 3339, UTC.
    pub taken_at: String,
    pub age_s: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityAlert {
    /// RFC 3339, UTC.
    pub at: String,
    /// `token_reuse`, `failed_code_burst`, `refused_write_burst`, ...
    pub kind: String,
    /// Who it concerns, as the audit log names them.
    pub actor: String,
}

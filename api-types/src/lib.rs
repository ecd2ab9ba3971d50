//! The REST API's bodies, written once: the server serves them (and derives
//! its OpenAPI schemas from them with the `openapi` feature), the client
//! core and the desktop app read them. Types move here from the server's
//! handlers and the clients: roles, users, devices, the audit chain's
//! verification and pages, the server status, signing in (with the error
//! body every refusal carries), signed tickets, API keys, registered
//! documents and presence (`admin`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod admin;
mod sign_in;
mod tickets;

pub use admin::{
    ApiKeyView, AuditPage, CreateApiKeyRequest, CreateUserRequest, CreatedApiKey, DevicePresence,
    DocumentKind, EventsRequest, RegisterDocumentRequest, RegisteredDocument, RegistrationError,
    UnknownDocumentKind, UpdateUserRequest,
};
pub use sign_in::{
    ChangePasswordRequest, EnrollConfirmRequest, EnrollConfirmResponse, EnrollStartRequest,
    EnrollStartResponse, ErrorBody, LoginRequest, MeResponse, RefreshRequest, SecondFactorRequest,
    SessionTokens, SignInResponse, SignInStatus, StepUpRequest, UserInfo,
};
pub use tickets::{IssueTicketRequest, IssuedTicket, TicketKey};

/// What a caller may do, broadly (per-document rights follow from it and
/// from the document's registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Staff,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `admin`, `staff`, `member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role `{}` (expected admin, staff or member)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "staff" => Ok(Role::Staff),
            "member" => Ok(Role::Member),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A person's account (`GET /api/users`, administrators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub totp_enrolled: bool,
    pub disabled: bool,
    /// Events a staff member is assigned to.
    pub events: Vec<String>,
}

/// A signed-in device (`GET /api/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub app_version: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub revoked_ms: Option<i64>,
    /// Holds a sync connection to the node that answered, right now.
    pub online: bool,
}

/// The audit log's hash chain, checked (`GET /api/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    pub valid: bool,
    /// Entries checked (when valid).
    pub entries: Option<u64>,
    /// What is wrong (when not).
    pub problem: Option<String>,
}

/// One of the server's backups of a member's settings document
/// (`GET /api/settings/{id}/backups`, newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsBackup {
    pub id: String,
    pub taken_ms: i64,
    /// The settings as they were then.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Value,
}

/// Which audit entries to read (`GET /api/audit`'s query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct AuditFilter {
    /// Entries after this sequence number (paging: pass the last one seen).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(maximum = 9_223_372_036_854_775_807_i64))]
    pub after: u64,
    /// At most this many (default 100, at most 1000).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub result: Option<String>,
    /// RFC 3339 UTC time: entries at or after it.
    #[cfg_attr(feature = "openapi", param(format = DateTime))]
    pub since: Option<String>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_reads_as_it_is_written_and_an_unknown_one_is_named() {
        for role in [Role::Admin, Role::Staff, Role::Member] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        let unknown = "owner".parse::<Role>().unwrap_err();
        assert_eq!(unknown, UnknownRole("owner".into()));
        assert_eq!(
            unknown.to_string(),
            "unknown role `owner` (expected admin, staff or member)"
        );
    }
}

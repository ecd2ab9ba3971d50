//! The records the store's traits read and write beyond documents and users
//! (those are at the crate's root): devices, sessions and their hashed
//! tokens, sign-in challenges, user and API key summaries, document scopes,
//! audit queries, settings backups.
//!
//! Times here are unix milliseconds passed in by the caller, so the rules in
//! the server's `identity::session` can be tested without a clock.

use serde::Serialize;

use super::{StoreError, User};
use api_types::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub app_version: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl Device {
    /// A new device of `user_id`, created and last seen at `now_ms`.
    pub fn new(user_id: &str, name: &str, app_version: &str, now_ms: i64) -> Self {
        Self {
            id: crate::new_id(),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            app_version: app_version.to_owned(),
            created_ms: now_ms,
            last_seen_ms: now_ms,
            revoked_ms: None,
        }
    }
}

/// A session as it starts (its tokens are stored with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    pub created_ms: i64,
    pub second_factor_ms: Option<i64>,
}

/// A token pair to store (hashes only) for a session's generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHashes {
    pub generation: u32,
    pub access_hash: String,
    pub access_expires_ms: i64,
    pub refresh_hash: String,
    pub refresh_expires_ms: i64,
}

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub session_id: String,
    pub user: User,
    pub device: Device,
    pub expires_ms: i64,
    pub second_factor_ms: Option<i64>,
    pub session_revoked: bool,
}

/// A refresh token and the state of its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub session_id: String,
    pub user_id: String,
    pub device_id: String,
    pub generation: u32,
    pub expires_ms: i64,
    pub used_ms: Option<i64>,
    /// A refresh token of a later generation of this family was exchanged
    /// too (so this one is not merely the latest, whose answer was lost).
    pub later_generation_used: bool,
    pub session_revoked: bool,
    pub device_revoked: bool,
    pub user_disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengePurpose {
    /// The password was right; a TOTP or recovery code comes next.
    SecondFactor,
    /// The password was right; the user must enroll an authenticator first.
    Enroll,
}

impl ChallengePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengePurpose::SecondFactor => "second_factor",
            ChallengePurpose::Enroll => "enroll",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "second_factor" => Ok(Self::SecondFactor),
            "enroll" => Ok(Self::Enroll),
            other => Err(StoreError::Database(format!(
                "unknown challenge purpose {other}"
            ))),
        }
    }
}

/// A pending sign-in, between the password and the second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user_id: String,
    pub purpose: ChallengePurpose,
    /// The device the client already has, if it said so.
    pub device_id: Option<String>,
    pub device_name: String,
    pub app_version: String,
    pub expires_ms: i64,
    pub used: bool,
}

/// Why a second `org_config` registration is refused (there is one per organisation).
pub const ORG_CONFIG_TAKEN: &str = "the organisation already has its configuration document";

pub use api_types::DocumentKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentScope {
    pub kind: DocumentKind,
    pub scope: String,
}

/// An API key as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A user as an administrator sees it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub totp_enrolled: bool,
    pub disabled: bool,
    pub events: Vec<String>,
}

/// Filters and paging for reading the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub after_seq: u64,
    pub limit: u32,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub result: Option<String>,
    /// RFC 3339 UTC; entries at or after it.
    pub since: Option<String>,
}

/// A stored snapshot of a settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsBackup {
    pub id: String,
    pub document_id: String,
    pub taken_ms: i64,
    pub settings: serde_json::Value,
    pub heads: String,
}

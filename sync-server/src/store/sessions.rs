//! The persistence of everything after a password check: devices, sessions
//! and their hashed tokens, sign-in challenges, user administration, staff
//! assignments, document scopes, API key administration and audit queries.
//! A separate trait from [`super::Store`] (which requires it) so each
//! backend keeps these queries in their own file.
//!
//! Times here are unix milliseconds passed in by the caller, so the rules in
//! `identity::session` can be tested without a clock.

use async_trait::async_trait;
use serde::Serialize;
use sync_protocol::DocumentId;

use super::{StoreError, User};
use crate::audit::AuditEntry;
use crate::credentials::Role;

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

/// What kind of document this is, and whose: the basis of per-document rights.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// An event's data; scope = the event id.
    Event,
    /// One member's settings; scope = the owner's user id.
    Settings,
    /// The organisation's configuration; scope is empty.
    OrgConfig,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Event => "event",
            DocumentKind::Settings => "settings",
            DocumentKind::OrgConfig => "org_config",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "event" => Ok(Self::Event),
            "settings" => Ok(Self::Settings),
            "org_config" => Ok(Self::OrgConfig),
            other => Err(StoreError::Database(format!(
                "unknown document kind {other}"
            ))),
        }
    }
}

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

/// The device columns both stores read, in this order.
pub(super) const DEVICE_COLUMNS: &str = "devices.id, devices.user_id, devices.name, devices.app_version, devices.created_ms, devices.last_seen_ms, devices.revoked_ms";

/// A role read from a row (`id` names the row in the error).
pub(super) fn parse_role(id: &str, role: &str) -> Result<Role, StoreError> {
    role.parse()
        .map_err(|_| StoreError::Database(format!("{id} has unknown role {role}")))
}

/// What [`SessionStore::prune_expired`] deletes, in both dialects' common
/// SQL (`?1`: now in ms; PostgreSQL spells it `$1`).
pub(super) const PRUNE: [&str; 3] = [
    "DELETE FROM session_tokens WHERE expires_ms < ?1",
    "DELETE FROM sign_in_challenges WHERE expires_ms < ?1",
    // Ended sessions are kept 30 days for the device and audit views.
    "DELETE FROM sessions WHERE revoked_ms IS NOT NULL AND revoked_ms < ?1 - 2592000000",
];

/// A stored snapshot of a settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsBackup {
    pub id: String,
    pub document_id: String,
    pub taken_ms: i64,
    pub settings: serde_json::Value,
    pub heads: String,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError>;
    /// False if there is no such user.
    async fn set_user_role(&self, id: &str, role: Role) -> Result<bool, StoreError>;
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;
    async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError>;
    /// Forgets the TOTP secret, its last step and the recovery codes.
    async fn reset_totp(&self, id: &str) -> Result<bool, StoreError>;
    async fn set_assignments(&self, user_id: &str, events: &[String]) -> Result<(), StoreError>;
    async fn assignments(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    async fn create_device(
        &self,
        user_id: &str,
        name: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<Device, StoreError>;
    async fn device(&self, id: &str) -> Result<Option<Device>, StoreError>;
    /// One user's devices, or every device when `user_id` is `None`.
    async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<Device>, StoreError>;
    /// Marks the device revoked and ends its sessions; false if unknown or already revoked.
    async fn revoke_device(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Records contact (at most once a minute is written).
    async fn touch_device(
        &self,
        id: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// A new session for a device with its first token pair; returns its id.
    async fn create_session(
        &self,
        user_id: &str,
        device_id: &str,
        second_factor_ms: Option<i64>,
        tokens: &TokenHashes,
        now_ms: i64,
    ) -> Result<String, StoreError>;
    async fn access_token(&self, hash: &str) -> Result<Option<AccessTokenRecord>, StoreError>;
    async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Marks the refresh token used and stores the next pair, atomically:
    /// false (and nothing stored) if it was already used.
    async fn exchange_refresh_token(
        &self,
        hash: &str,
        next: &TokenHashes,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn revoke_session(&self, id: &str, reason: &str, now_ms: i64)
    -> Result<bool, StoreError>;
    /// Ends every live session of the user (but `except`); returns their ids.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Whether the session, its device and its user are all still in good standing.
    async fn session_live(&self, session_id: &str) -> Result<bool, StoreError>;
    async fn record_second_factor(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Deletes tokens and challenges past their expiry, and sessions ended
    /// more than 30 days ago; returns how many rows went. (A used refresh
    /// token is kept until it expires, so reuse stays detectable that long.)
    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError>;

    async fn create_challenge(&self, hash: &str, challenge: &Challenge) -> Result<(), StoreError>;
    async fn challenge(&self, hash: &str) -> Result<Option<Challenge>, StoreError>;
    /// Uses a challenge once; false if already used.
    async fn use_challenge(&self, hash: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Registers the document's kind and scope unless it has one; returns the
    /// registered scope (the existing one if it was registered before).
    /// `Conflict` when it would be a second organisation configuration.
    async fn register_document(
        &self,
        id: DocumentId,
        scope: &DocumentScope,
        created_by: &str,
        now_ms: i64,
    ) -> Result<DocumentScope, StoreError>;
    async fn document_scope(&self, id: DocumentId) -> Result<Option<DocumentScope>, StoreError>;
    /// Documents registered with this kind and scope (e.g. a member's settings), oldest first.
    async fn documents_with_scope(
        &self,
        scope: &DocumentScope,
    ) -> Result<Vec<DocumentId>, StoreError>;
    /// Every document registered with `kind`, with its scope, oldest first.
    async fn documents_of_kind(
        &self,
        kind: DocumentKind,
    ) -> Result<Vec<(DocumentId, String)>, StoreError>;

    /// The named secret shared by all nodes, created from `candidate` if absent.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Replaces a shared secret's stored form, only if it is still `expected`
    /// (sealing, rotation); false when another writer got there first.
    async fn replace_shared_secret(
        &self,
        name: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError>;
    /// Every stored TOTP secret, as `(user id, stored form)`.
    async fn totp_secrets(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces a TOTP secret's stored form (enrollment state unchanged),
    /// only if it is still `expected`.
    async fn replace_totp_secret(
        &self,
        user_id: &str,
        expected: &str,
        value: &str,
    ) -> Result<bool, StoreError>;

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// False if unknown or already revoked.
    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError>;

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    async fn add_settings_backup(&self, backup: &SettingsBackup) -> Result<(), StoreError>;
    /// A document's backups, newest first.
    async fn settings_backups(&self, id: DocumentId) -> Result<Vec<SettingsBackup>, StoreError>;
    async fn delete_settings_backups(&self, ids: &[String]) -> Result<(), StoreError>;
}

/// What `delegate_session_store!` expands to needs, whatever the caller depends on.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use sync_protocol::DocumentId;
}

/// Implements [`SessionStore`] for a wrapper type by delegating every call to
/// one of its fields (for stores that wrap another, e.g. fault injection in
/// tests): `delegate_session_store!(Wrapper, inner);`.
#[macro_export]
macro_rules! delegate_session_store {
    ($wrapper:ty, $field:ident) => {
        #[$crate::store::sessions::__private::async_trait]
        impl $crate::store::SessionStore for $wrapper {
            async fn user_by_id(&self, id: &str) -> Result<Option<$crate::store::User>, $crate::store::StoreError> {
                self.$field.user_by_id(id).await
            }
            async fn list_users(&self) -> Result<Vec<$crate::store::sessions::UserSummary>, $crate::store::StoreError> {
                self.$field.list_users().await
            }
            async fn set_user_role(&self, id: &str, role: $crate::credentials::Role) -> Result<bool, $crate::store::StoreError> {
                self.$field.set_user_role(id, role).await
            }
            async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, $crate::store::StoreError> {
                self.$field.set_user_disabled(id, disabled).await
            }
            async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, $crate::store::StoreError> {
                self.$field.set_password_hash(id, hash).await
            }
            async fn reset_totp(&self, id: &str) -> Result<bool, $crate::store::StoreError> {
                self.$field.reset_totp(id).await
            }
            async fn set_assignments(&self, user_id: &str, events: &[String]) -> Result<(), $crate::store::StoreError> {
                self.$field.set_assignments(user_id, events).await
            }
            async fn assignments(&self, user_id: &str) -> Result<Vec<String>, $crate::store::StoreError> {
                self.$field.assignments(user_id).await
            }
            async fn create_device(&self, user_id: &str, name: &str, app_version: &str, now_ms: i64) -> Result<$crate::store::sessions::Device, $crate::store::StoreError> {
                self.$field.create_device(user_id, name, app_version, now_ms).await
            }
            async fn device(&self, id: &str) -> Result<Option<$crate::store::sessions::Device>, $crate::store::StoreError> {
                self.$field.device(id).await
            }
            async fn list_devices(&self, user_id: Option<&str>) -> Result<Vec<$crate::store::sessions::Device>, $crate::store::StoreError> {
                self.$field.list_devices(user_id).await
            }
            async fn revoke_device(&self, id: &str, now_ms: i64) -> Result<bool, $crate::store::StoreError> {
                self.$field.revoke_device(id, now_ms).await
            }
            async fn touch_device(&self, id: &str, app_version: &str, now_ms: i64) -> Result<(), $crate::store::StoreError> {
                self.$field.touch_device(id, app_version, now_ms).await
            }
            async fn create_session(&self, user_id: &str, device_id: &str, second_factor_ms: Option<i64>, tokens: &$crate::store::sessions::TokenHashes, now_ms: i64) -> Result<String, $crate::store::StoreError> {
                self.$field.create_session(user_id, device_id, second_factor_ms, tokens, now_ms).await
            }
            async fn access_token(&self, hash: &str) -> Result<Option<$crate::store::sessions::AccessTokenRecord>, $crate::store::StoreError> {
                self.$field.access_token(hash).await
            }
            async fn refresh_token(&self, hash: &str) -> Result<Option<$crate::store::sessions::RefreshTokenRecord>, $crate::store::StoreError> {
                self.$field.refresh_token(hash).await
            }
            async fn exchange_refresh_token(&self, hash: &str, next: &$crate::store::sessions::TokenHashes, now_ms: i64) -> Result<bool, $crate::store::StoreError> {
                self.$field.exchange_refresh_token(hash, next, now_ms).await
            }
            async fn revoke_session(&self, id: &str, reason: &str, now_ms: i64) -> Result<bool, $crate::store::StoreError> {
                self.$field.revoke_session(id, reason, now_ms).await
            }
            async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now_ms: i64) -> Result<Vec<String>, $crate::store::StoreError> {
                self.$field.revoke_user_sessions(user_id, except, reason, now_ms).await
            }
            async fn session_live(&self, session_id: &str) -> Result<bool, $crate::store::StoreError> {
                self.$field.session_live(session_id).await
            }
            async fn record_second_factor(&self, session_id: &str, now_ms: i64) -> Result<(), $crate::store::StoreError> {
                self.$field.record_second_factor(session_id, now_ms).await
            }
            async fn prune_expired(&self, now_ms: i64) -> Result<u64, $crate::store::StoreError> {
                self.$field.prune_expired(now_ms).await
            }
            async fn create_challenge(&self, hash: &str, challenge: &$crate::store::sessions::Challenge) -> Result<(), $crate::store::StoreError> {
                self.$field.create_challenge(hash, challenge).await
            }
            async fn challenge(&self, hash: &str) -> Result<Option<$crate::store::sessions::Challenge>, $crate::store::StoreError> {
                self.$field.challenge(hash).await
            }
            async fn use_challenge(&self, hash: &str, now_ms: i64) -> Result<bool, $crate::store::StoreError> {
                self.$field.use_challenge(hash, now_ms).await
            }
            async fn register_document(&self, id: $crate::store::sessions::__private::DocumentId, scope: &$crate::store::sessions::DocumentScope, created_by: &str, now_ms: i64) -> Result<$crate::store::sessions::DocumentScope, $crate::store::StoreError> {
                self.$field.register_document(id, scope, created_by, now_ms).await
            }
            async fn document_scope(&self, id: $crate::store::sessions::__private::DocumentId) -> Result<Option<$crate::store::sessions::DocumentScope>, $crate::store::StoreError> {
                self.$field.document_scope(id).await
            }
            async fn documents_with_scope(&self, scope: &$crate::store::sessions::DocumentScope) -> Result<Vec<$crate::store::sessions::__private::DocumentId>, $crate::store::StoreError> {
                self.$field.documents_with_scope(scope).await
            }
            async fn documents_of_kind(&self, kind: $crate::store::sessions::DocumentKind) -> Result<Vec<($crate::store::sessions::__private::DocumentId, String)>, $crate::store::StoreError> {
                self.$field.documents_of_kind(kind).await
            }
            async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, $crate::store::StoreError> {
                self.$field.shared_secret(name, candidate).await
            }
            async fn replace_shared_secret(&self, name: &str, expected: &[u8], value: &[u8]) -> Result<bool, $crate::store::StoreError> {
                self.$field.replace_shared_secret(name, expected, value).await
            }
            async fn totp_secrets(&self) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                self.$field.totp_secrets().await
            }
            async fn replace_totp_secret(&self, user_id: &str, expected: &str, value: &str) -> Result<bool, $crate::store::StoreError> {
                self.$field.replace_totp_secret(user_id, expected, value).await
            }
            async fn list_api_keys(&self) -> Result<Vec<$crate::store::sessions::ApiKeyInfo>, $crate::store::StoreError> {
                self.$field.list_api_keys().await
            }
            async fn revoke_api_key(&self, id: &str) -> Result<bool, $crate::store::StoreError> {
                self.$field.revoke_api_key(id).await
            }
            async fn query_audit(&self, query: &$crate::store::sessions::AuditQuery) -> Result<Vec<$crate::audit::AuditEntry>, $crate::store::StoreError> {
                self.$field.query_audit(query).await
            }
            async fn add_settings_backup(&self, backup: &$crate::store::sessions::SettingsBackup) -> Result<(), $crate::store::StoreError> {
                self.$field.add_settings_backup(backup).await
            }
            async fn settings_backups(&self, id: $crate::store::sessions::__private::DocumentId) -> Result<Vec<$crate::store::sessions::SettingsBackup>, $crate::store::StoreError> {
                self.$field.settings_backups(id).await
            }
            async fn delete_settings_backups(&self, ids: &[String]) -> Result<(), $crate::store::StoreError> {
                self.$field.delete_settings_backups(ids).await
            }
        }
    };
}

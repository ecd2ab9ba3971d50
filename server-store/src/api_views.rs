//! Store records as the REST API shows them (here because the orphan rule
//! puts a conversion beside one of its two types, and the store's records
//! are the ones that must not leak secrets: no hash leaves through these).

use crate::User;
use crate::records::{ApiKeyInfo, SettingsBackup, UserSummary};

impl From<UserSummary> for api_types::User {
    fn from(u: UserSummary) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            totp_enrolled: u.totp_enrolled,
            disabled: u.disabled,
            events: u.events,
        }
    }
}

impl From<SettingsBackup> for api_types::SettingsBackup {
    fn from(b: SettingsBackup) -> Self {
        Self {
            id: b.id,
            taken_ms: b.taken_ms,
            settings: b.settings,
        }
    }
}

impl From<&User> for api_types::UserInfo {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.clone(),
            email: user.email.clone(),
            role: user.role,
            totp_enrolled: user.totp_confirmed,
        }
    }
}

impl From<ApiKeyInfo> for api_types::ApiKeyView {
    fn from(k: ApiKeyInfo) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: k.role,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

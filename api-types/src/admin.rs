//! Administration: users and their events, API keys, the audit log's pages,
//! registered documents and who is online on one. Query strings stay with
//! their handlers; these are the bodies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Role;

/// `POST /api/users`: a new account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUserRequest {
    #[cfg_attr(feature = "openapi", schema(format = Email))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(example = "staff"))]
    pub role: Role,
    /// At least 10 characters; the user enrolls a second factor at first sign-in.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 10))]
    pub password: String,
}

/// `PATCH /api/users/{id}`: a new role and/or disabled or enabled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// `PUT /api/users/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsRequest {
    /// Event ids the staff member works at (replaces the current list).
    pub events: Vec<String>,
}

/// An API key as an administrator sees it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// `POST /api/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyRequest {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = "staff"))]
    pub role: Role,
}

/// A new API key and its token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    pub id: String,
    /// Shown once.
    pub token: String,
}

/// One page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// Entries as the server stores them (seq, at, actor, device, address,
    /// action, target, result, details, prev_hash, hash): read as JSON
    /// objects, since a screen shows them as they come and the chain's
    /// check is the server's (`/api/audit/verify`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub entries: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// What kind of document this is, and whose: the basis of per-document rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document kind that is none of `event`, `settings`, `org_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDocumentKind(pub String);

impl fmt::Display for UnknownDocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown document kind `{}` (expected event, settings or org_config)",
            self.0
        )
    }
}

impl std::error::Error for UnknownDocumentKind {}

impl FromStr for DocumentKind {
    type Err = UnknownDocumentKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "event" => Ok(Self::Event),
            "settings" => Ok(Self::Settings),
            "org_config" => Ok(Self::OrgConfig),
            other => Err(UnknownDocumentKind(other.to_owned())),
        }
    }
}

/// `POST /api/documents`: what a document is and whose; `kind` decides what
/// `scope` must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RegisterDocumentRequest {
    /// An event's data.
    Event {
        /// automerge-repo document id (bs58check) or `automerge:` URL.
        #[cfg_attr(feature = "openapi", schema(format = "automerge-document-id"))]
        document_id: String,
        /// The event id.
        #[cfg_attr(feature = "openapi", schema(pattern = r"\S"))]
        scope: String,
    },
    /// One member's settings.
    Settings {
        #[cfg_attr(feature = "openapi", schema(format = "automerge-document-id"))]
        document_id: String,
        /// The owner's user id (default: the signed-in caller; an API key
        /// has no settings of its own and must name the owner).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// The organisation's configuration (one per server; it has no owner,
    /// a `scope` sent is ignored).
    OrgConfig {
        #[cfg_attr(feature = "openapi", schema(format = "automerge-document-id"))]
        document_id: String,
    },
}

/// Why a registration cannot be built from a kind and a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationError {
    UnknownKind(UnknownDocumentKind),
    /// An event document names its event.
    EventWithoutScope,
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(unknown) => unknown.fmt(f),
            Self::EventWithoutScope => f.write_str("an event document needs its event id as scope"),
        }
    }
}

impl std::error::Error for RegistrationError {}

impl RegisterDocumentRequest {
    /// The registration of `document_id` as a document of `kind` (its
    /// text, as stored by a client that registers later) with `scope`.
    pub fn new(
        document_id: String,
        kind: &str,
        scope: Option<&str>,
    ) -> Result<Self, RegistrationError> {
        let kind: DocumentKind = kind.parse().map_err(RegistrationError::UnknownKind)?;
        Ok(match kind {
            DocumentKind::Event => Self::Event {
                document_id,
                scope: scope
                    .ok_or(RegistrationError::EventWithoutScope)?
                    .to_owned(),
            },
            DocumentKind::Settings => Self::Settings {
                document_id,
                scope: scope.map(str::to_owned),
            },
            DocumentKind::OrgConfig => Self::OrgConfig { document_id },
        })
    }
}

/// A registered document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisteredDocument {
    pub document_id: String,
    pub kind: DocumentKind,
    pub scope: String,
}

/// A device online on a document (`GET /api/presence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicePresence {
    /// The signed-in device, or the device id the client gave (API keys).
    pub device_id: String,
    /// Who is connected (`user:<id>` or `api_key:<id>`).
    pub actor: String,
    pub list_id: Option<String>,
    pub last_synced_ms: Option<i64>,
    /// When the server last heard from it (unix ms).
    pub seen_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_built_from_kind_and_scope_and_refuse_what_cannot_be() {
        assert_eq!(
            RegisterDocumentRequest::new("d".into(), "event", Some("e1")),
            Ok(RegisterDocumentRequest::Event {
                document_id: "d".into(),
                scope: "e1".into()
            })
        );
        assert_eq!(
            RegisterDocumentRequest::new("d".into(), "event", None),
            Err(RegistrationError::EventWithoutScope)
        );
        assert!(matches!(
            RegisterDocumentRequest::new("d".into(), "calendar", None),
            Err(RegistrationError::UnknownKind(_))
        ));
        // The wire form the server reads: the kind as a tag, no absent scope.
        assert_eq!(
            serde_json::to_value(
                RegisterDocumentRequest::new("d".into(), "settings", None).unwrap()
            )
            .unwrap(),
            serde_json::json!({ "kind": "settings", "document_id": "d" })
        );
        for kind in [
            DocumentKind::Event,
            DocumentKind::Settings,
            DocumentKind::OrgConfig,
        ] {
            assert_eq!(kind.as_str().parse::<DocumentKind>(), Ok(kind));
        }
    }
}

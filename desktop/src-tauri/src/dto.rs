//! What crosses to the web UI: plain serializable shapes, and one error type
//! with a stable `code` and a `message` the UI shows as it is.

use client_core::{AccountError, ClientError, SessionState, SyncStatus};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct CommandError {
    /// `offline`, `signed_out`, `step_up_required`, `invalid_code`, `invalid_input`, ...
    pub code: String,
    pub message: String,
}

pub type CmdResult<T> = Result<T, CommandError>;

impl CommandError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }
}

impl From<ClientError> for CommandError {
    fn from(error: ClientError) -> Self {
        let code = match &error {
            ClientError::NotFound(_) => "not_found",
            ClientError::Settings(_) | ClientError::Import(_) | ClientError::TicketCode(_) => {
                "invalid_input"
            }
            _ => "storage",
        };
        Self::new(code, error.to_string())
    }
}

impl From<AccountError> for CommandError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Network(e) => Self::new(
                "offline",
                format!("the server cannot be reached ({e}); this needs the server"),
            ),
            AccountError::Refused { code, message, .. } => Self::new(&code, message),
            AccountError::UntrustedCertificate(_) => {
                Self::new("untrusted_certificate", error.to_string())
            }
            AccountError::SignedOut => Self::new("signed_out", "sign in first"),
            AccountError::DeviceRevoked => Self::new(
                "device_revoked",
                "this device was revoked; its local data was wiped",
            ),
            AccountError::Local(e) => e.into(),
            other => Self::new("internal", other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for CommandError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::new("internal", error.to_string())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusDto {
    pub connected: bool,
    pub pending_changes: u64,
    pub last_sync_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// The last failure in plain words ("Can't reach the server").
    pub problem: Option<&'static str>,
    /// When sync tries again, while it waits after a failure.
    pub next_retry_ms: Option<i64>,
}

impl From<SyncStatus> for StatusDto {
    fn from(s: SyncStatus) -> Self {
        Self {
            connected: s.connected,
            pending_changes: s.pending_changes,
            last_sync_ms: s.last_sync_ms(),
            last_error_ms: s.last_error_ms(),
            next_retry_ms: s.next_retry_ms(),
            problem: s.problem.map(|p| p.plain()),
            last_error: s.last_error,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionDto {
    /// `signed_out`, `signed_in`, `needs_sign_in`, `revoked`
    pub state: &'static str,
    pub email: Option<String>,
    pub role: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub reason: Option<String>,
}

impl From<SessionState> for SessionDto {
    fn from(state: SessionState) -> Self {
        let empty = |state| SessionDto {
            state,
            email: None,
            role: None,
            user_id: None,
            device_id: None,
            reason: None,
        };
        match state {
            SessionState::SignedOut => empty("signed_out"),
            SessionState::SignedIn(info) => SessionDto {
                email: Some(info.user.email),
                role: Some(info.user.role.to_string()),
                user_id: Some(info.user.id),
                device_id: Some(info.device_id),
                ..empty("signed_in")
            },
            SessionState::NeedsSignIn { reason } => SessionDto {
                reason: Some(reason),
                ..empty("needs_sign_in")
            },
            SessionState::Revoked => empty("revoked"),
        }
    }
}

//! The one error type every call returns. Each variant is typed (an app can
//! react to `KioskLocked` or `Refused { code: "invalid_code" }`) and carries
//! `detail`, a complete sentence a tablet's UI can show as it is.

use client_core::{AccountError, ClientError};

#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TabletError {
    /// The server cannot be reached; local work goes on.
    #[error("{detail}")]
    Offline { detail: String },
    /// The server answered with a certificate this tablet does not trust
    /// (another authority, expired, another name, not the pinned key).
    /// Nothing was sent; check the server address and the venue's CA.
    #[error("{detail}")]
    UntrustedServer { detail: String },
    /// The server said no: `code` is its stable error code
    /// (`invalid_credentials`, `invalid_code`, `code_replayed`, `throttled`, ...).
    #[error("{detail}")]
    Refused {
        code: String,
        detail: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{detail}")]
    SignedOut { detail: String },
    /// An admin revoked this device; its local data was wiped.
    #[error("{detail}")]
    Revoked { detail: String },
    #[error("{detail}")]
    KioskLocked { detail: String },
    #[error("{detail}")]
    WrongPin {
        detail: String,
        /// Seconds before the next attempt is accepted (0: try again now).
        retry_after_secs: u64,
    },
    #[error("{detail}")]
    NoEventChosen { detail: String },
    #[error("{detail}")]
    InvalidInput { detail: String },
    #[error("{detail}")]
    NotFound { detail: String },
    #[error("{detail}")]
    AnnulTooLate { detail: String, window_minutes: i64 },
    #[error("{detail}")]
    Storage { detail: String },
    #[error("{detail}")]
    Internal { detail: String },
}

impl TabletError {
    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        TabletError::InvalidInput {
            detail: detail.into(),
        }
    }

    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        TabletError::Internal {
            detail: format!("internal error: {detail}"),
        }
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        TabletError::NotFound {
            detail: format!("not found: {what}"),
        }
    }

    pub(crate) fn kiosk_locked() -> Self {
        TabletError::KioskLocked {
            detail: "the kiosk is locked: unlock it with the PIN first".into(),
        }
    }

    pub(crate) fn wrong_pin(retry_after_secs: u64) -> Self {
        let detail = if retry_after_secs == 0 {
            "wrong PIN".to_owned()
        } else {
            format!("wrong PIN: try again in {retry_after_secs} s")
        };
        TabletError::WrongPin {
            detail,
            retry_after_secs,
        }
    }

    pub(crate) fn no_event_chosen() -> Self {
        TabletError::NoEventChosen {
            detail: "no event chosen: choose an event and a check-in list first".into(),
        }
    }

    pub(crate) fn annul_too_late(window_minutes: i64) -> Self {
        TabletError::AnnulTooLate {
            detail: format!("the scan is older than the annulment window ({window_minutes} min)"),
            window_minutes,
        }
    }
}

impl From<ClientError> for TabletError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::NotFound(id) => TabletError::not_found(format!("document {id}")),
            ClientError::Settings(detail) => TabletError::InvalidInput { detail },
            ClientError::TicketCode(error) => TabletError::InvalidInput {
                detail: error.to_string(),
            },
            other => TabletError::Storage {
                detail: format!("local storage failed: {other}"),
            },
        }
    }
}

impl From<AccountError> for TabletError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Network(detail) => TabletError::Offline {
                detail: format!("the server cannot be reached: {detail}"),
            },
            AccountError::Refused {
                code,
                message,
                retry_after_secs,
            } => TabletError::Refused {
                code,
                detail: message,
                retry_after_secs,
            },
            AccountError::UntrustedCertificate(_) => TabletError::UntrustedServer {
                detail: error.to_string(),
            },
            AccountError::Trust(_) => TabletError::InvalidInput {
                detail: error.to_string(),
            },
            AccountError::SignedOut => TabletError::SignedOut {
                detail: "not signed in".into(),
            },
            AccountError::DeviceRevoked => TabletError::Revoked {
                detail: "this device was revoked; its local data was wiped".into(),
            },
            AccountError::Local(error) => error.into(),
            other @ (AccountError::Keychain(_) | AccountError::Protocol(_)) => {
                TabletError::internal(other)
            }
        }
    }
}

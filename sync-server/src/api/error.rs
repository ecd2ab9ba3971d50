//! API errors: a status, a stable `error` code clients branch on, and a
//! message a person can read. Store failures never leak details.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthFailure;
use crate::identity::session::Refusal;
use crate::store::StoreError;

/// Marks a response as an API answer (not a refusal by an outer layer).
#[derive(Debug, Clone, Copy)]
pub struct Answered;

pub use api_types::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(AuthFailure),
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("the sign-in step has expired or was already used; start again")]
    InvalidChallenge,
    #[error("{0}")]
    InvalidCode(&'static str),
    #[error("{}", refusal_message(*.0))]
    Refused(Refusal),
    #[error("this refresh token was already used; the session has been ended")]
    TokenReused,
    #[error("too many failed attempts; try again in {} s", whole_seconds(*.0))]
    Throttled(Duration),
    #[error("too many requests; slow down for {} s", whole_seconds(*.0))]
    RateLimited(Duration),
    #[error("{0}")]
    Forbidden(String),
    #[error("enter a current authenticator code (step-up) first")]
    StepUpRequired,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// A sealed secret this server cannot open (its key is missing).
    #[error(
        "this account's authenticator cannot be checked here: {0}; an administrator can reset it"
    )]
    SecretUnavailable(crate::secrets::SecretsError),
}

/// Seconds to wait, rounded up (a client retrying sooner would be refused again).
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

fn refusal_message(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Expired => "the token has expired; refresh it or sign in again",
        Refusal::SessionRevoked => "the session was ended; sign in again",
        Refusal::DeviceRevoked => "this device was revoked; local event data must be wiped",
        Refusal::UserDisabled => "this account is disabled",
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated(AuthFailure::Store(_)) | ApiError::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            ApiError::Unauthenticated(failure) => (StatusCode::UNAUTHORIZED, failure.code()),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::InvalidChallenge => (StatusCode::UNAUTHORIZED, "invalid_challenge"),
            ApiError::InvalidCode(code) => (StatusCode::UNAUTHORIZED, code),
            ApiError::Refused(refusal) => (StatusCode::UNAUTHORIZED, refusal.code()),
            ApiError::TokenReused => (StatusCode::UNAUTHORIZED, "token_reused"),
            ApiError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::StepUpRequired => (StatusCode::FORBIDDEN, "step_up_required"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::SecretUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "secret_unavailable")
            }
        }
    }

    fn wipe(&self) -> bool {
        matches!(
            self,
            ApiError::Refused(Refusal::DeviceRevoked)
                | ApiError::Unauthenticated(AuthFailure::Refused(Refusal::DeviceRevoked))
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Store(error) | ApiError::Unauthenticated(AuthFailure::Store(error)) = &self
        {
            tracing::error!(%error, "API request failed on the store");
        }
        if let ApiError::SecretUnavailable(error) = &self {
            tracing::error!(%error, "a sealed secret did not open");
        }
        let retry_after = match &self {
            ApiError::Throttled(wait) | ApiError::RateLimited(wait) => Some(whole_seconds(*wait)),
            _ => None,
        };
        let body = ErrorBody {
            error: code.to_owned(),
            message: self.to_string(),
            wipe: self.wipe(),
            retry_after_secs: retry_after,
        };
        let mut response = (status, Json(body)).into_response();
        // Sign-in refusals that matter are audited where they happen; the
        // middleware that audits refusals by the address limiter skips these.
        response.extensions_mut().insert(Answered);
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

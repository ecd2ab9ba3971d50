//! Who is calling: tokens presented at the websocket upgrade and on the API.
//!
//! Two kinds of token open the server: API keys for integrations (`sk_...`,
//! made by an administrator) and session access tokens (`at_...`, from
//! signing in). Both are 256-bit random (or HMAC-derived) values shown once
//! and stored only as SHA-256 hex digests.

use axum::http::{HeaderMap, header};

pub use crate::credentials::{Role, TOKEN_PREFIX, hash_token, new_token};
use crate::identity::session::{self, Refusal};
use crate::store::{Store, StoreError};

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    Session {
        session_id: String,
        device_id: String,
        /// When a TOTP code was last entered in this session (step-up).
        second_factor_ms: Option<i64>,
        /// When the access token stops being accepted (unix ms); a socket
        /// opened with it is closed then.
        expires_ms: i64,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (sessions) or the API key id.
    pub id: String,
    /// The user's email or the key's name.
    pub name: String,
    pub role: Role,
    pub credential: Credential,
    /// Events a staff user is assigned to (read when the token is checked).
    pub events: Vec<String>,
}

impl Principal {
    pub fn api_key(id: impl Into<String>, name: impl Into<String>, role: Role) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            role,
            credential: Credential::ApiKey,
            events: Vec::new(),
        }
    }

    /// When the credential expires (unix ms); API keys do not.
    pub fn expires_ms(&self) -> Option<i64> {
        match self.credential {
            Credential::ApiKey => None,
            Credential::Session { expires_ms, .. } => Some(expires_ms),
        }
    }

    /// How the audit log names this caller (never the token).
    pub fn audit_name(&self) -> String {
        match self.credential {
            Credential::ApiKey => format!("api_key:{}", self.id),
            Credential::Session { .. } => format!("user:{}", self.id),
        }
    }

    /// The signed-in user's id (`None` for API keys).
    pub fn user_id(&self) -> Option<&str> {
        matches!(self.credential, Credential::Session { .. }).then_some(self.id.as_str())
    }

    pub fn device_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { device_id, .. } => Some(device_id),
            Credential::ApiKey => None,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { session_id, .. } => Some(session_id),
            Credential::ApiKey => None,
        }
    }

    pub fn assigned_to(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

/// Why a presented token opened nothing.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing token: send `Authorization: Bearer <token>` or `?token=`")]
    Missing,
    #[error("invalid or revoked token")]
    Invalid,
    #[error("{}", .0.code())]
    Refused(Refusal),
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
}

impl AuthFailure {
    /// Stable code for clients and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Refused(refusal) => refusal.code(),
            AuthFailure::Store(_) => "store_unavailable",
        }
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Who a token belongs to, checked against the store at `now_ms`.
pub async fn authenticate(
    store: &Store,
    token: &str,
    now_ms: i64,
) -> Result<Principal, AuthFailure> {
    let hash = hash_token(token);
    if token.starts_with(TOKEN_PREFIX) {
        let key = store
            .accounts
            .authenticate_api_key(&hash)
            .await?
            .ok_or(AuthFailure::Invalid)?;
        return Ok(Principal::api_key(key.id, key.name, key.role));
    }
    if !token.starts_with(session::ACCESS_PREFIX) {
        return Err(AuthFailure::Invalid);
    }
    let record = store
        .accounts
        .access_token(&hash)
        .await?
        .ok_or(AuthFailure::Invalid)?;
    session::check_access(&record, now_ms).map_err(AuthFailure::Refused)?;
    let events = match record.user.role {
        Role::Staff => store.accounts.assignments(&record.user.id).await?,
        Role::Admin | Role::Member => Vec::new(),
    };
    store
        .accounts
        .touch_device(&record.device.id, "", now_ms)
        .await?;
    Ok(Principal {
        id: record.user.id,
        name: record.user.email,
        role: record.user.role,
        credential: Credential::Session {
            session_id: record.session_id,
            device_id: record.device.id,
            second_factor_ms: record.second_factor_ms,
            expires_ms: record.expires_ms,
        },
        events,
    })
}

/// The token of a request: `Authorization: Bearer <token>` first, then the
/// `token` query parameter (browsers cannot set headers on websockets).
pub fn token_from_request(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.trim().is_empty()
        {
            return Some(token.trim().to_owned());
        }
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "token")
        .map(|(_, value)| percent_decode(value))
        .filter(|t| !t.is_empty())
}

/// Tokens are base64url, so only `%XX` escapes need undoing.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash_token(&a), ha);
        assert_ne!(ha, a);
    }

    #[test]
    fn finds_the_token_in_header_or_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_from_request(&headers, None), None);
        assert_eq!(
            token_from_request(&headers, Some("a=1&token=sk_x%2Dy")),
            Some("sk_x-y".into())
        );
        headers.insert(header::AUTHORIZATION, "Bearer sk_h".parse().unwrap());
        assert_eq!(
            token_from_request(&headers, Some("token=sk_q")),
            Some("sk_h".into())
        );
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(token_from_request(&headers, None), None);
    }
}

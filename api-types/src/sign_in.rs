//! Signing in and keeping a session: the bodies of `/api/auth/*` and
//! `/api/me`, and the error body every refusal carries.

use serde::{Deserialize, Serialize};

use crate::Role;

/// `POST /api/auth/login`: step 1, email and password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// Shown in device lists, e.g. "Door 3 tablet".
    pub device_name: String,
    #[serde(default)]
    pub app_version: String,
    /// The device id from an earlier session on this device, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// Where a sign-in stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignInStatus {
    /// Send a TOTP or recovery code with `challenge` to `/api/auth/second-factor`.
    SecondFactorRequired,
    /// Enroll an authenticator with `challenge` (`/api/auth/enroll/*`) first.
    EnrollmentRequired,
    /// Signed in: see `session`.
    SignedIn,
}

/// The answer to step 1 (and, signed in, to step 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInResponse {
    pub status: SignInStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionTokens>,
}

/// The signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(example = "staff"))]
    pub role: Role,
    pub totp_enrolled: bool,
}

/// A session's tokens. The access token opens `/sync` and the API; the
/// refresh token buys the next pair, once. `POST /api/auth/refresh`
/// answers with this alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_ms: i64,
    pub refresh_expires_ms: i64,
    pub session_id: String,
    pub device_id: String,
    pub user: UserInfo,
}

/// `POST /api/auth/second-factor`: step 2, a TOTP code or a recovery code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecondFactorRequest {
    pub challenge: String,
    /// A 6-digit TOTP code...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// ...or one of the recovery codes (each works once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
}

/// `POST /api/auth/enroll/start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollStartRequest {
    pub challenge: String,
}

/// A new authenticator's secret, to show the person enrolling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollStartResponse {
    /// Base32, for typing into an authenticator by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The `otpauth://` URI as a QR code, PNG, base64.
    pub qr_png_base64: String,
}

/// `POST /api/auth/enroll/confirm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollConfirmRequest {
    pub challenge: String,
    /// A current code from the newly enrolled authenticator.
    pub code: String,
}

/// An enrollment confirmed: the session, and the recovery codes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollConfirmResponse {
    pub session: SessionTokens,
    /// Shown once: each signs in once in place of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// `POST /api/auth/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /api/auth/step-up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepUpRequest {
    pub code: String,
}

/// `POST /api/auth/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// At least 10 characters.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 10))]
    pub new_password: String,
}

/// `GET /api/me`: who the caller is and what it may reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    #[cfg_attr(feature = "openapi", schema(example = "admin"))]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Events a staff member is assigned to.
    pub events: Vec<String>,
    /// Whether privileged actions are unlocked right now.
    pub step_up_fresh: bool,
    /// The member's settings document, once one is registered (a new device
    /// syncs this one instead of making another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_document: Option<String>,
    /// The organisation configuration document, once an admin registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_config_document: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code, e.g. `invalid_credentials`, `device_revoked`, `throttled`.
    pub error: String,
    pub message: String,
    /// Set when the device was revoked: the client must wipe local event data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wipe: bool,
    /// Seconds to wait before trying again (throttling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

//! Sign-in and session endpoints: password, then second factor (TOTP or a
//! recovery code) or enrollment, then a session for a device; refresh with
//! rotation, reuse detection and a grace retry; logout; step-up.

use std::sync::OnceLock;

pub use api_types::{
    EnrollConfirmRequest, EnrollConfirmResponse, EnrollStartRequest, EnrollStartResponse,
    LoginRequest, SecondFactorRequest, SessionTokens, SignInResponse, SignInStatus,
};
use axum::Json;
use axum::extract::State;
use base64::Engine;

use super::{ApiError, ApiState, ClientAddress, ErrorBody};
use crate::audit::NewAuditEntry;
use crate::auth::{hash_token, unix_ms};
use crate::identity::session::{self, Refusal, TokenPair};
use crate::identity::{password, recovery, totp};
use crate::store::User;
use crate::store::records::{Challenge, ChallengePurpose, Device};

pub(super) fn tokens(
    pair: TokenPair,
    session_id: &str,
    device_id: &str,
    user: &User,
) -> SessionTokens {
    SessionTokens {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        access_expires_ms: pair.access_expires_ms,
        refresh_expires_ms: pair.refresh_expires_ms,
        session_id: session_id.to_owned(),
        device_id: device_id.to_owned(),
        user: user.into(),
    }
}

fn account_key(id: &str) -> String {
    format!("account:{id}")
}

fn address_key(address: &str) -> String {
    format!("address:{address}")
}

impl ApiState {
    /// Refuses the attempt if the account or the address must still wait
    /// (on every node, when the store shares the records).
    pub(super) async fn throttle_check(
        &self,
        account: &str,
        address: &str,
        step: &str,
    ) -> Result<(), ApiError> {
        let now = crate::auth::unix_ms();
        let keys = [account_key(account), address_key(address)];
        let wait = match self.store.node.throttle_ledger() {
            Some(ledger) => {
                let records = ledger.throttle_records(&keys).await?;
                records
                    .iter()
                    .filter_map(|r| self.throttle_policy.wait(r.as_ref(), now))
                    .max()
            }
            None => {
                let mut throttle = self.throttle.lock().expect("throttle poisoned");
                let a = throttle.check(&keys[0], now).err();
                let b = throttle.check(&keys[1], now).err();
                a.max(b)
            }
        };
        let Some(wait) = wait else {
            return Ok(());
        };
        metrics::counter!(crate::metrics::SIGN_IN_THROTTLED, "step" => step.to_owned())
            .increment(1);
        self.audit(
            NewAuditEntry::new("anonymous", "auth.throttled", "denied")
                .address(address)
                .target(account)
                .details(serde_json::json!({ "step": step, "wait_secs": wait.as_secs().max(1) })),
        )
        .await;
        Err(ApiError::Throttled(wait))
    }

    pub(super) async fn throttle_failure(
        &self,
        account: &str,
        address: &str,
    ) -> Result<(), ApiError> {
        let now = crate::auth::unix_ms();
        let keys = [account_key(account), address_key(address)];
        if let Some(ledger) = self.store.node.throttle_ledger() {
            ledger
                .throttle_failure(&keys, &self.throttle_policy, now)
                .await?;
            return Ok(());
        }
        let mut throttle = self.throttle.lock().expect("throttle poisoned");
        throttle.failure(&keys[0], now);
        throttle.failure(&keys[1], now);
        throttle.prune(now);
        Ok(())
    }

    pub(super) async fn throttle_success(&self, account: &str) -> Result<(), ApiError> {
        let key = account_key(account);
        match self.store.node.throttle_ledger() {
            Some(ledger) => ledger.throttle_clear(&key).await?,
            None => self
                .throttle
                .lock()
                .expect("throttle poisoned")
                .success(&key),
        }
        Ok(())
    }

    /// The device for a new session: the client's own if it is this user's
    /// and not revoked; a new one otherwise.
    async fn device_for(
        &self,
        user: &User,
        device_id: Option<&str>,
        device_name: &str,
        app_version: &str,
        now_ms: i64,
    ) -> Result<Device, ApiError> {
        if let Some(id) = device_id
            && let Some(device) = self.store.accounts.device(id).await?
            && device.user_id == user.id
        {
            if device.revoked_ms.is_some() {
                return Err(ApiError::Refused(Refusal::DeviceRevoked));
            }
            self.store
                .accounts
                .touch_device(id, app_version, now_ms)
                .await?;
            return Ok(device);
        }
        let name = device_name.trim();
        let name = if name.is_empty() {
            "unnamed device"
        } else {
            name
        };
        Ok(self
            .store
            .accounts
            .create_device(&user.id, name, app_version, now_ms)
            .await?)
    }

    /// Opens a session for `user` on the challenge's device.
    #[allow(clippy::too_many_arguments)]
    async fn open_session(
        &self,
        user: &User,
        device_id: Option<&str>,
        device_name: &str,
        app_version: &str,
        second_factor: Option<&str>,
        address: &str,
    ) -> Result<SessionTokens, ApiError> {
        let now = unix_ms();
        let device = self
            .device_for(user, device_id, device_name, app_version, now)
            .await?;
        let pair = session::first_pair(&self.policy, now);
        // Only a TOTP code counts for step-up; a recovery code signs in but
        // privileged actions still ask for a code.
        let second_factor_ms = (second_factor == Some("totp")).then_some(now);
        let session_id = self
            .store
            .accounts
            .create_session(&user.id, &device.id, second_factor_ms, &pair.hashes(), now)
            .await?;
        let mut entry = NewAuditEntry::new(format!("user:{}", user.id), "auth.sign_in", "ok")
            .address(address)
            .target(&user.email)
            .details(serde_json::json!({
                "factors": match second_factor { Some(f) => vec!["password", f], None => vec!["password"] },
                "session": session_id,
                "device_name": device.name,
            }));
        entry.device = Some(device.id.clone());
        self.audit(entry).await;
        Ok(tokens(pair, &session_id, &device.id, user))
    }

    /// A live challenge of `purpose` and its user.
    async fn live_challenge(
        &self,
        token: &str,
        purpose: ChallengePurpose,
    ) -> Result<(Challenge, User), ApiError> {
        let challenge = self
            .store
            .accounts
            .challenge(&hash_token(token))
            .await?
            .filter(|c| !c.used && c.purpose == purpose && c.expires_ms > unix_ms())
            .ok_or(ApiError::InvalidChallenge)?;
        let user = self
            .store
            .accounts
            .user_by_id(&challenge.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(ApiError::InvalidChallenge)?;
        Ok((challenge, user))
    }

    /// A wrong code: throttled, counted towards an alert, audited.
    pub(super) async fn code_failed(&self, user: &User, address: &str, step: &str, reason: &str) {
        if let Err(error) = self.throttle_failure(&user.id, address).await {
            tracing::error!(%error, "a failed code was not counted by the throttle");
        }
        metrics::counter!(crate::metrics::SIGN_IN_FAILURES, "reason" => reason.to_owned())
            .increment(1);
        self.audit(
            NewAuditEntry::new(format!("user:{}", user.id), step, "denied")
                .address(address)
                .target(&user.email)
                .details(serde_json::json!({ "reason": reason })),
        )
        .await;
        self.security
            .failed_code(&self.store, &format!("user:{}", user.id), address)
            .await;
    }

    /// Checks a TOTP code against `secret` and records its step (replays refused).
    pub(super) async fn accept_totp(
        &self,
        user: &User,
        secret: &str,
        code: &str,
        confirm: bool,
    ) -> Result<(), &'static str> {
        let now_secs = (unix_ms() / 1000) as u64;
        let step = match totp::verify(secret, code, now_secs, user.totp_last_step) {
            Ok(step) => step,
            Err(totp::TotpError::Replayed) => return Err("code_replayed"),
            Err(_) => return Err("invalid_code"),
        };
        match self
            .store
            .accounts
            .accept_totp_step(&user.id, step, confirm)
            .await
        {
            Ok(true) => Ok(()),
            // Another request (maybe on another node) took this step first.
            Ok(false) => Err("code_replayed"),
            Err(error) => {
                tracing::error!(%error, "recording a TOTP step failed");
                Err("store_unavailable")
            }
        }
    }
}

/// A hash to compare against when the email is unknown, so both cases cost
/// the same time and do not reveal which emails exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        password::hash_password("decoy password that never matches")
            .expect("hashing a constant works")
    })
}

pub(super) async fn verify_password_blocking(stored: String, candidate: String) -> bool {
    tokio::task::spawn_blocking(move || {
        password::verify_password(&stored, &candidate).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Step 1: email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "sign-in", request_body = LoginRequest,
    responses(
        (status = 200, body = SignInResponse, description = "Next step, or the session"),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`, or `device_revoked` (wipe)"),
        (status = 429, body = ErrorBody, description = "`throttled`: wait `retry_after_secs`"),
    ))]
pub async fn login(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<LoginRequest>,
) -> Result<Json<SignInResponse>, ApiError> {
    let email = request.email.trim().to_lowercase();
    state.throttle_check(&email, &address, "password").await?;
    let user = state.store.accounts.user_by_email(&email).await?;
    let stored = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let matches = verify_password_blocking(stored, request.password).await;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        other => {
            let reason = match &other {
                Some(u) if u.disabled && matches => "user_disabled",
                Some(_) => "wrong_password",
                None => "unknown_email",
            };
            state.throttle_failure(&email, &address).await?;
            metrics::counter!(crate::metrics::SIGN_IN_FAILURES, "reason" => reason).increment(1);
            state
                .audit(
                    NewAuditEntry::new("anonymous", "auth.password", "denied")
                        .address(&address)
                        .target(&email)
                        .details(serde_json::json!({ "reason": reason })),
                )
                .await;
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.throttle_success(&email).await?;
    let purpose = if user.totp_confirmed {
        Some(ChallengePurpose::SecondFactor)
    } else if state.require_2fa.contains(&user.role) {
        Some(ChallengePurpose::Enroll)
    } else {
        None
    };
    let Some(purpose) = purpose else {
        let session = state
            .open_session(
                &user,
                request.device_id.as_deref(),
                &request.device_name,
                &request.app_version,
                None,
                &address,
            )
            .await?;
        return Ok(Json(SignInResponse {
            status: SignInStatus::SignedIn,
            challenge: None,
            session: Some(session),
        }));
    };
    // A revoked device learns it now, before any further step.
    if let Some(id) = request.device_id.as_deref()
        && let Some(device) = state.store.accounts.device(id).await?
        && device.user_id == user.id
        && device.revoked_ms.is_some()
    {
        return Err(ApiError::Refused(Refusal::DeviceRevoked));
    }
    let token = session::random_token(session::CHALLENGE_PREFIX);
    state
        .store
        .accounts
        .create_challenge(
            &hash_token(&token),
            &Challenge {
                user_id: user.id.clone(),
                purpose,
                device_id: request.device_id.clone(),
                device_name: request.device_name.clone(),
                app_version: request.app_version.clone(),
                expires_ms: unix_ms() + state.policy.challenge_ttl.as_millis() as i64,
                used: false,
            },
        )
        .await?;
    state
        .audit(
            NewAuditEntry::new(format!("user:{}", user.id), "auth.password", "ok")
                .address(&address)
                .target(&user.email)
                .details(serde_json::json!({ "next": purpose.as_str() })),
        )
        .await;
    Ok(Json(SignInResponse {
        status: match purpose {
            ChallengePurpose::SecondFactor => SignInStatus::SecondFactorRequired,
            ChallengePurpose::Enroll => SignInStatus::EnrollmentRequired,
        },
        challenge: Some(token),
        session: None,
    }))
}

/// Step 2: a TOTP code or a recovery code.
#[utoipa::path(post, path = "/api/auth/second-factor", tag = "sign-in", request_body = SecondFactorRequest,
    responses(
        (status = 200, body = SignInResponse),
        (status = 401, body = ErrorBody, description = "`invalid_code`, `code_replayed`, `invalid_challenge`"),
        (status = 429, body = ErrorBody),
    ))]
pub async fn second_factor(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<SecondFactorRequest>,
) -> Result<Json<SignInResponse>, ApiError> {
    let (challenge, user) = state
        .live_challenge(&request.challenge, ChallengePurpose::SecondFactor)
        .await?;
    state.throttle_check(&user.id, &address, "code").await?;
    let factor = match (&request.code, &request.recovery_code) {
        (Some(code), None) => {
            let secret = state.totp_secret(&user)?.unwrap_or_default();
            if let Err(reason) = state.accept_totp(&user, &secret, code, false).await {
                state
                    .code_failed(&user, &address, "auth.second_factor", reason)
                    .await;
                return Err(ApiError::InvalidCode(reason));
            }
            "totp"
        }
        (None, Some(code)) => {
            if !state
                .store
                .accounts
                .consume_recovery_code(&user.id, &recovery::hash(code))
                .await?
            {
                state
                    .code_failed(
                        &user,
                        &address,
                        "auth.second_factor",
                        "invalid_recovery_code",
                    )
                    .await;
                return Err(ApiError::InvalidCode("invalid_recovery_code"));
            }
            "recovery_code"
        }
        _ => {
            return Err(ApiError::BadRequest(
                "send exactly one of `code` and `recovery_code`".into(),
            ));
        }
    };
    if !state
        .store
        .accounts
        .use_challenge(&hash_token(&request.challenge), unix_ms())
        .await?
    {
        return Err(ApiError::InvalidChallenge);
    }
    state.throttle_success(&user.id).await?;
    let session = state
        .open_session(
            &user,
            challenge.device_id.as_deref(),
            &challenge.device_name,
            &challenge.app_version,
            Some(factor),
            &address,
        )
        .await?;
    Ok(Json(SignInResponse {
        status: SignInStatus::SignedIn,
        challenge: None,
        session: Some(session),
    }))
}

/// Enrollment, step 1: a new TOTP secret, as a URI and a QR code.
#[utoipa::path(post, path = "/api/auth/enroll/start", tag = "sign-in", request_body = EnrollStartRequest,
    responses((status = 200, body = EnrollStartResponse), (status = 401, body = ErrorBody)))]
pub async fn enroll_start(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<EnrollStartRequest>,
) -> Result<Json<EnrollStartResponse>, ApiError> {
    let (_, user) = state
        .live_challenge(&request.challenge, ChallengePurpose::Enroll)
        .await?;
    let enrollment = totp::enroll(&state.totp_issuer, &user.email)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store
        .accounts
        .set_totp_secret(
            &user.id,
            &state.secrets.seal(
                &crate::secrets::totp_purpose(&user.id),
                enrollment.secret_base32.as_bytes(),
            ),
        )
        .await?;
    state
        .audit(
            NewAuditEntry::new(
                format!("user:{}", user.id),
                "auth.totp_enroll_started",
                "ok",
            )
            .address(&address)
            .target(&user.email),
        )
        .await;
    Ok(Json(EnrollStartResponse {
        secret: enrollment.secret_base32,
        otpauth_uri: enrollment.otpauth_uri,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(&enrollment.qr_png),
    }))
}

/// Enrollment, step 2: a valid code confirms it; returns the session and the recovery codes.
#[utoipa::path(post, path = "/api/auth/enroll/confirm", tag = "sign-in", request_body = EnrollConfirmRequest,
    responses((status = 200, body = EnrollConfirmResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn enroll_confirm(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<EnrollConfirmRequest>,
) -> Result<Json<EnrollConfirmResponse>, ApiError> {
    let (challenge, user) = state
        .live_challenge(&request.challenge, ChallengePurpose::Enroll)
        .await?;
    state.throttle_check(&user.id, &address, "code").await?;
    let Some(secret) = state.totp_secret(&user)? else {
        return Err(ApiError::BadRequest(
            "start the enrollment first (/api/auth/enroll/start)".into(),
        ));
    };
    if let Err(reason) = state.accept_totp(&user, &secret, &request.code, true).await {
        state
            .code_failed(&user, &address, "auth.totp_enroll", reason)
            .await;
        return Err(ApiError::InvalidCode(reason));
    }
    if !state
        .store
        .accounts
        .use_challenge(&hash_token(&request.challenge), unix_ms())
        .await?
    {
        return Err(ApiError::InvalidChallenge);
    }
    let codes = recovery::generate();
    let hashes: Vec<String> = codes.iter().map(|(_, hash)| hash.clone()).collect();
    state
        .store
        .accounts
        .replace_recovery_codes(&user.id, &hashes)
        .await?;
    state.throttle_success(&user.id).await?;
    state
        .audit(
            NewAuditEntry::new(format!("user:{}", user.id), "auth.totp_enrolled", "ok")
                .address(&address)
                .target(&user.email)
                .details(serde_json::json!({ "recovery_codes": codes.len() })),
        )
        .await;
    let user = User {
        totp_confirmed: true,
        ..user
    };
    let session = state
        .open_session(
            &user,
            challenge.device_id.as_deref(),
            &challenge.device_name,
            &challenge.app_version,
            Some("totp"),
            &address,
        )
        .await?;
    Ok(Json(EnrollConfirmResponse {
        session,
        recovery_codes: codes.into_iter().map(|(code, _)| code).collect(),
    }))
}

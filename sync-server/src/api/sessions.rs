//! A signed-in session's endpoints: refresh with rotation, reuse detection
//! and a grace retry; logout (here or everywhere); step-up; a new password;
//! who am I (`/api/me`).

pub use api_types::{
    ChangePasswordRequest, MeResponse, RefreshRequest, SessionTokens, StepUpRequest, UserInfo,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{ApiError, ApiState, Caller, ClientAddress, ErrorBody};
use crate::audit::NewAuditEntry;
use crate::auth::{hash_token, unix_ms};
use crate::identity::password;
use crate::identity::session::{self, RefreshDecision, Refusal};
use crate::live::Cut;
use crate::store::User;

use super::sign_in::*;

/// A new token pair for a refresh token, which then stops working. A retry
/// within the grace window gets the same pair; any later reuse ends the session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "sign-in", request_body = RefreshRequest,
    responses(
        (status = 200, body = SessionTokens),
        (status = 401, body = ErrorBody, description = "`token_reused` (session ended), `token_expired`, `session_revoked`, `device_revoked` (wipe)"),
    ))]
pub async fn refresh(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<SessionTokens>, ApiError> {
    let token = request.refresh_token.trim();
    if !token.starts_with(session::REFRESH_PREFIX) {
        return Err(ApiError::Unauthenticated(crate::auth::AuthFailure::Invalid));
    }
    let hash = hash_token(token);
    // Two rounds at most: losing the race to mark the token used means the
    // other request just exchanged it, which the second look treats as a retry.
    for _ in 0..2 {
        let record = state
            .store
            .accounts
            .refresh_token(&hash)
            .await?
            .ok_or(ApiError::Unauthenticated(crate::auth::AuthFailure::Invalid))?;
        let now = unix_ms();
        let pair = match session::decide_refresh(&record, now, &state.policy) {
            RefreshDecision::Exchange => {
                let pair = session::next_pair(
                    &state.token_secret,
                    token,
                    record.generation,
                    now,
                    &state.policy,
                );
                if !state
                    .store
                    .accounts
                    .exchange_refresh_token(&hash, &pair.hashes(), now)
                    .await?
                {
                    continue;
                }
                pair
            }
            RefreshDecision::Retry { exchanged_ms } => {
                let mut entry = NewAuditEntry::new(
                    format!("user:{}", record.user_id),
                    "auth.refresh_retry",
                    "ok",
                )
                .address(&address)
                .details(serde_json::json!({ "session": record.session_id }));
                entry.device = Some(record.device_id.clone());
                state.audit(entry).await;
                session::next_pair(
                    &state.token_secret,
                    token,
                    record.generation,
                    exchanged_ms,
                    &state.policy,
                )
            }
            RefreshDecision::Reuse => {
                state
                    .store
                    .accounts
                    .revoke_session(&record.session_id, "refresh_token_reuse", now)
                    .await?;
                state
                    .cut(
                        Cut::Session(record.session_id.clone()),
                        "refresh token reused",
                    )
                    .await;
                let actor = format!("user:{}", record.user_id);
                let mut entry = NewAuditEntry::new(&actor, "auth.token_reuse", "denied")
                    .address(&address)
                    .details(serde_json::json!({
                        "session": record.session_id,
                        "generation": record.generation,
                        "action": "session revoked",
                    }));
                entry.device = Some(record.device_id.clone());
                state.audit(entry).await;
                state
                    .security
                    .alert(
                        &state.store,
                        "token_reuse",
                        &actor,
                        Some(&address),
                        serde_json::json!({ "session": record.session_id }),
                    )
                    .await;
                return Err(ApiError::TokenReused);
            }
            RefreshDecision::Refused(refusal) => return Err(ApiError::Refused(refusal)),
        };
        let user = state
            .store
            .accounts
            .user_by_id(&record.user_id)
            .await?
            .ok_or(ApiError::Refused(Refusal::UserDisabled))?;
        state
            .store
            .accounts
            .touch_device(&record.device_id, "", now)
            .await?;
        return Ok(Json(tokens(
            pair,
            &record.session_id,
            &record.device_id,
            &user,
        )));
    }
    Err(ApiError::Conflict(
        "the refresh token is being exchanged concurrently; retry".into(),
    ))
}

fn session_of(caller: &Caller) -> Result<&str, ApiError> {
    caller
        .principal
        .session_id()
        .ok_or_else(|| ApiError::Forbidden("only a signed-in session can do this".into()))
}

/// The caller's session and user (sessions only, not API keys).
async fn signed_in_user(state: &ApiState, caller: &Caller) -> Result<(String, User), ApiError> {
    let session_id = session_of(caller)?.to_owned();
    let user = state
        .store
        .accounts
        .user_by_id(&caller.principal.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("user".into()))?;
    Ok((session_id, user))
}

/// Ends this session (its tokens stop working, its sync connections close).
#[utoipa::path(post, path = "/api/auth/logout", tag = "sign-in", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "an API key has no session")))]
pub async fn logout(State(state): State<ApiState>, caller: Caller) -> Result<StatusCode, ApiError> {
    let session_id = session_of(&caller)?.to_owned();
    state
        .store
        .accounts
        .revoke_session(&session_id, "logout", unix_ms())
        .await?;
    state
        .cut(Cut::Session(session_id.clone()), "signed out")
        .await;
    state
        .audit(caller.audit("auth.logout", "ok").target(session_id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller, on every device.
#[utoipa::path(post, path = "/api/auth/logout-everywhere", tag = "sign-in", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "an API key has no session")))]
pub async fn logout_everywhere(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    session_of(&caller)?;
    let ended = state
        .store
        .accounts
        .revoke_user_sessions(&caller.principal.id, None, "sign_out_everywhere", unix_ms())
        .await?;
    state
        .cut(
            Cut::User(caller.principal.id.clone()),
            "signed out everywhere",
        )
        .await;
    state
        .audit(
            caller
                .audit("auth.logout_everywhere", "ok")
                .details(serde_json::json!({ "sessions": ended.len() })),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Enter a current TOTP code to unlock privileged actions for a few minutes.
#[utoipa::path(post, path = "/api/auth/step-up", tag = "sign-in", security(("bearer" = [])), request_body = StepUpRequest,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "an API key has no session"), (status = 429, body = ErrorBody)))]
pub async fn step_up(
    State(state): State<ApiState>,
    caller: Caller,
    Json(request): Json<StepUpRequest>,
) -> Result<StatusCode, ApiError> {
    let (session_id, user) = signed_in_user(&state, &caller).await?;
    let Some(secret) = state.totp_secret(&user)?.filter(|_| user.totp_confirmed) else {
        return Err(ApiError::Forbidden(
            "step-up needs an enrolled authenticator".into(),
        ));
    };
    state
        .throttle_check(&user.id, &caller.address, "code")
        .await?;
    if let Err(reason) = state
        .accept_totp(&user, &secret, &request.code, false)
        .await
    {
        state
            .code_failed(&user, &caller.address, "auth.step_up", reason)
            .await;
        return Err(ApiError::InvalidCode(reason));
    }
    state.throttle_success(&user.id).await?;
    state
        .store
        .accounts
        .record_second_factor(&session_id, unix_ms())
        .await?;
    state.audit(caller.audit("auth.step_up", "ok")).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's password (needs the current one, and a step-up when
/// the account has an authenticator); ends the user's other sessions.
#[utoipa::path(post, path = "/api/auth/password", tag = "sign-in", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
    Json(request): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let (session_id, user) = signed_in_user(&state, &caller).await?;
    if user.totp_confirmed {
        caller.require_step_up(&state)?;
    }
    state
        .throttle_check(&user.email, &caller.address, "password")
        .await?;
    if !verify_password_blocking(user.password_hash.clone(), request.current_password).await {
        state.throttle_failure(&user.email, &caller.address).await?;
        state
            .audit(
                caller
                    .audit("auth.password_change", "denied")
                    .details(serde_json::json!({ "reason": "wrong_password" })),
            )
            .await;
        return Err(ApiError::InvalidCredentials);
    }
    let new_hash =
        tokio::task::spawn_blocking(move || password::hash_password(&request.new_password))
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store
        .accounts
        .set_password_hash(&user.id, &new_hash)
        .await?;
    // The caller's own session goes on; every other one ends.
    let ended = state
        .store
        .accounts
        .revoke_user_sessions(&user.id, Some(&session_id), "password_changed", unix_ms())
        .await?;
    for other in ended {
        state.cut(Cut::Session(other), "password changed").await;
    }
    state
        .audit(caller.audit("auth.password_change", "ok"))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/me", tag = "sign-in", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<MeResponse>, ApiError> {
    let user = match caller.principal.user_id() {
        Some(id) => state
            .store
            .accounts
            .user_by_id(id)
            .await?
            .as_ref()
            .map(UserInfo::from),
        None => None,
    };
    let settings_document = match caller.principal.user_id() {
        Some(id) => state
            .store
            .documents
            .documents_with_scope(&crate::store::records::DocumentScope {
                kind: crate::store::records::DocumentKind::Settings,
                scope: id.to_owned(),
            })
            .await?
            .first()
            .map(|d| d.to_string()),
        None => None,
    };
    let org_config_document = state
        .store
        .documents
        .documents_with_scope(&crate::store::records::DocumentScope {
            kind: crate::store::records::DocumentKind::OrgConfig,
            scope: String::new(),
        })
        .await?
        .first()
        .map(|d| d.to_string());
    Ok(Json(MeResponse {
        settings_document,
        org_config_document,
        user,
        role: caller.principal.role,
        device_id: caller.principal.device_id().map(str::to_owned),
        session_id: caller.principal.session_id().map(str::to_owned),
        events: caller.principal.events.clone(),
        step_up_fresh: caller.require_step_up(&state).is_ok(),
    }))
}

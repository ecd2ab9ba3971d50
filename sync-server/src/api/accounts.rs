//! People and their credentials: devices (the caller's own, or everyone's
//! for administrators), users and roles, staff assignments, 2FA reset,
//! sessions ended, API keys. Role changes, 2FA resets and API key creation
//! need a step-up.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

// The API's views of the store's records (`store::records::Device`,
// `store::User`), as the clients read them.
use api_types::{
    ApiKeyView, CreateApiKeyRequest, CreateUserRequest, CreatedApiKey, Device as DeviceView,
    EventsRequest, UpdateUserRequest, User as UserView,
};

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::auth::{self, Role, unix_ms};
use crate::identity::password;
use crate::live::Cut;
use crate::store::StoreError;
use crate::store::records::Device;

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeviceFilter {
    /// Administrators: only this user's devices (default: all).
    pub user_id: Option<String>,
}

/// Devices: the caller's own, or (administrators) everyone's.
#[utoipa::path(get, path = "/api/devices", tag = "devices", security(("bearer" = [])), params(DeviceFilter),
    responses((status = 200, body = Vec<DeviceView>), (status = 401, body = ErrorBody)))]
pub async fn list_devices(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<DeviceFilter>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let user = match (caller.principal.role, caller.principal.user_id()) {
        (Role::Admin, _) => filter.user_id,
        (_, Some(own)) => Some(own.to_owned()),
        (_, None) => return Err(ApiError::Forbidden("API keys have no devices".into())),
    };
    let online: std::collections::HashSet<String> = state
        .live
        .principals()
        .iter()
        .filter_map(|p| p.device_id().map(str::to_owned))
        .collect();
    let devices = state.store.accounts.list_devices(user.as_deref()).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d: Device| DeviceView {
                online: online.contains(&d.id),
                id: d.id,
                user_id: d.user_id,
                name: d.name,
                app_version: d.app_version,
                created_ms: d.created_ms,
                last_seen_ms: d.last_seen_ms,
                revoked_ms: d.revoked_ms,
            })
            .collect(),
    ))
}

/// Revokes a device (its owner or an administrator): its sessions end, its
/// sync connections close within a second, and on its next contact it is
/// told to wipe local event data.
#[utoipa::path(post, path = "/api/devices/{id}/revoke", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_device(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device = state
        .store
        .accounts
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    if caller.principal.role != Role::Admin && caller.principal.user_id() != Some(&device.user_id) {
        return Err(ApiError::NotFound(format!("no device {id}")));
    }
    let changed = state.store.accounts.revoke_device(&id, unix_ms()).await?;
    state.cut(Cut::Device(id.clone()), "device revoked").await;
    state
        .audit(
            caller
                .audit("device.revoked", "ok")
                .target(&id)
                .details(serde_json::json!({
                    "owner": device.user_id,
                    "name": device.name,
                    "already_revoked": !changed,
                })),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every user (administrators).
#[utoipa::path(get, path = "/api/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(
        state
            .store
            .accounts
            .list_users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

/// Creates a user (administrators; a new admin needs a step-up).
#[utoipa::path(post, path = "/api/users", tag = "admin", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    Json(request): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require_admin()?;
    if request.role == Role::Admin {
        caller.require_step_up(&state)?;
    }
    let email = request.email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(ApiError::BadRequest(format!(
            "`{email}` is not an email address"
        )));
    }
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&request.password))
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let user = match state
        .store
        .accounts
        .create_user(&email, request.role, &hash)
        .await
    {
        Ok(user) => user,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!(
                "{email} already has an account"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .audit(
            caller
                .audit("admin.user_created", "ok")
                .target(&user.id)
                .details(serde_json::json!({ "email": email, "role": user.role })),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            id: user.id,
            email: user.email,
            role: user.role,
            totp_enrolled: false,
            disabled: false,
            events: vec![],
        }),
    ))
}

async fn existing_user(state: &ApiState, id: &str) -> Result<crate::store::User, ApiError> {
    state
        .store
        .accounts
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {id}")))
}

/// Changes a user's role or disables/enables them (administrators, step-up).
/// Their live connections close so new rights apply at once.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateUserRequest,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<UpdateUserRequest>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    caller.require_step_up(&state)?;
    let user = existing_user(&state, &id).await?;
    let mut changed = false;
    if let Some(role) = request.role
        && role != user.role
    {
        changed = true;
        state.store.accounts.set_user_role(&id, role).await?;
        state
            .audit(
                caller
                    .audit("admin.role_changed", "ok")
                    .target(&id)
                    .details(serde_json::json!({ "from": user.role, "to": role })),
            )
            .await;
    }
    if let Some(disabled) = request.disabled
        && disabled != user.disabled
    {
        changed = true;
        state
            .store
            .accounts
            .set_user_disabled(&id, disabled)
            .await?;
        if disabled {
            state
                .store
                .accounts
                .revoke_user_sessions(&id, None, "user_disabled", unix_ms())
                .await?;
        }
        state
            .audit(
                caller
                    .audit(
                        if disabled {
                            "admin.user_disabled"
                        } else {
                            "admin.user_enabled"
                        },
                        "ok",
                    )
                    .target(&id),
            )
            .await;
    }
    if changed {
        // Rights are read when a connection opens: reconnecting applies them.
        state.cut(Cut::User(id), "account changed").await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets a user's authenticator and recovery codes and ends their
/// sessions; they enroll again at next sign-in (administrators, step-up).
#[utoipa::path(post, path = "/api/users/{id}/reset-2fa", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_user_2fa(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    caller.require_step_up(&state)?;
    existing_user(&state, &id).await?;
    state.store.accounts.reset_totp(&id).await?;
    state
        .store
        .accounts
        .revoke_user_sessions(&id, None, "2fa_reset", unix_ms())
        .await?;
    state.cut(Cut::User(id.clone()), "two-factor reset").await;
    state
        .audit(caller.audit("admin.totp_reset", "ok").target(&id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of a user (administrators).
#[utoipa::path(post, path = "/api/users/{id}/sessions/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end_user_sessions(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    existing_user(&state, &id).await?;
    let ended = state
        .store
        .accounts
        .revoke_user_sessions(&id, None, "ended_by_admin", unix_ms())
        .await?;
    state.cut(Cut::User(id.clone()), "sessions ended").await;
    state
        .audit(
            caller
                .audit("admin.sessions_ended", "ok")
                .target(&id)
                .details(serde_json::json!({ "sessions": ended.len() })),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the events a staff member is assigned to (administrators).
#[utoipa::path(put, path = "/api/users/{id}/events", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = EventsRequest,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_user_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<EventsRequest>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    existing_user(&state, &id).await?;
    let before = state.store.accounts.assignments(&id).await?;
    state
        .store
        .accounts
        .set_assignments(&id, &request.events)
        .await?;
    let after = state.store.accounts.assignments(&id).await?;
    if after != before {
        // Rights are read when a connection opens: reconnecting applies the new list.
        state
            .cut(Cut::User(id.clone()), "assignments changed")
            .await;
    }
    state
        .audit(
            caller
                .audit("admin.assignments_changed", "ok")
                .target(&id)
                .details(serde_json::json!({ "from": before, "to": after })),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// API keys (administrators; never the tokens).
#[utoipa::path(get, path = "/api/api-keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKeyView>), (status = 403, body = ErrorBody)))]
pub async fn list_api_keys(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(
        state
            .store
            .accounts
            .list_api_keys()
            .await?
            .into_iter()
            .map(ApiKeyView::from)
            .collect(),
    ))
}

/// Creates an API key (administrators, step-up). The token is shown once.
#[utoipa::path(post, path = "/api/api-keys", tag = "admin", security(("bearer" = [])), request_body = CreateApiKeyRequest,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    Json(request): Json<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    caller.require_admin()?;
    caller.require_step_up(&state)?;
    let name = request.name.trim();
    if name.is_empty() {
        return Err(ApiError::BadRequest("an API key needs a name".into()));
    }
    let (token, hash) = auth::new_token();
    let key = state
        .store
        .accounts
        .create_api_key(name, request.role, &hash)
        .await?;
    state
        .audit(
            caller
                .audit("api_key.created", "ok")
                .target(&key.id)
                .details(serde_json::json!({ "name": key.name, "role": key.role })),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey { id: key.id, token }),
    ))
}

/// Revokes an API key; its sync connections close (administrators).
#[utoipa::path(delete, path = "/api/api-keys/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    if !state.store.accounts.revoke_api_key(&id).await? {
        return Err(ApiError::NotFound(format!("no live API key {id}")));
    }
    state.cut(Cut::ApiKey(id.clone()), "API key revoked").await;
    state
        .audit(caller.audit("api_key.revoked", "ok").target(&id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

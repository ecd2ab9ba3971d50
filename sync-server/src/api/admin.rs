//! Devices and administration: users and roles, staff assignments, 2FA
//! reset, API keys, the audit log and document registration. Role changes,
//! 2FA resets, audit exports and API key creation need a step-up.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sync_protocol::DocumentId;
use utoipa::{IntoParams, ToSchema};

// The API's views of the store's records (`store::sessions::Device`,
// `store::User`), as the clients read them.
use api_types::{AuditVerification, Device as DeviceView, User as UserView};

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::audit::{self, AuditEntry};
use crate::audit_verify;
use crate::auth::{self, Role, unix_ms};
use crate::identity::password;
use crate::live::Cut;
use crate::policy;
use crate::store::StoreError;
use crate::store::sessions::{ApiKeyInfo, AuditQuery, Device, DocumentKind, DocumentScope};

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

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    #[schema(format = Email)]
    pub email: String,
    #[schema(example = "staff")]
    pub role: Role,
    /// At least 10 characters; the user enrolls a second factor at first sign-in.
    #[schema(format = Password, min_length = 10)]
    pub password: String,
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct EventsRequest {
    /// Event ids the staff member works at (replaces the current list).
    pub events: Vec<String>,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKeyInfo> for ApiKeyView {
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    pub name: String,
    #[schema(example = "staff")]
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    /// Shown once.
    pub token: String,
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

pub use api_types::AuditFilter;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// RFC 3339 as the log stores it (UTC, milliseconds), so text order is time order.
fn normalize_since(since: Option<String>) -> Result<Option<String>, ApiError> {
    since
        .map(|text| {
            audit::normalize_time(&text).ok_or_else(|| {
                ApiError::BadRequest(format!("`since` must be an RFC 3339 time, got `{text}`"))
            })
        })
        .transpose()
}

/// Reads the audit log with filters and paging (administrators); the read is itself audited.
#[utoipa::path(get, path = "/api/audit", tag = "admin", security(("bearer" = [])), params(AuditFilter),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn query_audit(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require_admin()?;
    // Sequence numbers are SQL integers (i64) in both stores.
    if i64::try_from(filter.after).is_err() {
        return Err(ApiError::BadRequest(format!(
            "`after` must be at most {}, got {}",
            i64::MAX,
            filter.after
        )));
    }
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be 1 to 1000, got {limit}"
        )));
    }
    let query = AuditQuery {
        after_seq: filter.after,
        limit,
        action: filter.action,
        actor: filter.actor,
        result: filter.result,
        since: normalize_since(filter.since)?,
    };
    let entries = state.store.audit.query_audit(&query).await?;
    state
        .audit(caller.audit("audit.read", "ok").details(serde_json::json!({
            "after": query.after_seq,
            "limit": limit,
            "action": query.action,
            "actor": query.actor,
            "result": query.result,
            "since": query.since,
            "returned": entries.len(),
        })))
        .await;
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_after,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportFilter {
    /// RFC 3339 UTC time: entries at or after it.
    #[param(format = DateTime)]
    pub since: Option<String>,
}

/// The audit log as JSON lines (administrators, step-up); audited.
#[utoipa::path(get, path = "/api/audit/export", tag = "admin", security(("bearer" = [])), params(ExportFilter),
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 403, body = ErrorBody)))]
pub async fn export_audit(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<ExportFilter>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    caller.require_step_up(&state)?;
    let since = normalize_since(filter.since)?;
    let mut out = String::new();
    let mut after = 0;
    let mut count = 0usize;
    loop {
        let page = state
            .store
            .audit
            .query_audit(&AuditQuery {
                after_seq: after,
                limit: 1000,
                since: since.clone(),
                ..AuditQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            out.push_str(&serde_json::to_string(entry).unwrap_or_default());
            out.push('\n');
            count += 1;
        }
    }
    state
        .audit(
            caller
                .audit("audit.export", "ok")
                .details(serde_json::json!({ "since": since, "entries": count })),
        )
        .await;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

/// Verifies the audit chain (administrators); audited.
#[utoipa::path(get, path = "/api/audit/verify", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = AuditVerification), (status = 403, body = ErrorBody)))]
pub async fn verify_audit(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    caller.require_admin()?;
    let report = match audit_verify::verify_store(state.store.audit.as_ref()).await {
        Ok(entries) => AuditVerification {
            valid: true,
            entries: Some(entries),
            problem: None,
        },
        Err(audit_verify::VerifyError::Store(error)) => return Err(error.into()),
        Err(problem) => AuditVerification {
            valid: false,
            entries: None,
            problem: Some(problem.to_string()),
        },
    };
    state
        .audit(
            caller
                .audit("audit.verify", if report.valid { "ok" } else { "error" })
                .details(
                    serde_json::json!({ "entries": report.entries, "problem": report.problem }),
                ),
        )
        .await;
    Ok(Json(report))
}

/// What a document is and whose: `kind` decides what `scope` must be.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RegisterDocumentRequest {
    /// An event's data.
    Event {
        /// automerge-repo document id (bs58check) or `automerge:` URL.
        #[schema(format = "automerge-document-id")]
        document_id: String,
        /// The event id.
        #[schema(pattern = r"\S")]
        scope: String,
    },
    /// One member's settings.
    Settings {
        #[schema(format = "automerge-document-id")]
        document_id: String,
        /// The owner's user id (default: the signed-in caller; an API key
        /// has no settings of its own and must name the owner).
        #[serde(default)]
        scope: Option<String>,
    },
    /// The organisation's configuration (one per server; it has no owner,
    /// a `scope` sent is ignored).
    OrgConfig {
        #[schema(format = "automerge-document-id")]
        document_id: String,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredDocument {
    pub document_id: String,
    pub kind: DocumentKind,
    pub scope: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DocumentListQuery {
    /// Only documents of this kind (`event`, `settings`, `org_config`).
    #[param(example = "event")]
    pub kind: Option<DocumentKind>,
}

/// The registered documents the caller may read: a tablet lists the event
/// documents of the events its staff member is assigned to here, then syncs them.
#[utoipa::path(get, path = "/api/documents", tag = "admin", security(("bearer" = [])), params(DocumentListQuery),
    responses((status = 200, body = Vec<RegisteredDocument>), (status = 401, body = ErrorBody)))]
pub async fn list_documents(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<DocumentListQuery>,
) -> Result<Json<Vec<RegisteredDocument>>, ApiError> {
    let kinds = match query.kind {
        Some(kind) => vec![kind],
        None => vec![
            DocumentKind::Event,
            DocumentKind::Settings,
            DocumentKind::OrgConfig,
        ],
    };
    let mut out = Vec::new();
    for kind in kinds {
        for (id, scope) in state.store.documents.documents_of_kind(kind).await? {
            let registered = DocumentScope { kind, scope };
            if policy::document_access(&caller.principal, Some(&registered)).read {
                out.push(RegisteredDocument {
                    document_id: id.to_string(),
                    kind,
                    scope: registered.scope,
                });
            }
        }
    }
    Ok(Json(out))
}

/// Declares what a document is and whose (administrators any; a user their
/// own settings document). Sync access follows from it; it cannot change.
#[utoipa::path(post, path = "/api/documents", tag = "admin", security(("bearer" = [])), request_body = RegisterDocumentRequest,
    responses((status = 201, body = RegisteredDocument, description = "registered (or already registered the same way)"),
               (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register_document(
    State(state): State<ApiState>,
    caller: Caller,
    Json(request): Json<RegisterDocumentRequest>,
) -> Result<(StatusCode, Json<RegisteredDocument>), ApiError> {
    let (document_id, kind, scope) = match request {
        RegisterDocumentRequest::Event { document_id, scope } => {
            if scope.trim().is_empty() {
                return Err(ApiError::BadRequest(
                    "an event document needs its event id as `scope`".into(),
                ));
            }
            (document_id, DocumentKind::Event, scope)
        }
        RegisterDocumentRequest::Settings { document_id, scope } => {
            let owner = match scope {
                Some(owner) => owner,
                None => caller
                    .principal
                    .user_id()
                    .ok_or_else(|| {
                        ApiError::Forbidden(
                            "an API key has no settings document of its own: name the owner's user id as `scope`".into(),
                        )
                    })?
                    .to_owned(),
            };
            (document_id, DocumentKind::Settings, owner)
        }
        RegisterDocumentRequest::OrgConfig { document_id } => {
            (document_id, DocumentKind::OrgConfig, String::new())
        }
    };
    let id = DocumentId::parse(document_id.trim())
        .map_err(|e| ApiError::BadRequest(format!("document_id: {e}")))?;
    let wanted = DocumentScope { kind, scope };
    if !policy::may_register(&caller.principal, &wanted) {
        return Err(ApiError::Forbidden(
            "you may register only your own settings document".into(),
        ));
    }
    let stored = match state
        .store
        .documents
        .register_document(id, &wanted, &caller.principal.audit_name(), unix_ms())
        .await
    {
        Err(StoreError::Conflict(why)) => {
            let existing = state.store.documents.documents_with_scope(&wanted).await?;
            let existing = existing.first().map(|d| d.to_string()).unwrap_or_default();
            return Err(ApiError::Conflict(format!("{why}: {existing}")));
        }
        other => other?,
    };
    let body = RegisteredDocument {
        document_id: id.to_string(),
        kind: stored.kind,
        scope: stored.scope.clone(),
    };
    if stored != wanted {
        return Err(ApiError::Conflict(format!(
            "document {id} is already registered as {} `{}`",
            stored.kind.as_str(),
            stored.scope
        )));
    }
    state
        .audit(
            caller
                .audit("document.registered", "ok")
                .target(id.to_string())
                .details(serde_json::json!({ "kind": stored.kind, "scope": stored.scope })),
        )
        .await;
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PresenceQuery {
    /// The (event) document.
    #[param(format = "automerge-document-id")]
    pub document_id: String,
}

/// Devices online on a document now (on this node): who, at which list,
/// last synced when. For anyone who may read the document.
#[utoipa::path(get, path = "/api/presence", tag = "devices", security(("bearer" = [])), params(PresenceQuery),
    responses((status = 200, body = Vec<crate::presence::DevicePresence>), (status = 404, body = ErrorBody)))]
pub async fn document_presence(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<PresenceQuery>,
) -> Result<Json<Vec<crate::presence::DevicePresence>>, ApiError> {
    let (id, scope) = super::named_document(&state, "document_id", &query.document_id).await?;
    if !policy::document_access(&caller.principal, scope.as_ref()).read {
        // As for sync: a document one may not read does not exist.
        return Err(ApiError::NotFound(format!("no document {id}")));
    }
    Ok(Json(state.presence.online(id)))
}

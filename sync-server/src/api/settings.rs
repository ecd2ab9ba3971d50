//! Members' settings backups: list, inspect, and restore a version (written
//! as a new change by the server, so every device of the member receives it).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sync_protocol::DocumentId;

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::auth::Role;
use crate::store::records::DocumentKind;

/// The settings document `id`, if the caller owns it (or is an administrator).
async fn owned_settings(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<DocumentId, ApiError> {
    let (id, scope) = super::named_document(state, "document id", id).await?;
    let mine = scope.is_some_and(|s| {
        s.kind == DocumentKind::Settings
            && (caller.principal.role == Role::Admin
                || caller.principal.user_id() == Some(s.scope.as_str()))
    });
    if mine {
        Ok(id)
    } else {
        Err(ApiError::NotFound(format!("no settings document {id}")))
    }
}

/// Backups of a settings document, newest first.
#[utoipa::path(get, path = "/api/settings/{document_id}/backups", tag = "devices", security(("bearer" = [])),
    params(("document_id" = String, Path, format = "automerge-document-id")),
    responses((status = 200, body = Vec<api_types::SettingsBackup>), (status = 404, body = ErrorBody)))]
pub async fn list_backups(
    State(state): State<ApiState>,
    caller: Caller,
    Path(document_id): Path<String>,
) -> Result<Json<Vec<api_types::SettingsBackup>>, ApiError> {
    let id = owned_settings(&state, &caller, &document_id).await?;
    Ok(Json(
        state
            .store
            .settings_history
            .settings_backups(id)
            .await?
            .into_iter()
            .map(api_types::SettingsBackup::from)
            .collect(),
    ))
}

/// Restores a backup: its settings are written as a new change.
#[utoipa::path(post, path = "/api/settings/{document_id}/backups/{backup_id}/restore", tag = "devices", security(("bearer" = [])),
    params(("document_id" = String, Path, format = "automerge-document-id"), ("backup_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn restore_backup(
    State(state): State<ApiState>,
    caller: Caller,
    Path((document_id, backup_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = owned_settings(&state, &caller, &document_id).await?;
    let backup = state
        .store
        .settings_history
        .settings_backups(id)
        .await?
        .into_iter()
        .find(|b| b.id == backup_id)
        .ok_or_else(|| ApiError::NotFound(format!("no backup {backup_id}")))?;
    state
        .registry
        .write_settings(id, backup.settings.clone())
        .await
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    state
        .audit(
            caller
                .audit("settings.restored", "ok")
                .target(id.to_string())
                .details(serde_json::json!({ "backup": backup.id, "taken_ms": backup.taken_ms })),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

//! Registered documents: what each is and whose (which decides who may sync
//! it), the list a tablet syncs, and the devices online on one.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sync_protocol::DocumentId;
use utoipa::IntoParams;

// The API's views of the store's records (`store::records::Device`,
// `store::User`), as the clients read them.
use api_types::{DevicePresence, DocumentKind, RegisterDocumentRequest, RegisteredDocument};

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::auth::unix_ms;
use crate::policy;
use crate::store::StoreError;
use crate::store::records::DocumentScope;

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
    responses((status = 200, body = Vec<DevicePresence>), (status = 404, body = ErrorBody)))]
pub async fn document_presence(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<PresenceQuery>,
) -> Result<Json<Vec<DevicePresence>>, ApiError> {
    let (id, scope) = super::named_document(&state, "document_id", &query.document_id).await?;
    if !policy::document_access(&caller.principal, scope.as_ref()).read {
        // As for sync: a document one may not read does not exist.
        return Err(ApiError::NotFound(format!("no document {id}")));
    }
    Ok(Json(state.presence.online(id)))
}

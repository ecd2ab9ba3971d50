//! Signed ticket codes: an event's public key for the tablets that check
//! codes, and codes issued by administrators (the server signs them with
//! the event's key, `ticket_keys`, which never leaves it).

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use event_model::tickets::{self, TicketClaims};
use sync_protocol::DocumentId;

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::store::records::DocumentKind;

/// The event document `id`, where the caller may read it; any other
/// document, or one the caller may not read, is not found.
async fn readable_event(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<DocumentId, ApiError> {
    let (id, scope) = super::named_document(state, "document id", id).await?;
    let access = crate::policy::document_access(&caller.principal, scope.as_ref());
    if access.read && scope.is_some_and(|s| s.kind == DocumentKind::Event) {
        Ok(id)
    } else {
        Err(ApiError::NotFound(format!("no event document {id}")))
    }
}

/// The public key that checks an event's signed codes (anyone who may
/// read the event: a tablet keeps it before the event's document arrives).
#[utoipa::path(get, path = "/api/events/{document_id}/ticket-key", tag = "devices", security(("bearer" = [])),
    params(("document_id" = String, Path, format = "automerge-document-id")),
    responses((status = 200, body = api_types::TicketKey), (status = 404, body = ErrorBody)))]
pub async fn ticket_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(document_id): Path<String>,
) -> Result<Json<api_types::TicketKey>, ApiError> {
    let id = readable_event(&state, &caller, &document_id).await?;
    Ok(Json(api_types::TicketKey {
        document_id: id.to_string(),
        public_key: state.ticket_keys.public_key_text(id),
    }))
}

/// Issues a signed ticket code for an attendee of an event (administrators).
#[utoipa::path(post, path = "/api/events/{document_id}/tickets", tag = "admin", security(("bearer" = [])),
    params(("document_id" = String, Path, format = "automerge-document-id")),
    request_body = api_types::IssueTicketRequest,
    responses((status = 200, body = api_types::IssuedTicket), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn issue_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    Path(document_id): Path<String>,
    Json(request): Json<api_types::IssueTicketRequest>,
) -> Result<Json<api_types::IssuedTicket>, ApiError> {
    caller.require_admin()?;
    let id = readable_event(&state, &caller, &document_id).await?;
    if request.attendee_id.trim().is_empty() {
        return Err(ApiError::BadRequest("attendee_id is empty".into()));
    }
    if let (Some(from), Some(until)) = (request.valid_from_ms, request.valid_until_ms)
        && until <= from
    {
        return Err(ApiError::BadRequest(
            "valid_until_ms is not after valid_from_ms".into(),
        ));
    }
    // The code carries seconds: the time it says it was issued is the
    // time a revocation is compared with.
    let issued_at_ms = crate::auth::unix_ms() / 1000 * 1000;
    let claims = TicketClaims {
        attendee_id: request.attendee_id.clone(),
        ticket_type: request.ticket_type.clone(),
        issued_at_ms,
        valid_from_ms: request.valid_from_ms,
        valid_until_ms: request.valid_until_ms,
    };
    let key = state.ticket_keys.signing_key(id);
    let code = tickets::issue(&key, &id.to_string(), &claims)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    // Codes are at most a few hundred characters, far inside a QR code's
    // capacity; a failure would mean fields too long for one.
    let png = crate::identity::totp::qr_png(&code).map_err(|error| {
        ApiError::BadRequest(format!("the code does not fit a QR code: {error}"))
    })?;
    state
        .audit(
            caller
                .audit("ticket.issued", "ok")
                .target(id.to_string())
                .details(serde_json::json!({
                    "attendee_id": request.attendee_id,
                    "ticket_type": request.ticket_type,
                    "valid_from_ms": request.valid_from_ms,
                    "valid_until_ms": request.valid_until_ms,
                    "issued_at_ms": issued_at_ms,
                })),
        )
        .await;
    Ok(Json(api_types::IssuedTicket {
        code,
        public_key: tickets::key_text(&key.verifying_key()),
        issued_at_ms,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(png),
    }))
}

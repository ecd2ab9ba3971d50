//! The audit log over the API (administrators): pages with filters, the
//! export as JSON lines (step-up; audited itself) and the chain's check.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

// The API's views of the store's records (`store::records::Device`,
// `store::User`), as the clients read them.
use api_types::{AuditPage, AuditVerification};

use super::{ApiError, ApiState, Caller, ErrorBody};
use crate::audit::{self};
use crate::audit_verify;
use crate::store::StoreError;
use crate::store::records::AuditQuery;

pub use api_types::AuditFilter;

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
    let entries = entries
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Database(format!("an audit entry as JSON: {e}")))?;
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

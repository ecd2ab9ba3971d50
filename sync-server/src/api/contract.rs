//! What makes the API's contract exact beyond each handler's own annotation:
//!
//! - every refusal under `/api` carries the one JSON error body
//!   ([`ErrorBody`]), including those no handler writes: axum's extractor
//!   rejections (a body that is not JSON, a wrong content type, a query
//!   string or path that does not parse, an unknown route or method) and
//!   the per-address limiter's `429`, which answer in plain text
//!   ([`json_errors`]);
//! - every operation documents the failures that come from the layers and
//!   extractors rather than its own code ([`document_common_failures`]):
//!   a handler's annotation lists what the handler decides (`404`, `409`,
//!   its own `400`s), and this adds, where they apply, `400` for
//!   parameters, `400`/`413`/`415`/`422` for a JSON body, `401` for a
//!   bearer token, `429` for the limiters and `503` for the store.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

use super::ErrorBody;

/// The most of a plain-text refusal kept as the message.
const MESSAGE_LIMIT: usize = 16 * 1024;

/// The stable code for a refusal that no handler wrote, by its status.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        status if status.is_server_error() => "server_error",
        _ => "error",
    }
}

/// Rewrites a plain-text refusal under `/api` into the JSON error body,
/// keeping its status, headers and text (as the message).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let under_api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !under_api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MESSAGE_LIMIT).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    let retry_after_secs = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = ErrorBody {
        error: code_for(status).to_owned(),
        message: text,
        wipe: false,
        retry_after_secs,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

/// Adds to every operation of `openapi` the failures its layers and
/// extractors can answer with, where its annotation does not list them.
pub fn document_common_failures(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, why) in common_failures(operation) {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(why)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}

/// The failures that apply to `operation`, with why each happens.
fn common_failures(operation: &Operation) -> Vec<(&'static str, &'static str)> {
    let mut failures = Vec::new();
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    if has_parameters || operation.request_body.is_some() {
        failures.push(("400", "The request's parameters or body do not parse"));
    }
    if operation.request_body.is_some() {
        failures.push(("413", "The body is larger than the server accepts"));
        failures.push(("415", "The body is not sent as `application/json`"));
        failures.push(("422", "The body is JSON of the wrong shape"));
    }
    let bearer = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    if bearer {
        failures.push((
            "401",
            "No token, or one that is unknown, expired or revoked",
        ));
    }
    failures.push(("429", "Too many requests from this address or account"));
    failures.push(("503", "The store is unavailable"));
    failures
}

//! ETag responses and conditional requests (`If-None-Match` → 304, `If-Match` → 412).

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::orchestrator::etag;

/// A JSON response with its ETag, computed once.
pub fn json_with_etag(status: StatusCode, body: &Value) -> Response {
    with_etag(status, body, etag::etag(body))
}

fn with_etag(status: StatusCode, body: &Value, tag: String) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// 304 (with the ETag, no body) when `If-None-Match` matches, otherwise the full response.
pub fn respond_conditionally(headers: &HeaderMap, body: &Value) -> Response {
    respond_conditionally_on(headers, body, body)
}

/// Like `respond_conditionally`, with the ETag computed over `tagged` (the original hashed the
/// `items` of a list, not the envelope around them).
pub fn respond_conditionally_on(headers: &HeaderMap, body: &Value, tagged: &Value) -> Response {
    let tag = etag::etag(tagged);
    let hit = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| etag::matches(h, &tag));
    if hit {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&tag) {
            response.headers_mut().insert(header::ETAG, v);
        }
        return response;
    }
    with_etag(StatusCode::OK, body, tag)
}

/// Refuses (412) when `If-Match` is present and does not match the current representation.
pub fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), ApiError> {
    match headers.get(header::IF_MATCH).map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok(h)) if etag::matches(h, &etag::etag(current)) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "Precondition failed: the resource has changed",
        )),
    }
}

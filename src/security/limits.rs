//! Request size and time limits, each answered with the error envelope and audited.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::audit::AuditEvent;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

fn refuse(
    state: &AppState,
    ctx: Option<&RequestContext>,
    (method, path): (&Method, &str),
    status: StatusCode,
    message: &'static str,
) -> Response {
    state.audit.record(
        AuditEvent::new("request.rejected", "denied")
            .context(ctx)
            .details(json!({"reason": message, "method": method.as_str(), "path": path})),
    );
    ApiError::new(status, message).into_response()
}

/// Stage of the request path: header size (431), declared body size (413) and the request
/// timeout (408), each refusal with an audit row.
pub async fn request_limits(
    state: &AppState,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let settings = &state.settings();
    let ctx = request.extensions().get::<RequestContext>().cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let at = (&method, path.as_str());
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > settings.max_header_bytes {
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return refuse(
            state,
            ctx.as_ref(),
            at,
            status,
            "Request header fields too large",
        );
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > settings.max_body_bytes as u64) {
        return refuse(
            state,
            ctx.as_ref(),
            at,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        );
    }
    match tokio::time::timeout(
        Duration::from_secs(settings.request_timeout_secs),
        next(request),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => refuse(
            state,
            ctx.as_ref(),
            at,
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
        ),
    }
}

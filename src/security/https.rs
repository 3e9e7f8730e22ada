//! HTTPS enforcement (staging and production). The scheme comes from the socket or from a
//! trusted proxy only (see `client_ip`); WebSocket upgrades pass through here too.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::audit::AuditEvent;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

fn redirect_target(request: &Request) -> Option<String> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let valid = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !valid {
        return None;
    }
    let host = host.strip_suffix(":80").unwrap_or(host);
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    Some(format!("https://{host}{path}"))
}

/// Stage of the request path (DESIGN.md §5): refuses plain HTTP outside the exempt paths (400,
/// or a 308 to the `https://` URL for GET/HEAD with `HTTPS_REDIRECT`), with an audit row.
pub async fn enforce_https(
    state: &AppState,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let settings = &state.settings();
    let ctx = request.extensions().get::<RequestContext>().cloned();
    let https = ctx.as_ref().is_some_and(|c| c.https);
    if !settings.enforce_https
        || https
        || settings
            .https_exempt_paths
            .iter()
            .any(|p| p == request.uri().path())
    {
        return next(request).await;
    }
    state.audit.record(
        AuditEvent::new("https.rejected", "denied")
            .context(ctx.as_ref())
            .details(json!({"method": request.method().as_str(), "path": request.uri().path()})),
    );
    if settings.https_redirect
        && (request.method() == Method::GET || request.method() == Method::HEAD)
        && let Some(target) = redirect_target(&request)
        && let Ok(location) = HeaderValue::from_str(&target)
    {
        return (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    ApiError::bad_request("HTTPS required").into_response()
}

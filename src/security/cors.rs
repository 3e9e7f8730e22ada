//! CORS from FRONTEND_HOST + BACKEND_CORS_ORIGINS. Credentials are allowed, so origins are always
//! named (configuration refuses `*`); a disallowed origin is never echoed. This layer sits
//! outside every other policy layer: preflights are answered before rate limiting and CSRF, and
//! rejections from those layers still carry CORS headers so browsers can read them.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::state::AppState;

pub const EXPOSED_HEADERS: [&str; 12] = [
    "x-csrf-token",
    "x-request-id",
    "etag",
    "location",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "www-authenticate",
];

/// The CORS layer. The allowed origins are read from the settings in effect on every request
/// (`state.settings().cors_origins`, exact match), so an origin added by a reload is allowed
/// from the next preflight on.
pub fn layer(state: AppState) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            state
                .settings()
                .cors_origins
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes())
        }))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-csrf-token"),
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(600))
}

//! Prometheus `/metrics` and the one middleware that records every request into the registry
//! of [`crate::telemetry`].
//!
//! Access: anyone in `ENVIRONMENT=local`; elsewhere an administrator, or the scraper with
//! `Authorization: Bearer <KYROS_METRICS_TOKEN>`. The scrape token is recognised (in constant
//! time) by the recording middleware, which runs before authentication, and removed from the
//! request so it is never mistaken for a rejected access token.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, access};
use crate::auth::principal::bearer_token;
use crate::auth::rbac::AdminOutsideLocal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::{ExternalCounters, UNMATCHED, method_label, process_stats};

pub const METRICS_PATH: &str = "/metrics";
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> ApiRouter {
    access(
        Access::MetricsToken,
        ApiRouter::new().routes(routes!(metrics)),
    )
}

/// Marks a request that presented the configured scrape token.
#[derive(Debug, Clone, Copy)]
struct ScrapeToken;

/// Compares digests, so neither the content nor the length of the token leaks through timing.
fn is_scrape_token(state: &AppState, presented: &str) -> bool {
    let Some(expected) = &state.settings().metrics_token else {
        return false;
    };
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    a.ct_eq(&b).into()
}

/// Middleware: counts the response by method, matched route template (`unmatched` otherwise)
/// and status class, and its latency. Placed just inside the request span, so every response —
/// 404s, 429s, timeouts and caught panics included — is seen.
pub async fn track(
    state: &AppState,
    mut request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    if request.uri().path() == METRICS_PATH
        && bearer_token(request.headers()).is_some_and(|t| is_scrape_token(state, t))
    {
        request.headers_mut().remove(header::AUTHORIZATION);
        request.extensions_mut().insert(ScrapeToken);
    }
    let response = next(request).await;
    state.telemetry.observe(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}

/// The scraper (by token), or whoever [`AdminOutsideLocal`] admits.
struct MetricsAccess;

impl FromRequestParts<AppState> for MetricsAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.extensions.get::<ScrapeToken>().is_some() {
            return Ok(MetricsAccess);
        }
        AdminOutsideLocal::from_request_parts(parts, state).await?;
        Ok(MetricsAccess)
    }
}

/// Prometheus metrics (text exposition format 0.0.4): requests by method, route template and
/// status class, latency histograms, process figures and the service's own counters.
#[utoipa::path(
    get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "The metrics",
               content_type = "text/plain; version=0.0.4; charset=utf-8", body = String,
               headers(("Cache-Control" = String, description = "no-store")))),
)]
async fn metrics(State(state): State<AppState>, _: MetricsAccess) -> Response {
    let process = process_stats().await;
    let external = ExternalCounters {
        local_fallbacks: state.limiter.local_fallbacks(),
        redis_failures: state.redis.as_ref().map_or(0, |r| r.failures()),
        audit_dropped: state.audit.dropped(),
    };
    let body = state.telemetry.render(&external, &process);
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

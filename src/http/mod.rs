//! Routes and the middleware stack around them (DESIGN.md §5).

pub mod account;
pub mod admin;
pub mod agents;
pub mod api;
pub mod api_keys;
pub mod auth;
pub mod body;
pub mod conditional;
pub mod console;
pub mod events;
pub mod examples;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod mfa;
pub mod monitoring;
pub mod oidc;
pub mod openapi;
pub mod security;
pub mod sessions;
pub mod tasks;
pub mod utils;
pub mod ws;

use std::any::Any;

use axum::{Extension, Router};
use utoipa::OpenApi;

use self::api::{ApiDoc, ApiRouter};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tracing::Instrument;

use crate::auth::principal::authenticate;
use crate::error::{self, ApiError};
use crate::security::client_ip::{RequestContext, request_context};
use crate::security::{cors, csrf, headers, https, limits, rate_limit};
use crate::state::AppState;

/// Every route of the service, documented: the groups of each module (their access and
/// budget declared there), inside the CSRF policy of their group.
fn api(state: &AppState) -> ApiRouter {
    ApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(auth::routes())
        .merge(sessions::routes())
        .merge(account::routes())
        .merge(mfa::routes())
        .merge(oidc::routes())
        .merge(security::routes())
        .merge(admin::routes())
        .merge(api_keys::routes())
        .merge(examples::routes())
        .merge(utils::routes())
        .merge(monitoring::routes())
        .merge(self::metrics::routes())
        .merge(jobs::routes())
        .merge(tasks::routes())
        .merge(agents::routes())
        .merge(events::routes())
        .merge(ws::routes())
        .merge(openapi::routes())
        .merge(console::routes())
        // Runs only for matched routes, so an unknown path is a 404 before any CSRF verdict.
        .route_layer(from_fn_with_state(state.clone(), csrf::csrf_guard))
        // The routes a browser posts without a token declare it here: origin check only.
        .merge(
            ApiRouter::new()
                .merge(sessions::csrf_exempt_routes())
                .merge(oidc::csrf_exempt_routes())
                .merge(security::csrf_exempt_routes())
                .route_layer(from_fn_with_state(state.clone(), csrf::origin_guard)),
        )
}

pub fn router(state: AppState) -> Router {
    let (routes, mut doc) = api(&state).split_for_parts();
    for operation in api::finish(&mut doc) {
        tracing::error!(%operation, "operation without a documented success answer");
    }
    let login_routes = api::login_routes(&doc);
    let spec = openapi::Spec::new(&doc);
    let routes = routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);

    routes
        .layer(
            // Outermost first.
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::SET_COOKIE,
                    header::HeaderName::from_static("x-api-key"),
                    header::HeaderName::from_static("x-csrf-token"),
                ]))
                .layer(Extension(spec))
                .layer(Extension(login_routes))
                .layer(from_fn_with_state(state.clone(), outer_stages))
                .layer(cors::layer(state.clone()))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(from_fn_with_state(state.clone(), admission_stages))
                .layer(DefaultBodyLimit::max(state.settings().max_body_bytes)),
        )
        .with_state(state)
}

/// The stages outside CORS, outermost first: the request context (client address, scheme,
/// request id), the request span, metrics (inside the span, outside everything that can
/// answer: every response is counted), security headers (on every response, CORS preflights
/// and rendered errors included) and error rendering. One middleware calling plain stage
/// functions: each `from_fn` layer costs a boxed future and a clone of the stack inside it on
/// every request.
async fn outer_stages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let state = &state;
    request_context(state, request, async move |request| {
        let span = request_span(&request);
        let started = std::time::Instant::now();
        let response = self::metrics::track(state, request, async move |request| {
            headers::security_headers(state, request, async move |request| {
                error::render_errors(request, async move |request| next.run(request).await).await
            })
            .await
        })
        .instrument(span.clone())
        .await;
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        span.in_scope(|| {
            if status >= 500 {
                tracing::error!(status, latency_ms, "request failed");
            } else {
                tracing::debug!(status, latency_ms, "request finished");
            }
        });
        response
    })
    .await
}

/// The stages inside CORS and the panic guard, outermost first: HTTPS enforcement, the caller
/// (credentials resolved once), the rate limiter (which needs the caller) and the request
/// limits (header and body size, timeout). See [`outer_stages`] for why they are one layer.
async fn admission_stages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let state = &state;
    https::enforce_https(state, request, async move |request| {
        authenticate(state, request, async move |request| {
            rate_limit::rate_limit(state, request, async move |request| {
                limits::request_limits(state, request, async move |request| next.run(request).await)
                    .await
            })
            .await
        })
        .await
    })
    .await
}

/// The span of one request: method, path without the query string (it can carry a token),
/// request id and client address.
fn request_span(request: &Request) -> tracing::Span {
    match request.extensions().get::<RequestContext>() {
        Some(c) => tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %c.request_id,
            client_ip = %c.client_ip,
        ),
        None => tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = "-",
            client_ip = "-",
        ),
    }
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal("request handler panicked").into_response()
}

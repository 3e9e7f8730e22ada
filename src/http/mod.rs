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
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

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
                .layer(from_fn_with_state(state.clone(), request_context))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                // Inside the span, outside everything that can answer: sees every response.
                .layer(from_fn_with_state(state.clone(), self::metrics::track))
                .layer(from_fn(error::render_errors))
                .layer(cors::layer(&state.settings))
                .layer(from_fn_with_state(state.clone(), headers::security_headers))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(from_fn_with_state(state.clone(), https::enforce_https))
                .layer(from_fn_with_state(state.clone(), authenticate))
                .layer(from_fn_with_state(state.clone(), rate_limit::rate_limit))
                .layer(from_fn_with_state(state.clone(), limits::request_limits))
                .layer(DefaultBodyLimit::max(state.settings.max_body_bytes)),
        )
        .with_state(state)
}

/// The span of one request: method, path without the query string (it can carry a token),
/// request id and client address.
fn request_span(request: &Request) -> tracing::Span {
    let (id, client) = request
        .extensions()
        .get::<RequestContext>()
        .map_or(("-".to_owned(), "-".to_owned()), |c| {
            (c.request_id.clone(), c.client_ip.to_string())
        });
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
        client_ip = %client,
    )
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal("request handler panicked").into_response()
}

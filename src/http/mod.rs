//! Routes and the middleware stack around them.

pub mod auth;
pub mod body;
pub mod health;

use std::any::Any;

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::error::{self, ApiError};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(auth::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(
            // Outermost first.
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::HeaderName::from_static("x-api-key"),
                ]))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(from_fn(error::render_errors))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

/// The span of one request: method, path without the query string (it can carry a token), id.
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal("request handler panicked").into_response()
}

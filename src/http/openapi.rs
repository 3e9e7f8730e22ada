//! The OpenAPI 3.1 description of the service at `GET /api/v1/openapi.json` — derived from the
//! routers and handlers (`super::api`), built once at start — and a small documentation page at
//! `GET /api/v1/docs` that renders it with a same-origin script and stylesheet (no inline code,
//! so it works under the production CSP, and no CDN).

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, access};
use crate::error::ApiError;

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
pub const DOCS_PATH: &str = "/api/v1/docs";

const DOCS_HTML: &str = include_str!("../web/docs/index.html");
const DOCS_JS: &str = include_str!("../web/docs/docs.js");
const DOCS_CSS: &str = include_str!("../web/docs/docs.css");
const ASSET_CACHE: &str = "public, max-age=3600";

pub fn routes() -> ApiRouter {
    access(
        Access::Public,
        ApiRouter::new()
            .routes(routes!(spec))
            .routes(routes!(docs_page))
            .routes(routes!(docs_page_alias))
            .routes(routes!(docs_js))
            .routes(routes!(docs_css))
            .routes(routes!(docs_redirect)),
    )
}

/// The serialized document, shared by the requests (an extension of the router).
#[derive(Clone)]
pub struct Spec(Arc<Result<String, String>>);

impl Spec {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        Spec(Arc::new(doc.to_json().map_err(|e| e.to_string())))
    }
}

/// This OpenAPI document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document",
               content_type = "application/json", body = Object)),
)]
async fn spec(Extension(spec): Extension<Spec>) -> Result<Response, ApiError> {
    match spec.0.as_ref() {
        Ok(json) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response())
        }
        Err(e) => Err(ApiError::internal(format!("OpenAPI document: {e}"))),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE)),
        ],
        body,
    )
        .into_response()
}

/// The API documentation page.
#[utoipa::path(
    get, path = "/api/v1/docs", tag = "docs",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)),
)]
async fn docs_page() -> Response {
    asset("text/html; charset=utf-8", DOCS_HTML)
}

/// The API documentation page (trailing-slash path).
#[utoipa::path(
    get, path = "/api/v1/docs/", tag = "docs",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)),
)]
async fn docs_page_alias() -> Response {
    docs_page().await
}

/// Script of the documentation page.
#[utoipa::path(
    get, path = "/api/v1/docs/docs.js", tag = "docs",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)),
)]
async fn docs_js() -> Response {
    asset("text/javascript; charset=utf-8", DOCS_JS)
}

/// Stylesheet of the documentation page.
#[utoipa::path(
    get, path = "/api/v1/docs/docs.css", tag = "docs",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)),
)]
async fn docs_css() -> Response {
    asset("text/css; charset=utf-8", DOCS_CSS)
}

/// Redirect to the documentation page.
#[utoipa::path(
    get, path = "/docs", tag = "docs",
    responses((status = 308, description = "Permanent redirect to /api/v1/docs",
               headers(("Location" = String, description = "/api/v1/docs")))),
)]
async fn docs_redirect() -> Redirect {
    Redirect::permanent(DOCS_PATH)
}

//! The browser console under `/console/`: one HTML page and its script and stylesheet, embedded
//! in the binary. Assets are served under content-hashed names with a year-long immutable cache;
//! the page itself is revalidated on every load (`no-cache` + ETag) so a new release is picked up
//! at once. Every path under `/console/` that is not an asset answers the page, so the console's
//! own routes (`/console/jobs/…`) survive a reload. The page runs under the unchanged production
//! CSP: it has no inline script or style and loads nothing from another origin.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::extract::Path;
use crate::error::ApiError;

pub const CONSOLE_PATH: &str = "/console/";
const ASSET_PREFIX: &str = "/console/assets/";

const INDEX_HTML: &str = include_str!("../web/console/index.html");
/// (file name referenced by index.html, content type, bytes).
const SOURCES: &[(&str, &str, &[u8])] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/console/console.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/console/favicon.svg"),
    ),
];
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Asset {
    /// `console.<hash>.js`
    name: String,
    content_type: &'static str,
    body: &'static [u8],
    etag: String,
}

struct Console {
    index: String,
    index_etag: String,
    assets: Vec<Asset>,
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..16]))
}

/// Hashes every asset and points the page at the hashed names.
fn build() -> Console {
    let mut index = INDEX_HTML.to_owned();
    let assets = SOURCES
        .iter()
        .map(|&(file, content_type, body)| {
            let hash = hex::encode(&Sha256::digest(body)[..6]);
            let (stem, ext) = file.rsplit_once('.').unwrap_or((file, ""));
            let name = format!("{stem}.{hash}.{ext}");
            index = index.replace(
                &format!("\"{ASSET_PREFIX}{file}\""),
                &format!("\"{ASSET_PREFIX}{name}\""),
            );
            Asset {
                name,
                content_type,
                body,
                etag: etag_of(body),
            }
        })
        .collect();
    Console {
        index_etag: etag_of(index.as_bytes()),
        index,
        assets,
    }
}

static CONSOLE: LazyLock<Console> = LazyLock::new(build);

/// The axum form of the catch-all route, and the path the document shows for it.
const CATCH_ALL_ROUTE: &str = "/console/{*path}";
const CATCH_ALL_DOC: &str = "/console/{path}";

pub fn routes() -> ApiRouter {
    let mut router = access(
        Access::Public,
        ApiRouter::new()
            .routes(routes!(redirect))
            .routes(routes!(page))
            .routes(routes!(asset))
            .routes(routes!(page_under)),
    );
    // OpenAPI has no catch-all parameter: the document names it like any path parameter.
    let paths = &mut router.get_openapi_mut().paths.paths;
    if let Some(item) = paths.remove(CATCH_ALL_ROUTE) {
        paths.insert(CATCH_ALL_DOC.to_owned(), item);
    }
    router
}

/// Redirect to the console.
#[utoipa::path(
    get, path = "/console", tag = "console",
    responses((status = 308, description = "Permanent redirect to /console/",
               headers(("Location" = String, description = "/console/")))),
)]
async fn redirect() -> Redirect {
    Redirect::permanent(CONSOLE_PATH)
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn respond(
    headers: &HeaderMap,
    etag: &str,
    cache: &'static str,
    content_type: &'static str,
    body: &'static [u8],
) -> Response {
    let common = [
        (header::ETAG, HeaderValue::from_str(etag).ok()),
        (header::CACHE_CONTROL, Some(HeaderValue::from_static(cache))),
    ];
    let mut response = if not_modified(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    for (name, value) in common {
        if let Some(value) = value {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The browser console (revalidated on every load: `no-cache` with an ETag).
#[utoipa::path(
    get, path = "/console/", tag = "console",
    params(("If-None-Match" = Option<String>, Header, description = "the page's ETag")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String,
         headers(("ETag" = String, description = "the page's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
    ),
)]
async fn page(headers: HeaderMap) -> Response {
    let console: &'static Console = &CONSOLE;
    respond(
        &headers,
        &console.index_etag,
        "no-cache",
        "text/html; charset=utf-8",
        console.index.as_bytes(),
    )
}

/// A path of the console's own (`/console/jobs/…`): the console page, so a reload works.
#[utoipa::path(
    get, path = "/console/{*path}", tag = "console",
    params(("path" = String, Path, description = "any path under /console/ (slashes included)"),
           ("If-None-Match" = Option<String>, Header, description = "the page's ETag")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String,
         headers(("ETag" = String, description = "the page's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
    ),
)]
async fn page_under(headers: HeaderMap) -> Response {
    page(headers).await
}

/// A script, stylesheet or image of the console, under its content-hashed name (cached for a
/// year, immutable).
#[utoipa::path(
    get, path = "/console/assets/{file}", tag = "console",
    params(("file" = String, Path, description = "the hashed name the page refers to, e.g. console.0123456789ab.js"),
           ("If-None-Match" = Option<String>, Header, description = "the asset's ETag")),
    responses(
        (status = 200, description = "The asset",
         content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml")),
         headers(("ETag" = String, description = "the asset's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such asset", body = ErrorEnvelope),
    ),
)]
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let asset = CONSOLE
        .assets
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found("No such console asset"))?;
    Ok(respond(
        &headers,
        &asset.etag,
        IMMUTABLE,
        asset.content_type,
        asset.body,
    ))
}

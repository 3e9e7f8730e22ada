//! The browser console under `/console/`: one HTML page and its ES modules, stylesheet and icon,
//! embedded in the binary. The assets are served under one content hash of the whole set
//! (`/console/assets/<bundle hash>/<file>`, so the modules import each other by relative names)
//! with a year-long immutable cache; the page itself is revalidated on every load (`no-cache` +
//! ETag) so a new release is picked up at once. Every path under `/console/` that is not an asset
//! answers the page, so the console's own routes (`/console/jobs/…`) survive a reload. The page
//! runs under the unchanged production CSP: it has no inline script or style and loads nothing
//! from another origin.

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
const JS: &str = "text/javascript; charset=utf-8";
/// (file name as index.html and the modules refer to it, content type, bytes): every file of
/// `src/web/console/` but the page.
const SOURCES: &[(&str, &str, &[u8])] = &[
    ("main.js", JS, include_bytes!("../web/console/main.js")),
    ("core.js", JS, include_bytes!("../web/console/core.js")),
    ("dialog.js", JS, include_bytes!("../web/console/dialog.js")),
    ("chart.js", JS, include_bytes!("../web/console/chart.js")),
    ("login.js", JS, include_bytes!("../web/console/login.js")),
    (
        "overview.js",
        JS,
        include_bytes!("../web/console/overview.js"),
    ),
    ("jobs.js", JS, include_bytes!("../web/console/jobs.js")),
    (
        "job-detail.js",
        JS,
        include_bytes!("../web/console/job-detail.js"),
    ),
    ("tasks.js", JS, include_bytes!("../web/console/tasks.js")),
    ("agents.js", JS, include_bytes!("../web/console/agents.js")),
    ("keys.js", JS, include_bytes!("../web/console/keys.js")),
    (
        "account.js",
        JS,
        include_bytes!("../web/console/account.js"),
    ),
    ("users.js", JS, include_bytes!("../web/console/users.js")),
    ("audit.js", JS, include_bytes!("../web/console/audit.js")),
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
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: String,
}

struct Console {
    /// The first 12 hex digits of the SHA-256 of the set (see `bundle_hash`).
    bundle: String,
    index: String,
    index_etag: String,
    assets: Vec<Asset>,
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..16]))
}

/// The hash of the whole set: SHA-256 over, in name order, each file's name, a NUL byte and the
/// SHA-256 of its bytes. Any change of any file (or a file added, removed or renamed) changes it.
fn bundle_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut files: Vec<_> = files.into_iter().collect();
    files.sort_by_key(|&(name, _)| name);
    let mut hasher = Sha256::new();
    for (name, body) in files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(body));
    }
    hex::encode(&hasher.finalize()[..6])
}

/// Hashes the set and points the page at the hashed URLs.
fn build() -> Console {
    let bundle = bundle_hash(SOURCES.iter().map(|&(name, _, body)| (name, body)));
    let mut index = INDEX_HTML.to_owned();
    let assets = SOURCES
        .iter()
        .map(|&(name, content_type, body)| {
            index = index.replace(
                &format!("\"{ASSET_PREFIX}{name}\""),
                &format!("\"{ASSET_PREFIX}{bundle}/{name}\""),
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
        bundle,
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

/// A path of the console's own (`/console/jobs/…`): the console page, so a reload works. A name
/// under `/console/assets/` without the set's hash is no page but a missing asset (an old page's
/// reference, or a guess): 404.
#[utoipa::path(
    get, path = "/console/{*path}", tag = "console",
    params(("path" = String, Path, description = "any path under /console/ (slashes included)"),
           ("If-None-Match" = Option<String>, Header, description = "the page's ETag")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String,
         headers(("ETag" = String, description = "the page's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "An asset name without the set's hash", body = ErrorEnvelope),
    ),
)]
async fn page_under(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    if path.starts_with("assets/") {
        return Err(no_such_asset());
    }
    Ok(page(headers).await)
}

/// A module, stylesheet or image of the console, under the content hash of the whole set (cached
/// for a year, immutable).
#[utoipa::path(
    get, path = "/console/assets/{bundle}/{file}", tag = "console",
    params(("bundle" = String, Path, description = "the hash of the set the page refers to, e.g. 0123456789ab"),
           ("file" = String, Path, description = "the file, e.g. main.js (modules import each other by relative names)"),
           ("If-None-Match" = Option<String>, Header, description = "the asset's ETag")),
    responses(
        (status = 200, description = "The asset",
         content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml")),
         headers(("ETag" = String, description = "the asset's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such asset (or another release's hash)", body = ErrorEnvelope),
    ),
)]
async fn asset(
    Path((bundle, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let console: &'static Console = &CONSOLE;
    let asset = console
        .assets
        .iter()
        .find(|a| bundle == console.bundle && a.name == file)
        .ok_or_else(no_such_asset)?;
    Ok(respond(
        &headers,
        &asset.etag,
        IMMUTABLE,
        asset.content_type,
        asset.body,
    ))
}

fn no_such_asset() -> ApiError {
    ApiError::not_found("No such console asset")
}

//! The browser console under `/console/`: one HTML page and its script and stylesheet, embedded
//! in the binary. Assets are served under content-hashed names with a year-long immutable cache;
//! the page itself is revalidated on every load (`no-cache` + ETag) so a new release is picked up
//! at once. Every path under `/console/` that is not an asset answers the page, so the console's
//! own routes (`/console/jobs/…`) survive a reload. The page runs under the unchanged production
//! CSP: it has no inline script or style and loads nothing from another origin.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent(CONSOLE_PATH) }),
        )
        .route("/console/", get(page))
        .route("/console/assets/{file}", get(asset))
        .route("/console/{*path}", get(page))
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

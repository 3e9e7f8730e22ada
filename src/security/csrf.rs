//! CSRF protection for cookie-authenticated state-changing requests.
//!
//! Token: base64url of fixed-width fields — version (1 byte) | issued-at (8 bytes, big-endian
//! Unix seconds) | nonce (16 bytes) | HMAC-SHA256 (32 bytes) over a domain tag, those fields and
//! the 16-byte id of the session it is bound to. Fixed widths make the encoding unambiguous (the
//! original joined raw bytes with `|` and broke on a fifth of its tokens). The key is derived from
//! SECRET_KEY for this purpose only.
//!
//! A request passes when the `X-CSRF-Token` header equals the `csrf_token` cookie (double
//! submit: the cookie alone is never enough), the token verifies, is not older than the max age,
//! not issued in the future, and is bound to the session that authenticated the request. In
//! addition, cross-site requests are refused by Fetch Metadata (`Sec-Fetch-Site`) and `Origin`.
//! Requests authenticated by a bearer token or API key carry no ambient credential and are exempt.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::config::Settings;
use crate::context::RequestContext;
use crate::cookies;
use crate::crypto::hmac_sha256;
use crate::crypto::{ct_eq, random_bytes};
use crate::error::ApiError;
use crate::state::AppState;

pub use crate::cookies::CSRF_COOKIE;
pub const CSRF_HEADER: &str = "x-csrf-token";
const VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + 8 + 16 + 32;
const DOMAIN: &[u8] = b"kyros-csrf";
/// Tolerated clock difference for tokens issued by another instance.
const FUTURE_SKEW_SECS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("missing token header")]
    MissingHeader,
    #[error("missing token cookie")]
    MissingCookie,
    #[error("header and cookie differ")]
    Mismatch,
    #[error("malformed token")]
    Malformed,
    #[error("bad signature or other session")]
    BadSignature,
    #[error("expired token")]
    Expired,
    #[error("token issued in the future")]
    FromTheFuture,
    #[error("cross-site request")]
    CrossSite,
}

#[derive(Clone)]
pub struct CsrfKeys {
    /// The keys of every signing secret of the ring, the current one (which issues) first.
    keys: Vec<[u8; 32]>,
    max_age_secs: i64,
}

impl std::fmt::Debug for CsrfKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfKeys")
            .field("max_age_secs", &self.max_age_secs)
            .finish_non_exhaustive()
    }
}

impl CsrfKeys {
    /// `keys`: the CSRF keys of the [`crate::crypto::KeyRing`], current first. Tokens are
    /// issued under the first and accepted under any (key rotation).
    pub fn new(settings: &Settings, keys: &[[u8; 32]]) -> Self {
        CsrfKeys {
            keys: keys.to_vec(),
            max_age_secs: settings.csrf_max_age_secs,
        }
    }

    pub fn max_age_secs(&self) -> i64 {
        self.max_age_secs
    }

    fn mac(key: &[u8; 32], fields: &[u8], session: Uuid) -> [u8; 32] {
        hmac_sha256(key, &[DOMAIN, fields, session.as_bytes()])
    }

    /// A token bound to `session`, issued at `now`.
    pub fn issue(&self, session: Uuid, now: DateTime<Utc>) -> String {
        self.issue_at(session, now.timestamp())
    }

    fn issue_at(&self, session: Uuid, issued_at: i64) -> String {
        let mut raw = Vec::with_capacity(TOKEN_BYTES);
        raw.push(VERSION);
        raw.extend_from_slice(&issued_at.to_be_bytes());
        raw.extend_from_slice(&random_bytes::<16>());
        let mac = Self::mac(&self.keys[0], &raw, session);
        raw.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// When the token was issued, if it is genuine, bound to `session` and fresh.
    pub fn verify(&self, token: &str, session: Uuid, now: DateTime<Utc>) -> Result<i64, CsrfError> {
        if token.len() > 128 {
            return Err(CsrfError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CsrfError::Malformed)?;
        if raw.len() != TOKEN_BYTES || raw[0] != VERSION {
            return Err(CsrfError::Malformed);
        }
        let (fields, mac) = raw.split_at(TOKEN_BYTES - 32);
        if !self
            .keys
            .iter()
            .any(|key| ct_eq(&Self::mac(key, fields, session), mac))
        {
            return Err(CsrfError::BadSignature);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&fields[1..9]);
        let issued_at = i64::from_be_bytes(ts);
        let now = now.timestamp();
        if issued_at > now + FUTURE_SKEW_SECS {
            return Err(CsrfError::FromTheFuture);
        }
        if now - issued_at > self.max_age_secs {
            return Err(CsrfError::Expired);
        }
        Ok(issued_at)
    }
}

fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// True when Fetch Metadata or Origin show the request comes from a page of another origin that
/// is not one of the allowed (CORS) origins.
pub fn is_cross_site(headers: &HeaderMap, https: bool, allowed: &[String]) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Some(origin) = origin
        && allowed.iter().any(|a| a == origin)
    {
        return false;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        origin,
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            let scheme = if https { "https" } else { "http" };
            origin != format!("{scheme}://{host}")
        }
        (Some(_), None) => true,
    }
}

fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

fn check(
    keys: &CsrfKeys,
    headers: &HeaderMap,
    session: Uuid,
    now: DateTime<Utc>,
) -> Result<(), CsrfError> {
    let sent = header_token(headers).ok_or(CsrfError::MissingHeader)?;
    let cookie = cookies::get(headers, CSRF_COOKIE).ok_or(CsrfError::MissingCookie)?;
    if !ct_eq(sent.as_bytes(), cookie.as_bytes()) {
        return Err(CsrfError::Mismatch);
    }
    keys.verify(sent, session, now).map(|_| ())
}

/// Sets a fresh token as cookie and response header.
pub fn attach_token(response: &mut Response, token: &str, secure: bool, max_age_secs: i64) {
    if let Ok(value) = HeaderValue::from_str(token) {
        response.headers_mut().insert(CSRF_HEADER, value);
    }
    cookies::set(response, &cookies::csrf(token, secure, max_age_secs));
}

/// Route layer (runs after routing, so unknown paths are 404 before anything else): checks
/// state-changing requests that a session cookie authenticated — their origin and their token —
/// and keeps the token cookie of a session fresh on its other requests. Attached to every route
/// where they are declared (`src/http/mod.rs`), except the few that take [`origin_guard`].
pub async fn csrf_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    guard(state, request, next, false).await
}

/// Route layer for the routes a browser posts before any token can exist or without one: logging
/// in and CSP reports. Their state-changing requests are checked for a cross-site origin only.
/// Declared with the routes (`csrf_exempt_routes` of `http::sessions` and `http::security`).
pub async fn origin_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    guard(state, request, next, true).await
}

async fn guard(state: AppState, request: Request, next: Next, exempt: bool) -> Response {
    let method = request.method().clone();
    let session = request
        .extensions()
        .get::<CurrentUser>()
        .and_then(|c| match c.method {
            AuthMethod::Session(id) => Some((id, c.user.clone())),
            _ => None,
        });
    let ctx = request.extensions().get::<RequestContext>().cloned();
    let now = state.clock.now();
    let keys = &state.live().csrf;

    if is_state_changing(&method) && (session.is_some() || exempt) {
        let https = ctx.as_ref().is_some_and(|c| c.https);
        let mut verdict = if is_cross_site(request.headers(), https, &state.settings().cors_origins)
        {
            Err(CsrfError::CrossSite)
        } else {
            Ok(())
        };
        if verdict.is_ok()
            && !exempt
            && let Some((id, _)) = &session
        {
            verdict = check(keys, request.headers(), *id, now);
        }
        if let Err(reason) = verdict {
            let mut event = AuditEvent::new("csrf.rejected", "denied")
                .context(ctx.as_ref())
                .details(json!({"reason": reason.to_string(), "method": method.as_str(), "path": request.uri().path()}));
            if let Some((_, user)) = &session {
                event = event.user(user);
            }
            state.audit.record(event);
            return ApiError::forbidden("Invalid CSRF token").into_response();
        }
    }

    // A session's token is renewed once it is missing, invalid or past half its life.
    let renew = session.as_ref().and_then(|(id, _)| {
        let fresh = cookies::get(request.headers(), CSRF_COOKIE)
            .and_then(|t| keys.verify(&t, *id, now).ok())
            .is_some_and(|issued| now.timestamp() - issued < keys.max_age_secs() / 2);
        (!fresh).then_some(*id)
    });
    let mut response = next.run(request).await;
    if let Some(id) = renew
        && !response.headers().contains_key(CSRF_HEADER)
    {
        let token = keys.issue(id, now);
        attach_token(
            &mut response,
            &token,
            state.settings().enforce_https,
            keys.max_age_secs(),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::derive_key;
    use chrono::Duration;
    use secrecy::SecretString;

    fn keys() -> CsrfKeys {
        CsrfKeys {
            keys: vec![derive_key(&SecretString::from("k".repeat(40)), "csrf")],
            max_age_secs: 3600,
        }
    }

    #[test]
    fn every_issued_token_verifies() {
        let keys = keys();
        let session = Uuid::new_v4();
        let now = Utc::now();
        // The original format failed about one token in five; this one must never fail.
        for _ in 0..5000 {
            let token = keys.issue(session, now);
            assert_eq!(keys.verify(&token, session, now), Ok(now.timestamp()));
        }
    }

    #[test]
    fn binding_age_future_and_tampering_are_enforced() {
        let keys = keys();
        let session = Uuid::new_v4();
        let now = Utc::now();
        let token = keys.issue(session, now);
        assert_eq!(
            keys.verify(&token, Uuid::new_v4(), now),
            Err(CsrfError::BadSignature)
        );
        assert_eq!(
            keys.verify(&token, session, now + Duration::seconds(3601)),
            Err(CsrfError::Expired)
        );
        let future = keys.issue_at(session, now.timestamp() + 3600);
        assert_eq!(
            keys.verify(&future, session, now),
            Err(CsrfError::FromTheFuture)
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("b64");
        raw[5] ^= 1;
        assert_eq!(
            keys.verify(&URL_SAFE_NO_PAD.encode(&raw), session, now),
            Err(CsrfError::BadSignature)
        );
        assert_eq!(keys.verify("", session, now), Err(CsrfError::Malformed));
        assert_eq!(
            keys.verify("not|a|token", session, now),
            Err(CsrfError::Malformed)
        );
    }

    #[test]
    fn cross_site_detection() {
        let allowed = vec!["https://app.example".to_owned()];
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("api.example"));
        assert!(
            !is_cross_site(&h, true, &allowed),
            "no browser signals: not a browser form"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(is_cross_site(&h, true, &allowed));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert!(!is_cross_site(&h, true, &allowed), "an allowed origin");
        h.remove("sec-fetch-site");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(is_cross_site(&h, true, &allowed));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://api.example"),
        );
        assert!(!is_cross_site(&h, true, &allowed), "same origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(is_cross_site(&h, true, &[]), "same-site but another origin");
    }
}

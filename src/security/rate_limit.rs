//! Rate limiting on the request path: every request is counted under its key — the API key, the
//! authenticated user (a browser session under the larger session budget), else the trusted
//! client address — by the limiter (`crate::limiter`); the login-type endpoints also under the
//! stricter per-address budget. The console's fingerprinted assets are not counted. Every 401
//! and 429 is a strike (the adaptive penalty). Answers carry `RateLimit-*` headers; a 429
//! `Retry-After`.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::audit::AuditEvent;
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::context::RequestContext;
use crate::error::ApiError;
pub use crate::limiter::gcra::Quota;
pub use crate::limiter::{Limiter, Policy, Verdict, address_key};
use crate::state::AppState;

/// Paths never counted (the load balancer's liveness probe).
const UNCOUNTED: &[&str] = &["/health"];
/// Path prefixes never counted: the console's assets, served from memory under content-hashed
/// names with `Cache-Control: immutable` (a browser fetches each once per release).
const UNCOUNTED_PREFIXES: &[&str] = &["/console/assets/"];
/// The login-type operations: the stricter per-address budget applies to them. Declared where
/// their routes are declared (`http::api::login_type`) and read from the OpenAPI document; the
/// router hands the set to this layer as a request extension.
#[derive(Debug, Clone, Default)]
pub struct LoginRoutes(pub std::sync::Arc<std::collections::HashMap<String, Vec<Method>>>);

impl LoginRoutes {
    /// Whether `method path` is login-type (no allocation: the request path is borrowed).
    pub fn contains(&self, method: &Method, path: &str) -> bool {
        self.0
            .get(path)
            .is_some_and(|methods| methods.contains(method))
    }
}

fn num(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

/// `RateLimit-*` and the legacy `X-RateLimit-*` headers (and `Retry-After` when limited).
pub fn quota_headers(headers: &mut HeaderMap, q: &Quota, limited: bool) {
    let pairs = [
        ("ratelimit-limit", u64::from(q.limit)),
        ("ratelimit-remaining", u64::from(q.remaining)),
        ("ratelimit-reset", q.reset_secs),
        ("x-ratelimit-limit", u64::from(q.limit)),
        ("x-ratelimit-remaining", u64::from(q.remaining)),
        ("x-ratelimit-reset", q.reset_secs),
    ];
    for (name, value) in pairs {
        headers.insert(HeaderName::from_static(name), num(value));
    }
    if limited {
        headers.insert(axum::http::header::RETRY_AFTER, num(q.retry_after_secs));
    }
}

/// The 429 answer, with its headers.
pub fn limited_error(q: &Quota) -> ApiError {
    let mut headers = HeaderMap::new();
    quota_headers(&mut headers, q, true);
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
    for (name, value) in headers.iter() {
        e = e.with_header(name.clone(), value.clone());
    }
    e
}

fn is_login_type(request: &Request) -> bool {
    request
        .extensions()
        .get::<LoginRoutes>()
        .is_some_and(|routes| routes.contains(request.method(), request.uri().path()))
}

/// The key a request is counted under.
pub fn client_key(request: &Request) -> (Policy, String, Option<IpAddr>) {
    let ip = request
        .extensions()
        .get::<RequestContext>()
        .map(|c| c.client_ip);
    match request.extensions().get::<CurrentUser>() {
        // An API key has a budget of its own, apart from its owner's.
        Some(CurrentUser {
            method: AuthMethod::ApiKey { key_id, .. },
            ..
        }) => (Policy::General, format!("key:{key_id}"), ip),
        // A person in the console: the session budget, apart from the same user's tokens.
        Some(CurrentUser {
            method: AuthMethod::Session(_),
            user,
            ..
        }) => (Policy::Session, format!("user:{}", user.id), ip),
        Some(current) => (Policy::General, format!("user:{}", current.user.id), ip),
        None => (
            Policy::Anonymous,
            format!(
                "ip:{}",
                ip.map_or_else(|| "unknown".to_owned(), address_key)
            ),
            ip,
        ),
    }
}

fn audit_limited(
    state: &AppState,
    request_ctx: Option<&RequestContext>,
    policy: Policy,
    key: &str,
    path: &str,
) {
    let kind = key.split(':').next().unwrap_or("");
    state.audit.record(
        AuditEvent::new("ratelimit.exceeded", "denied")
            .context(request_ctx)
            .details(json!({"policy": policy.name(), "key_kind": kind, "path": path})),
    );
}

/// Strikes for a 401 or 429; audits the start of a penalty. True when this strike starts one.
pub async fn record_strike(state: &AppState, ctx: Option<&RequestContext>, key: &str) -> bool {
    let newly = state.limiter.strike(key).await;
    if newly {
        let kind = key.split(':').next().unwrap_or("");
        state.audit.record(
            AuditEvent::new("ratelimit.penalized", "denied")
                .context(ctx)
                .details(
                    json!({"key_kind": kind, "cooling_seconds": state.limiter.cooling_secs()}),
                ),
        );
    }
    newly
}

pub async fn rate_limit(
    state: &AppState,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let path = request.uri().path().to_owned();
    if !state.limiter.enabled()
        || UNCOUNTED.contains(&path.as_str())
        || UNCOUNTED_PREFIXES.iter().any(|p| path.starts_with(p))
    {
        return next(request).await;
    }
    let ctx = request.extensions().get::<RequestContext>().cloned();
    let (policy, key, ip) = client_key(&request);
    let login_type = is_login_type(&request);
    let mut checks = vec![(policy, key.clone(), state.limiter.check(policy, &key).await)];
    if login_type {
        let ip_key = format!(
            "ip:{}",
            ip.map_or_else(|| "unknown".to_owned(), address_key)
        );
        let v = state.limiter.check(Policy::Auth, &ip_key).await;
        checks.push((Policy::Auth, ip_key, v));
    }
    // Failing closed spares the login-type endpoints: their own budget is kept locally.
    if !login_type && checks.iter().any(|(_, _, v)| *v == Verdict::Unavailable) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Rate limiter unavailable")
            .into_response();
    }
    if let Some((p, k, Verdict::Limited(q))) = checks
        .iter()
        .find(|(_, _, v)| matches!(v, Verdict::Limited(_)))
    {
        audit_limited(state, ctx.as_ref(), *p, k, &path);
        // A penalty that starts with this refusal prices the request that follows it: the
        // Retry-After told must be long enough at that price.
        let newly_penalized = record_strike(state, ctx.as_ref(), &key).await;
        let q = if newly_penalized && k == &key && q.cost() == 1 {
            q.at_cost(state.limiter.penalty_factor())
        } else {
            *q
        };
        return limited_error(&q).into_response();
    }
    // The most constraining budget is the one the client hears about.
    let shown = checks
        .iter()
        .filter_map(|(_, _, v)| match v {
            Verdict::Allowed(q) => Some(*q),
            _ => None,
        })
        .min_by_key(|q| q.remaining);
    let mut response = next(request).await;
    if response.status() == StatusCode::UNAUTHORIZED
        || response.status() == StatusCode::TOO_MANY_REQUESTS
    {
        let _ = record_strike(state, ctx.as_ref(), &key).await;
    }
    if let Some(q) = shown {
        let limited = response.status() == StatusCode::TOO_MANY_REQUESTS;
        if !response.headers().contains_key("ratelimit-limit") {
            quota_headers(response.headers_mut(), &q, limited);
        }
    }
    response
}

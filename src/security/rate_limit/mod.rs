//! Rate limiting: GCRA budgets per client, shared through Redis when configured, in-process
//! otherwise or while Redis is down.
//!
//! Keys: the API key (`key:<id>`) or the authenticated user (`user:<id>`), else the client
//! address from the trusted-proxy resolver (`ip:<addr>`, IPv6 grouped by /64). Policies: the
//! general budget (authenticated principals and anonymous addresses configured separately), the
//! stricter budget of the login-type endpoints (by address here, by account in the handlers), and
//! strikes.
//!
//! Adaptive limiting: every 401 and every 429 is a strike against the client's key. A client that
//! collects more strikes than the strike budget allows (default 10 in 10 minutes) is penalized for
//! a cooling period (default 15 minutes): each of its requests then costs `KYROS_PENALTY_FACTOR`
//! (default 4) units of every budget, i.e. its budgets shrink to a quarter.

pub mod gcra;
pub mod memory;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use self::gcra::{Gcra, Quota, quota};
use self::memory::MemoryStore;
use self::redis::RedisStore;
use crate::audit::AuditEvent;
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::clock::SharedClock;
use crate::config::{RateLimitFailMode, Settings};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::redis::Redis;

/// Paths never counted (the load balancer's liveness probe).
const UNCOUNTED: &[&str] = &["/health"];
/// The login-type endpoints: the stricter per-address budget applies.
pub const AUTH_ROUTES: &[(&str, &str)] = &[
    ("POST", "/auth/login"),
    ("POST", "/auth/session"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/mfa/verify"),
    ("POST", "/auth/password"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Authenticated principals.
    General,
    /// Requests without valid credentials, by address.
    Anonymous,
    /// Login-type endpoints, by address.
    Auth,
    /// Login-type endpoints, by account name.
    AuthAccount,
    /// WebSocket handshakes, by principal or address.
    WebSocket,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::General => "general",
            Policy::Anonymous => "anon",
            Policy::Auth => "auth",
            Policy::AuthAccount => "acct",
            Policy::WebSocket => "ws",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Quota),
    Limited(Quota),
    /// Redis is down and the policy is to fail closed.
    Unavailable,
}

#[derive(Debug, Clone)]
struct Policies {
    general: Gcra,
    anonymous: Gcra,
    auth: Gcra,
    strikes: Gcra,
    penalty_factor: i64,
    cooling_us: i64,
}

pub struct Limiter {
    enabled: bool,
    fail_mode: RateLimitFailMode,
    policies: Policies,
    memory: Arc<MemoryStore>,
    redis: Option<RedisStore>,
    clock: SharedClock,
    local_decisions: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("enabled", &self.enabled)
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

/// The address part of a key: IPv6 clients are grouped by /64, the block one subscriber gets.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl Limiter {
    /// Builds the limiter and starts its idle-key eviction task.
    pub fn start(settings: &Settings, redis: Option<Redis>, clock: SharedClock) -> Arc<Limiter> {
        let rl = &settings.rate_limit;
        let production = settings.environment == crate::config::Environment::Production;
        let general = if production {
            Gcra::new(
                rl.production_requests,
                rl.production_window_secs,
                rl.production_burst,
            )
        } else {
            Gcra::new(rl.requests, rl.window_secs, rl.burst)
        };
        let anonymous = match rl.anonymous {
            Some((requests, window, burst)) => Gcra::new(requests, window, burst),
            None => general,
        };
        let limiter = Arc::new(Limiter {
            enabled: rl.enabled,
            fail_mode: rl.fail_mode,
            policies: Policies {
                general,
                anonymous,
                auth: Gcra::new(rl.auth_requests, rl.auth_window_secs, 0),
                strikes: Gcra::new(rl.strikes, rl.strike_window_secs, 0),
                penalty_factor: i64::from(rl.penalty_factor),
                cooling_us: rl.penalty_cooling_secs as i64 * 1_000_000,
            },
            memory: Arc::new(MemoryStore::new(rl.max_local_keys)),
            redis: redis.map(RedisStore::new),
            clock,
            local_decisions: AtomicU64::new(0),
        });
        let memory = Arc::clone(&limiter.memory);
        let clock = limiter.clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                memory.evict_idle(clock.now().timestamp_micros());
            }
        });
        limiter
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// Decisions made locally because Redis was down (or not configured: then always 0).
    pub fn local_fallbacks(&self) -> u64 {
        self.local_decisions.load(Ordering::Relaxed)
    }

    pub fn redis_healthy(&self) -> Option<bool> {
        self.redis.as_ref().map(|r| r.redis().is_healthy())
    }

    fn gcra(&self, policy: Policy) -> &Gcra {
        match policy {
            Policy::General | Policy::WebSocket => &self.policies.general,
            Policy::Anonymous => &self.policies.anonymous,
            Policy::Auth | Policy::AuthAccount => &self.policies.auth,
        }
    }

    /// One decision for `client` (e.g. `user:…`, `ip:…`) under `policy`.
    pub async fn check(&self, policy: Policy, client: &str) -> Verdict {
        let g = *self.gcra(policy);
        let now = self.clock.now().timestamp_micros();
        let bucket = format!("{}:{client}", policy.name());
        let factor = self.policies.penalty_factor;
        if let Some(store) = &self.redis {
            match store.run(&bucket, client, &g, now, 1, factor, None).await {
                Ok(r) => return verdict(&g, r.step, now),
                Err(_) => {
                    self.local_decisions.fetch_add(1, Ordering::Relaxed);
                    let login_type = matches!(policy, Policy::Auth | Policy::AuthAccount);
                    if self.fail_mode == RateLimitFailMode::Closed && !login_type {
                        return Verdict::Unavailable;
                    }
                }
            }
        }
        verdict(
            &g,
            self.memory.decide(&bucket, client, &g, now, 1, factor),
            now,
        )
    }

    /// Counts a strike against `client`; true when this strike starts a penalty.
    pub async fn strike(&self, client: &str) -> bool {
        let g = self.policies.strikes;
        let now = self.clock.now().timestamp_micros();
        let until = now + self.policies.cooling_us;
        let bucket = format!("strike:{client}");
        if let Some(store) = &self.redis {
            match store.run(&bucket, client, &g, now, 1, 1, Some(until)).await {
                Ok(r) => return r.newly_penalized,
                Err(_) => {
                    self.local_decisions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.memory.strike(&bucket, client, &g, now, until)
    }
}

fn verdict(g: &Gcra, step: gcra::Step, now: i64) -> Verdict {
    let q = quota(g, step, now);
    if step.allowed {
        Verdict::Allowed(q)
    } else {
        Verdict::Limited(q)
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

fn is_auth_route(method: &Method, path: &str) -> bool {
    AUTH_ROUTES
        .iter()
        .any(|(m, p)| *m == method.as_str() && *p == path)
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
                .details(json!({"key_kind": kind, "cooling_seconds": state.limiter.policies.cooling_us / 1_000_000})),
        );
    }
    newly
}

pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if !state.limiter.enabled() || UNCOUNTED.contains(&path.as_str()) {
        return next.run(request).await;
    }
    let ctx = request.extensions().get::<RequestContext>().cloned();
    let (policy, key, ip) = client_key(&request);
    let login_type = is_auth_route(request.method(), &path);
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
        audit_limited(&state, ctx.as_ref(), *p, k, &path);
        // A penalty that starts with this refusal prices the request that follows it: the
        // Retry-After told must be long enough at that price.
        let newly_penalized = record_strike(&state, ctx.as_ref(), &key).await;
        let q = if newly_penalized && k == &key && q.cost() == 1 {
            q.at_cost(state.limiter.policies.penalty_factor)
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
    let mut response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED
        || response.status() == StatusCode::TOO_MANY_REQUESTS
    {
        let _ = record_strike(&state, ctx.as_ref(), &key).await;
    }
    if let Some(q) = shown {
        let limited = response.status() == StatusCode::TOO_MANY_REQUESTS;
        if !response.headers().contains_key("ratelimit-limit") {
            quota_headers(response.headers_mut(), &q, limited);
        }
    }
    response
}

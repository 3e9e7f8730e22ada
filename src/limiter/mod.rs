//! The rate limiter: GCRA budgets per client key, shared through Redis when configured,
//! in-process otherwise or while Redis is down, with the adaptive penalty. A decision engine
//! only: the request-path middleware (`security::rate_limit`) and the login service
//! (`auth::login`, per-account budgets) ask it.
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

use self::gcra::{Gcra, Quota, quota};
use self::memory::MemoryStore;
use self::redis::RedisStore;
use crate::clock::SharedClock;
use crate::config::{RateLimitFailMode, Settings};
use crate::store::redis::Redis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Authenticated principals (bearer tokens, API keys).
    General,
    /// People's browser sessions (the console), by user.
    Session,
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
    pub fn name(self) -> &'static str {
        match self {
            Policy::General => "general",
            Policy::Session => "session",
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

/// The budgets in effect: replaced as a whole by a reload ([`Limiter::reconfigure`]). The state
/// of each client (its GCRA theoretical arrival time) is kept, so a new budget applies from
/// the next request without forgetting what a client has used.
#[derive(Debug, Clone)]
struct Policies {
    enabled: bool,
    fail_mode: RateLimitFailMode,
    general: Gcra,
    session: Gcra,
    anonymous: Gcra,
    auth: Gcra,
    strikes: Gcra,
    penalty_factor: i64,
    cooling_us: i64,
}

pub struct Limiter {
    policies: arc_swap::ArcSwap<Policies>,
    memory: Arc<MemoryStore>,
    redis: Option<RedisStore>,
    clock: SharedClock,
    local_decisions: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("enabled", &self.enabled())
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

impl Policies {
    fn of(settings: &Settings) -> Policies {
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
        let (requests, window, burst) = rl.session;
        Policies {
            enabled: rl.enabled,
            fail_mode: rl.fail_mode,
            general,
            session: Gcra::new(requests, window, burst),
            anonymous,
            auth: Gcra::new(rl.auth_requests, rl.auth_window_secs, 0),
            strikes: Gcra::new(rl.strikes, rl.strike_window_secs, 0),
            penalty_factor: i64::from(rl.penalty_factor),
            cooling_us: rl.penalty_cooling_secs as i64 * 1_000_000,
        }
    }
}

impl Limiter {
    /// Puts the budgets of `settings` in effect from the next decision (a settings reload).
    /// `KYROS_RATE_LIMIT_MAX_KEYS` applies at start-up only.
    pub fn reconfigure(&self, settings: &Settings) {
        self.policies.store(Arc::new(Policies::of(settings)));
    }

    /// Builds the limiter and starts its idle-key eviction task.
    pub fn start(settings: &Settings, redis: Option<Redis>, clock: SharedClock) -> Arc<Limiter> {
        let limiter = Arc::new(Limiter {
            policies: arc_swap::ArcSwap::from_pointee(Policies::of(settings)),
            memory: Arc::new(MemoryStore::new(settings.rate_limit.max_local_keys)),
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
        self.policies.load().enabled
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

    /// One decision for `client` (e.g. `user:…`, `ip:…`) under `policy`.
    pub async fn check(&self, policy: Policy, client: &str) -> Verdict {
        let (g, factor, fail_mode) = {
            let p = self.policies.load();
            let g = match policy {
                Policy::General | Policy::WebSocket => p.general,
                Policy::Session => p.session,
                Policy::Anonymous => p.anonymous,
                Policy::Auth | Policy::AuthAccount => p.auth,
            };
            (g, p.penalty_factor, p.fail_mode)
        };
        let now = self.clock.now().timestamp_micros();
        let bucket = format!("{}:{client}", policy.name());
        if let Some(store) = &self.redis {
            match store.run(&bucket, client, &g, now, 1, factor, None).await {
                Ok(r) => return verdict(&g, r.step, now),
                Err(_) => {
                    self.local_decisions.fetch_add(1, Ordering::Relaxed);
                    let login_type = matches!(policy, Policy::Auth | Policy::AuthAccount);
                    if fail_mode == RateLimitFailMode::Closed && !login_type {
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

    /// The cooling period of a penalty, in seconds.
    pub fn cooling_secs(&self) -> i64 {
        self.policies.load().cooling_us / 1_000_000
    }

    /// The cost of a request while penalized.
    pub fn penalty_factor(&self) -> i64 {
        self.policies.load().penalty_factor
    }

    /// Counts a strike against `client`; true when this strike starts a penalty.
    pub async fn strike(&self, client: &str) -> bool {
        let (g, cooling_us) = {
            let p = self.policies.load();
            (p.strikes, p.cooling_us)
        };
        let now = self.clock.now().timestamp_micros();
        let until = now + cooling_us;
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

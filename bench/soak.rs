//! Soak test of a multi-instance deployment: a mixed workload for a configurable time against
//! every instance, classifying every response, sampling the instances' memory, and measuring the
//! accuracy of the shared rate limiter. Started by `bench/soak.sh` (which builds the deployment
//! and writes `docs/reliability.md`); run by hand it needs running instances:
//!
//!   KYROS_SOAK_ADMIN_PASSWORD=… cargo run --release --example soak -- \
//!       --urls http://127.0.0.1:18001,http://127.0.0.1:18002 --pids 1234,1235 \
//!       --admin soakadmin --seconds 60 --report /tmp/soak.md
//!
//! The budgets the instances were started with are read from this process's environment under
//! the service's own names (`KYROS_ANON_RATE_LIMIT_REQUESTS`, …), so the accuracy figures use the
//! real configuration.
//!
//! Workload (every simulated client sends its own `X-Forwarded-For` address; the instances trust
//! 127.0.0.1 as a proxy): users log in (bearer; every third cycle also a cookie session with a
//! CSRF-protected write and a logout), submit, read and list jobs, log out and, every two minutes,
//! check that their revoked token is refused by another instance; agents claim and complete jobs
//! with an API key; admin WebSocket subscribers follow every job event; one attacker guesses a
//! victim's password, another floods `GET /` anonymously. Every response is classified against
//! the statuses expected for its kind; anything else is an error (with a sample, never a
//! credential). Exit code: 0 when every check passed, 1 when one failed, 2 when the run could not
//! start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{RwLock, Semaphore, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A job counts as expected on a WebSocket connection when it was created entirely while the
/// subscription was live, with this much time left for the event to arrive.
const DELIVERY_GRACE: Duration = Duration::from_secs(2);
/// Time given to the last events to reach the subscribers before they close.
const FINAL_DRAIN: Duration = Duration::from_secs(3);
/// Longest time the agents get to empty the queue after the workload stops.
const AGENT_DRAIN_MAX: Duration = Duration::from_secs(60);
/// A user checks that its revoked token is refused at most this often (each check is a 401,
/// i.e. a strike against the user's address in the adaptive limiter).
const REVOKED_CHECK_EVERY: Duration = Duration::from_secs(120);
/// Samples of each error kind kept for the report.
const SAMPLES_PER_ERROR: usize = 3;

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
    urls: Vec<String>,
    pids: Vec<u32>,
    admin: String,
    admin_password: String,
    seconds: u64,
    users: usize,
    agents: usize,
    ws_per_instance: usize,
    flood_rps: f64,
    attack_rps: f64,
    report: Option<String>,
    postgres: String,
    redis: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak --urls U1,U2,… --pids P1,P2,… --admin NAME --seconds N [--users N] [--agents N] \
         [--ws-per-instance N] [--flood-rps R] [--attack-rps R] [--report FILE] [--postgres DESC] \
         [--redis DESC]   (admin password in KYROS_SOAK_ADMIN_PASSWORD)"
    );
    std::process::exit(2);
}

fn args() -> Args {
    let mut a = Args {
        urls: Vec::new(),
        pids: Vec::new(),
        admin: String::new(),
        admin_password: std::env::var("KYROS_SOAK_ADMIN_PASSWORD").unwrap_or_default(),
        seconds: 600,
        users: 8,
        agents: 3,
        ws_per_instance: 50,
        flood_rps: 40.0,
        attack_rps: 4.0,
        report: None,
        postgres: "unknown".into(),
        redis: "unknown".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { usage() };
        let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| usage()) };
        match flag.as_str() {
            "--urls" => {
                a.urls = value
                    .split(',')
                    .map(|u| u.trim().trim_end_matches('/').to_owned())
                    .filter(|u| !u.is_empty())
                    .collect()
            }
            "--pids" => {
                a.pids = value
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| p.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--admin" => a.admin = value,
            "--seconds" => a.seconds = num(&value) as u64,
            "--users" => a.users = num(&value) as usize,
            "--agents" => a.agents = num(&value) as usize,
            "--ws-per-instance" => a.ws_per_instance = num(&value) as usize,
            "--flood-rps" => a.flood_rps = num(&value),
            "--attack-rps" => a.attack_rps = num(&value),
            "--report" => a.report = Some(value),
            "--postgres" => a.postgres = value,
            "--redis" => a.redis = value,
            _ => usage(),
        }
    }
    if a.urls.is_empty() || a.admin.is_empty() || a.admin_password.is_empty() || a.seconds == 0 {
        usage();
    }
    if a.users == 0 || a.agents == 0 || a.flood_rps <= 0.0 || a.attack_rps <= 0.0 {
        usage();
    }
    a
}

/// The rate-limit budgets of the deployment, from the service's variable names.
#[derive(Debug, Clone)]
struct Budgets {
    vars: Vec<(&'static str, String)>,
    anon_requests: f64,
    anon_window: f64,
    anon_burst: f64,
    penalty_factor: f64,
    penalty_strikes: f64,
    penalty_window: f64,
    penalty_cooling: f64,
}

const BUDGET_VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_REQUESTS", "100"),
    ("RATE_LIMIT_WINDOW", "900"),
    ("RATE_LIMIT_BURST", "0"),
    ("AUTH_RATE_LIMIT_REQUESTS", "10"),
    ("AUTH_RATE_LIMIT_WINDOW", "60"),
    ("KYROS_ANON_RATE_LIMIT_REQUESTS", ""),
    ("KYROS_ANON_RATE_LIMIT_WINDOW", "900"),
    ("KYROS_ANON_RATE_LIMIT_BURST", "0"),
    ("KYROS_PENALTY_STRIKES", "10"),
    ("KYROS_PENALTY_WINDOW", "600"),
    ("KYROS_PENALTY_COOLING", "900"),
    ("KYROS_PENALTY_FACTOR", "4"),
    ("KYROS_LOCKOUT_THRESHOLD", "5"),
    ("KYROS_LOCKOUT_BASE_SECONDS", "60"),
    ("KYROS_LOCKOUT_MAX_SECONDS", "3600"),
    ("KYROS_JOB_LEASE_SECS", "60"),
    ("ACCESS_TOKEN_EXPIRE_MINUTES", "120"),
];

fn budgets() -> Budgets {
    let mut vars = Vec::new();
    let mut get = HashMap::new();
    for (name, default) in BUDGET_VARS {
        let v = std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_string());
        get.insert(*name, v.clone());
        vars.push((*name, if v.is_empty() { "(general)".into() } else { v }));
    }
    let f = |name: &str| -> f64 { get.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // Without a separate anonymous budget the general one applies (as in the service).
    let (anon_requests, anon_window, anon_burst) = if f("KYROS_ANON_RATE_LIMIT_REQUESTS") > 0.0 {
        (
            f("KYROS_ANON_RATE_LIMIT_REQUESTS"),
            f("KYROS_ANON_RATE_LIMIT_WINDOW"),
            f("KYROS_ANON_RATE_LIMIT_BURST"),
        )
    } else {
        (
            f("RATE_LIMIT_REQUESTS"),
            f("RATE_LIMIT_WINDOW"),
            f("RATE_LIMIT_BURST"),
        )
    };
    Budgets {
        vars,
        anon_requests,
        anon_window,
        anon_burst,
        penalty_factor: f("KYROS_PENALTY_FACTOR").max(1.0),
        penalty_strikes: f("KYROS_PENALTY_STRIKES").max(1.0),
        penalty_window: f("KYROS_PENALTY_WINDOW"),
        penalty_cooling: f("KYROS_PENALTY_COOLING"),
    }
}

/// The service's limiter replayed on the flood's send times: the GCRA of the anonymous budget
/// (`src/security/rate_limit/gcra.rs`), a strike for every refusal, and past the strike budget a
/// penalty during which each request costs `KYROS_PENALTY_FACTOR` units (the Lua script of
/// `redis.rs`). Returns how many requests one exact limiter shared by every instance admits.
fn replay_limiter(b: &Budgets, sends_us: &[i64]) -> u64 {
    struct G {
        t: i64,
        tau: i64,
    }
    let gcra = |requests: f64, window: f64, burst: f64| {
        let requests = requests.max(1.0) as i64;
        let t = ((window as i64) * 1_000_000 / requests).max(1);
        G {
            t,
            tau: t * (requests + burst as i64 - 1),
        }
    };
    let anon = gcra(b.anon_requests, b.anon_window, b.anon_burst);
    let strikes = gcra(b.penalty_strikes, b.penalty_window, 0.0);
    let cooling = (b.penalty_cooling * 1e6) as i64;
    let factor = b.penalty_factor as i64;
    let (mut tat, mut strike_tat, mut penalty_until) = (i64::MIN, i64::MIN, i64::MIN);
    let mut admitted = 0;
    for &now in sends_us {
        let cost = if penalty_until > now { factor } else { 1 };
        let new_tat = tat.max(now) + anon.t * cost;
        if now >= new_tat - anon.tau - anon.t {
            tat = new_tat;
            admitted += 1;
        } else {
            let new_strike = strike_tat.max(now) + strikes.t;
            if now < new_strike - strikes.tau - strikes.t {
                penalty_until = now + cooling;
            } else {
                strike_tat = new_strike;
            }
        }
    }
    admitted
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// xorshift64*: think times and choices, nothing secret.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(v: &[f32]) -> Vec<f32> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "**FAIL**" }
}

/// A `/proc/<pid>/status` field (VmRSS, VmHWM in KiB; Threads).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// A response body fit for the report: JSON fields that could hold a credential are replaced,
/// non-JSON text that looks like it holds one is withheld, and the rest is cut short.
fn redact(body: &str) -> String {
    fn scrub(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    let sensitive = [
                        "token", "key", "password", "secret", "csrf", "ticket", "cookie",
                    ]
                    .iter()
                    .any(|s| k.contains(s));
                    if sensitive && !val.is_null() {
                        *val = json!("[redacted]");
                    } else {
                        scrub(val);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    let text = match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            scrub(&mut v);
            v.to_string()
        }
        Err(_) if body.contains("eyJ") || body.contains("kyr_") => {
            "[non-JSON body withheld: it may contain a credential]".into()
        }
        Err(_) => body.replace(['\n', '\r'], " "),
    };
    let mut out: String = text.chars().take(240).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out.replace('|', "\\|")
}

fn uuid_u128(s: &str) -> Option<u128> {
    uuid::Uuid::parse_str(s).ok().map(|u| u.as_u128())
}

// ---------------------------------------------------------------------------------------------
// Request kinds and the recorder

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Setup,
    Login,
    SessionLogin,
    SessionWrite,
    SessionLogout,
    Logout,
    RevokedCheck,
    JobCreate,
    JobRead,
    JobList,
    Claim,
    Complete,
    WsConnect,
    WsMessage,
    AttackLogin,
    Flood,
    Metrics,
}

impl Kind {
    const ALL: [Kind; 17] = [
        Kind::Setup,
        Kind::Login,
        Kind::SessionLogin,
        Kind::SessionWrite,
        Kind::SessionLogout,
        Kind::Logout,
        Kind::RevokedCheck,
        Kind::JobCreate,
        Kind::JobRead,
        Kind::JobList,
        Kind::Claim,
        Kind::Complete,
        Kind::WsConnect,
        Kind::WsMessage,
        Kind::AttackLogin,
        Kind::Flood,
        Kind::Metrics,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Setup => "setup",
            Kind::Login => "login",
            Kind::SessionLogin => "session login",
            Kind::SessionWrite => "session write (CSRF)",
            Kind::SessionLogout => "session logout",
            Kind::Logout => "logout",
            Kind::RevokedCheck => "revoked token",
            Kind::JobCreate => "job create",
            Kind::JobRead => "job read",
            Kind::JobList => "job list",
            Kind::Claim => "agent claim",
            Kind::Complete => "agent complete",
            Kind::WsConnect => "ws handshake",
            Kind::WsMessage => "ws messages",
            Kind::AttackLogin => "attack: wrong password",
            Kind::Flood => "attack: anonymous flood",
            Kind::Metrics => "metrics",
        }
    }

    fn request(self) -> &'static str {
        match self {
            Kind::Setup => "admin login, POST /api/v1/admin/users, POST /api/v1/api-keys",
            Kind::Login => "POST /auth/login",
            Kind::SessionLogin => "POST /auth/session",
            Kind::SessionWrite => "POST /api/v1/jobs (cookie + X-CSRF-Token)",
            Kind::SessionLogout => "DELETE /auth/session",
            Kind::Logout => "POST /auth/logout",
            Kind::RevokedCheck => "GET /auth/user, logged-out token, other instance",
            Kind::JobCreate => "POST /api/v1/jobs",
            Kind::JobRead => "GET /api/v1/jobs/{id} (other instance)",
            Kind::JobList => "GET /api/v1/jobs?limit=20",
            Kind::Claim => "POST /api/v1/agents/claim",
            Kind::Complete => "POST /api/v1/agents/jobs/{id}/complete",
            Kind::WsConnect => "GET /ws (upgrade, bearer)",
            Kind::WsMessage => "frames received on /ws",
            Kind::AttackLogin => "POST /auth/login, victim, wrong password",
            Kind::Flood => "GET / anonymous",
            Kind::Metrics => "GET /metrics (administrator), at the end",
        }
    }

    fn expected(self) -> &'static [u16] {
        match self {
            Kind::Setup => &[200, 201],
            Kind::Login | Kind::SessionLogin | Kind::JobRead | Kind::JobList => &[200],
            Kind::Logout | Kind::Complete => &[200],
            Kind::SessionWrite | Kind::JobCreate => &[201],
            Kind::SessionLogout => &[204],
            Kind::RevokedCheck => &[401],
            Kind::Claim => &[200, 204],
            Kind::WsConnect => &[101],
            Kind::WsMessage => &[],
            Kind::AttackLogin => &[401, 429],
            Kind::Flood => &[200, 429],
            Kind::Metrics => &[200],
        }
    }

    fn is_attack(self) -> bool {
        matches!(self, Kind::AttackLogin | Kind::Flood)
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Status(u16),
    Timeout,
    Transport(String),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Transport(_) => "transport error".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Sample {
    at_secs: f64,
    instance: usize,
    method: String,
    path: String,
    outcome: String,
    body: String,
}

#[derive(Default)]
struct KindTotals {
    count: u64,
    errors: u64,
    statuses: BTreeMap<String, u64>,
    lat_ms: Vec<f32>,
}

#[derive(Default)]
struct IntervalStats {
    count: u64,
    errors: u64,
    lat_ms: Vec<f32>,
}

#[derive(Default)]
struct ErrorBucket {
    count: u64,
    samples: Vec<Sample>,
}

#[derive(Default)]
struct RecInner {
    totals: BTreeMap<Kind, KindTotals>,
    interval: BTreeMap<Kind, IntervalStats>,
    errors: BTreeMap<(Kind, String), ErrorBucket>,
    per_instance: BTreeMap<usize, (u64, u64)>,
}

struct Recorder {
    started: Instant,
    inner: Mutex<RecInner>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            inner: Mutex::new(RecInner::default()),
        }
    }

    /// Classifies one response; true when its status is expected for its kind.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        kind: Kind,
        instance: usize,
        method: &str,
        path: &str,
        outcome: &Outcome,
        latency: Duration,
        body: &str,
    ) -> bool {
        let expected = matches!(outcome, Outcome::Status(s) if kind.expected().contains(s));
        let lat = latency.as_secs_f32() * 1000.0;
        let mut g = lock(&self.inner);
        let t = g.totals.entry(kind).or_default();
        t.count += 1;
        *t.statuses.entry(outcome.label()).or_default() += 1;
        t.lat_ms.push(lat);
        if !expected {
            t.errors += 1;
        }
        let i = g.interval.entry(kind).or_default();
        i.count += 1;
        i.lat_ms.push(lat);
        if !expected {
            i.errors += 1;
        }
        let per = g.per_instance.entry(instance).or_default();
        per.0 += 1;
        if !expected {
            per.1 += 1;
        }
        if !expected {
            let reason = match outcome {
                Outcome::Status(s) => format!("unexpected status {s}"),
                Outcome::Timeout => "timeout".into(),
                Outcome::Transport(_) => "transport error".into(),
            };
            let body = match outcome {
                Outcome::Transport(e) => e.clone(),
                _ => redact(body),
            };
            let sample = Sample {
                at_secs: self.started.elapsed().as_secs_f64(),
                instance,
                method: method.to_owned(),
                path: path.to_owned(),
                outcome: outcome.label(),
                body,
            };
            let b = g.errors.entry((kind, reason)).or_default();
            b.count += 1;
            if b.samples.len() < SAMPLES_PER_ERROR {
                b.samples.push(sample);
            }
        }
        expected
    }

    /// An error that is not an HTTP status (a WebSocket frame, a duplicate claim…).
    fn error(&self, kind: Kind, reason: &str, instance: usize, path: &str, detail: &str) {
        let mut g = lock(&self.inner);
        let t = g.totals.entry(kind).or_default();
        t.errors += 1;
        g.interval.entry(kind).or_default().errors += 1;
        g.per_instance.entry(instance).or_default().1 += 1;
        let sample = Sample {
            at_secs: self.started.elapsed().as_secs_f64(),
            instance,
            method: "-".into(),
            path: path.to_owned(),
            outcome: "-".into(),
            body: redact(detail),
        };
        let b = g.errors.entry((kind, reason.to_owned())).or_default();
        b.count += 1;
        if b.samples.len() < SAMPLES_PER_ERROR {
            b.samples.push(sample);
        }
    }

    /// A frame received without error (counted, no latency).
    fn frame(&self, instance: usize) {
        let mut g = lock(&self.inner);
        g.totals.entry(Kind::WsMessage).or_default().count += 1;
        *g.totals
            .entry(Kind::WsMessage)
            .or_default()
            .statuses
            .entry("frame".into())
            .or_default() += 1;
        g.interval.entry(Kind::WsMessage).or_default().count += 1;
        g.per_instance.entry(instance).or_default().0 += 1;
    }

    fn take_interval(&self) -> BTreeMap<Kind, IntervalStats> {
        std::mem::take(&mut lock(&self.inner).interval)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared context and the HTTP helper

#[derive(Debug, Clone, Copy)]
struct JobRec {
    id: u128,
    sent: Instant,
    done: Instant,
}

struct Ctx {
    client: reqwest::Client,
    urls: Vec<String>,
    rr: AtomicUsize,
    rec: Recorder,
    jobs: Mutex<Vec<JobRec>>,
    claimed: Mutex<HashSet<u128>>,
    completed: Mutex<HashSet<u128>>,
    duplicate_claims: AtomicU64,
    admin_token: RwLock<String>,
}

enum Auth<'a> {
    Anonymous,
    Bearer(&'a str),
    ApiKey(&'a str),
    Session { cookie: &'a str, csrf: &'a str },
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    expected: bool,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Ctx {
    fn pick(&self) -> usize {
        self.rr.fetch_add(1, Ordering::Relaxed) % self.urls.len()
    }

    fn other(&self, instance: usize) -> usize {
        (instance + 1) % self.urls.len()
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        kind: Kind,
        instance: usize,
        method: Method,
        path: &str,
        ip: &str,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Option<Reply> {
        let url = format!("{}{}", self.urls[instance], path);
        let mut rb = self
            .client
            .request(method.clone(), &url)
            .header("x-forwarded-for", ip);
        rb = match auth {
            Auth::Anonymous => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::ApiKey(k) => rb.header("x-api-key", k),
            Auth::Session { cookie, csrf } => {
                rb.header("cookie", cookie).header("x-csrf-token", csrf)
            }
        };
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let start = Instant::now();
        let result = match rb.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.text().await {
                    Ok(text) => Ok((status, headers, text)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let latency = start.elapsed();
        match result {
            Ok((status, headers, text)) => {
                let expected = self.rec.record(
                    kind,
                    instance,
                    method.as_str(),
                    path,
                    &Outcome::Status(status),
                    latency,
                    &text,
                );
                Some(Reply {
                    status,
                    headers,
                    body: text,
                    expected,
                })
            }
            Err(e) => {
                let outcome = if e.is_timeout() {
                    Outcome::Timeout
                } else {
                    let mut detail = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        let _ = write!(detail, ": {s}");
                        source = s.source();
                    }
                    Outcome::Transport(detail)
                };
                self.rec
                    .record(kind, instance, method.as_str(), path, &outcome, latency, "");
                None
            }
        }
    }

    fn record_job(&self, reply: &Reply, sent: Instant) {
        if let Some(id) = reply.json()["id"].as_str().and_then(uuid_u128) {
            lock(&self.jobs).push(JobRec {
                id,
                sent,
                done: Instant::now(),
            });
        }
    }
}

/// Cookie values from `Set-Cookie` headers.
fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?.trim();
            let (n, value) = first.split_once('=')?;
            (n == name && !value.is_empty()).then(|| value.to_owned())
        })
}

async fn sleep_until_or(deadline: Instant, d: Duration) {
    let now = Instant::now();
    if now < deadline {
        tokio::time::sleep(d.min(deadline - now)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

async fn login(
    ctx: &Ctx,
    kind: Kind,
    instance: usize,
    ip: &str,
    user: &str,
    password: &str,
) -> Option<String> {
    let reply = ctx
        .call(
            kind,
            instance,
            Method::POST,
            "/auth/login",
            ip,
            Auth::Anonymous,
            Some(&json!({"username": user, "password": password})),
        )
        .await?;
    if !reply.expected {
        return None;
    }
    reply.json()["access_token"].as_str().map(str::to_owned)
}

struct Setup {
    users: Vec<(String, String)>,
    victim: String,
    agent_key: String,
}

async fn setup(ctx: &Ctx, a: &Args, run: &str) -> Result<Setup, String> {
    let ip = "10.0.0.1";
    let token = login(ctx, Kind::Setup, 0, ip, &a.admin, &a.admin_password)
        .await
        .ok_or("the administrator could not log in")?;
    *ctx.admin_token.write().await = token.clone();
    let mut users = Vec::new();
    for i in 0..=a.users {
        let name = if i == a.users {
            format!("soak_victim_{run}")
        } else {
            format!("soak_user{i}_{run}")
        };
        let password = format!("Pw-{}", uuid::Uuid::new_v4().simple());
        let reply = ctx
            .call(
                Kind::Setup,
                i % ctx.urls.len(),
                Method::POST,
                "/api/v1/admin/users",
                ip,
                Auth::Bearer(&token),
                Some(&json!({"username": name, "email": format!("{name}@soak.kyros.test"), "password": password, "role": "user"})),
            )
            .await
            .ok_or("creating a user failed")?;
        if !reply.expected {
            return Err(format!("creating a user answered {}", reply.status));
        }
        users.push((name, password));
    }
    let victim = users.pop().map(|(n, _)| n).ok_or("no victim")?;
    let reply = ctx
        .call(
            Kind::Setup,
            0,
            Method::POST,
            "/api/v1/api-keys",
            ip,
            Auth::Bearer(&token),
            Some(&json!({"name": "soak-agent", "scopes": ["jobs:claim", "jobs:read"]})),
        )
        .await
        .ok_or("creating the agent key failed")?;
    if !reply.expected {
        return Err(format!("creating the agent key answered {}", reply.status));
    }
    let agent_key = reply.json()["key"]
        .as_str()
        .ok_or("no key in the API-key answer")?
        .to_owned();
    Ok(Setup {
        users,
        victim,
        agent_key,
    })
}

/// Keeps the subscribers' administrator token fresh for runs longer than its lifetime.
async fn admin_refresher(
    ctx: Arc<Ctx>,
    a_admin: String,
    a_password: String,
    stop: Arc<AtomicBool>,
) {
    let every = Duration::from_secs(30 * 60);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if last.elapsed() >= every {
            if let Some(t) = login(&ctx, Kind::Setup, 0, "10.0.0.1", &a_admin, &a_password).await {
                *ctx.admin_token.write().await = t;
            }
            last = Instant::now();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Legitimate users

async fn user_worker(ctx: Arc<Ctx>, i: usize, user: String, password: String, deadline: Instant) {
    let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
    let mut rng = Rng::new();
    let mut cycle = 0u64;
    let mut last_revoked_check: Option<Instant> = None;
    // Stagger the start so the users do not move in lock step.
    tokio::time::sleep(Duration::from_millis(rng.below(2000))).await;
    while Instant::now() < deadline {
        cycle += 1;
        let Some(token) = login(&ctx, Kind::Login, ctx.pick(), &ip, &user, &password).await else {
            sleep_until_or(deadline, Duration::from_secs(2)).await;
            continue;
        };
        for n in 0..1 + rng.below(3) {
            let instance = ctx.pick();
            let sent = Instant::now();
            let Some(reply) = ctx
                .call(
                    Kind::JobCreate,
                    instance,
                    Method::POST,
                    "/api/v1/jobs",
                    &ip,
                    Auth::Bearer(&token),
                    Some(&json!({"title": format!("soak {user} {cycle}.{n}"), "priority": rng.below(5)})),
                )
                .await
            else {
                continue;
            };
            if !reply.expected {
                continue;
            }
            ctx.record_job(&reply, sent);
            if let Some(id) = reply.json()["id"].as_str() {
                ctx.call(
                    Kind::JobRead,
                    ctx.other(instance),
                    Method::GET,
                    &format!("/api/v1/jobs/{id}"),
                    &ip,
                    Auth::Bearer(&token),
                    None,
                )
                .await;
            }
        }
        ctx.call(
            Kind::JobList,
            ctx.pick(),
            Method::GET,
            "/api/v1/jobs?limit=20",
            &ip,
            Auth::Bearer(&token),
            None,
        )
        .await;
        if cycle.is_multiple_of(3) {
            session_flow(&ctx, &ip, &user, &password, cycle).await;
        }
        let logout_at = ctx.pick();
        let logged_out = ctx
            .call(
                Kind::Logout,
                logout_at,
                Method::POST,
                "/auth/logout",
                &ip,
                Auth::Bearer(&token),
                None,
            )
            .await
            .is_some_and(|r| r.expected);
        if logged_out && last_revoked_check.is_none_or(|t| t.elapsed() >= REVOKED_CHECK_EVERY) {
            last_revoked_check = Some(Instant::now());
            // Revocations reach the other instances by pub/sub at once, by polling within 0.5 s.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ctx.call(
                Kind::RevokedCheck,
                ctx.other(logout_at),
                Method::GET,
                "/auth/user",
                &ip,
                Auth::Bearer(&token),
                None,
            )
            .await;
        }
        sleep_until_or(deadline, Duration::from_millis(1500 + rng.below(2000))).await;
    }
}

async fn session_flow(ctx: &Ctx, ip: &str, user: &str, password: &str, cycle: u64) {
    let Some(reply) = ctx
        .call(
            Kind::SessionLogin,
            ctx.pick(),
            Method::POST,
            "/auth/session",
            ip,
            Auth::Anonymous,
            Some(&json!({"username": user, "password": password})),
        )
        .await
    else {
        return;
    };
    if !reply.expected {
        return;
    }
    let (Some(session), Some(csrf)) = (
        set_cookie(&reply.headers, "kyros_session"),
        set_cookie(&reply.headers, "csrf_token"),
    ) else {
        ctx.rec.error(
            Kind::SessionLogin,
            "session login without kyros_session/csrf_token cookies",
            0,
            "/auth/session",
            "",
        );
        return;
    };
    let cookie = format!("kyros_session={session}; csrf_token={csrf}");
    let sent = Instant::now();
    if let Some(reply) = ctx
        .call(
            Kind::SessionWrite,
            ctx.pick(),
            Method::POST,
            "/api/v1/jobs",
            ip,
            Auth::Session {
                cookie: &cookie,
                csrf: &csrf,
            },
            Some(&json!({"title": format!("soak {user} session {cycle}")})),
        )
        .await
        && reply.expected
    {
        ctx.record_job(&reply, sent);
    }
    ctx.call(
        Kind::SessionLogout,
        ctx.pick(),
        Method::DELETE,
        "/auth/session",
        ip,
        Auth::Session {
            cookie: &cookie,
            csrf: &csrf,
        },
        None,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Agents

async fn agent_worker(
    ctx: Arc<Ctx>,
    a: usize,
    key: String,
    draining: Arc<AtomicBool>,
    drain_deadline: Arc<Mutex<Option<Instant>>>,
) {
    let ip = format!("10.2.0.{}", a + 1);
    let mut idle_while_draining = 0;
    loop {
        if draining.load(Ordering::Relaxed) {
            let past = lock(&drain_deadline).is_some_and(|d| Instant::now() >= d);
            if idle_while_draining >= 2 || past {
                return;
            }
        }
        let Some(reply) = ctx
            .call(
                Kind::Claim,
                ctx.pick(),
                Method::POST,
                "/api/v1/agents/claim",
                &ip,
                Auth::ApiKey(&key),
                None,
            )
            .await
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        match reply.status {
            200 => {
                idle_while_draining = 0;
                let job = reply.json();
                let Some(id) = job["id"].as_str().map(str::to_owned) else {
                    ctx.rec.error(
                        Kind::Claim,
                        "claim answer without a job id",
                        0,
                        "/api/v1/agents/claim",
                        &reply.body,
                    );
                    continue;
                };
                let Some(key128) = uuid_u128(&id) else {
                    continue;
                };
                if !lock(&ctx.claimed).insert(key128) {
                    ctx.duplicate_claims.fetch_add(1, Ordering::Relaxed);
                    ctx.rec.error(
                        Kind::Claim,
                        "job claimed twice",
                        0,
                        &format!("/api/v1/agents/claim → job {id}"),
                        &reply.body,
                    );
                }
                let done = ctx
                    .call(
                        Kind::Complete,
                        ctx.pick(),
                        Method::POST,
                        &format!("/api/v1/agents/jobs/{id}/complete"),
                        &ip,
                        Auth::ApiKey(&key),
                        Some(&json!({"result": {"agent": a, "ok": true}, "lease_token": job["lease_token"]})),
                    )
                    .await;
                if done.is_some_and(|r| r.expected) {
                    lock(&ctx.completed).insert(key128);
                }
            }
            _ => {
                if draining.load(Ordering::Relaxed) {
                    idle_while_draining += 1;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket subscribers

#[derive(Default)]
struct SubResult {
    instance: usize,
    connects: u64,
    /// Live subscription intervals: from the acknowledgement to the close.
    intervals: Vec<(Instant, Instant)>,
    /// job_created events received, by job id (a count above 1 is a duplicate).
    created: HashMap<u128, u32>,
    events: BTreeMap<String, u64>,
    /// Unexpected ends of a connection, with the reason.
    drops: Vec<String>,
    /// Ends announced by the service because the token expired (expected on long runs).
    expiries: u64,
}

async fn subscriber(
    ctx: Arc<Ctx>,
    instance: usize,
    n: usize,
    mut stop: watch::Receiver<bool>,
    ready: Arc<AtomicUsize>,
) -> SubResult {
    let ip = format!("10.3.{}.{}", n / 250, n % 250 + 1);
    let url = format!("{}/ws", ctx.urls[instance].replacen("http", "ws", 1));
    let mut r = SubResult {
        instance,
        ..SubResult::default()
    };
    let mut first = true;
    'outer: while !*stop.borrow() {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let token = ctx.admin_token.read().await.clone();
        let Ok(mut request) = url.as_str().into_client_request() else {
            return r;
        };
        if let (Ok(auth), Ok(fwd)) = (
            HeaderValue::from_str(&format!("Bearer {token}")),
            HeaderValue::from_str(&ip),
        ) {
            request.headers_mut().insert("authorization", auth);
            request.headers_mut().insert("x-forwarded-for", fwd);
        }
        let started = Instant::now();
        let connected =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(request)).await;
        let latency = started.elapsed();
        let mut ws = match connected {
            Ok(Ok((ws, _))) => {
                ctx.rec.record(
                    Kind::WsConnect,
                    instance,
                    "GET",
                    "/ws",
                    &Outcome::Status(101),
                    latency,
                    "",
                );
                ws
            }
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                ctx.rec.record(
                    Kind::WsConnect,
                    instance,
                    "GET",
                    "/ws",
                    &Outcome::Status(resp.status().as_u16()),
                    latency,
                    &body,
                );
                first = false;
                continue;
            }
            Ok(Err(e)) => {
                ctx.rec.record(
                    Kind::WsConnect,
                    instance,
                    "GET",
                    "/ws",
                    &Outcome::Transport(e.to_string()),
                    latency,
                    "",
                );
                first = false;
                continue;
            }
            Err(_) => {
                ctx.rec.record(
                    Kind::WsConnect,
                    instance,
                    "GET",
                    "/ws",
                    &Outcome::Timeout,
                    latency,
                    "",
                );
                first = false;
                continue;
            }
        };
        r.connects += 1;
        if ws
            .send(Message::text(
                r#"{"type":"subscribe","stream":"orchestrator"}"#,
            ))
            .await
            .is_err()
        {
            ctx.rec.error(
                Kind::WsMessage,
                "subscribe could not be sent",
                instance,
                "/ws",
                "",
            );
            first = false;
            continue;
        }
        // Wait for the acknowledgement: the subscription is live from then on.
        let ack_deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let left = ack_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    ctx.rec.frame(instance);
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "subscribed" {
                        break;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => {
                    let why = match other {
                        Err(_) => "no subscribe acknowledgement within 30 s".to_owned(),
                        Ok(None) => "closed before the subscribe acknowledgement".to_owned(),
                        Ok(Some(Err(e))) => format!("error before the acknowledgement: {e}"),
                        Ok(Some(Ok(_))) => String::new(),
                    };
                    ctx.rec.error(
                        Kind::WsMessage,
                        "subscription not acknowledged",
                        instance,
                        "/ws",
                        &why,
                    );
                    first = false;
                    continue 'outer;
                }
            }
        }
        if first {
            ready.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        let live_from = Instant::now();
        let ended = loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        r.intervals.push((live_from, Instant::now()));
                        let _ = ws.close(None).await;
                        break None;
                    }
                }
                msg = ws.next() => {
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            ctx.rec.frame(instance);
                            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                            match v["type"].as_str() {
                                Some("event") => {
                                    let name = v["event"]["event"].as_str().unwrap_or("?").to_owned();
                                    if name == "job_created"
                                        && let Some(id) = v["event"]["task_id"].as_str().and_then(uuid_u128)
                                    {
                                        *r.created.entry(id).or_default() += 1;
                                    }
                                    *r.events.entry(name).or_default() += 1;
                                }
                                Some("error") => {
                                    let m = v["message"].as_str().unwrap_or("").to_owned();
                                    ctx.rec.error(Kind::WsMessage, "error frame from the service", instance, "/ws", &m);
                                }
                                _ => {}
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            break Some(match frame {
                                Some(f) => format!("close {} {}", u16::from(f.code), f.reason.as_str()),
                                None => "close without a code".into(),
                            });
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break Some(format!("error: {e}")),
                        None => break Some("stream ended".into()),
                    }
                }
            }
        };
        let Some(reason) = ended else { break };
        r.intervals.push((live_from, Instant::now()));
        if reason.starts_with("close 1008") && reason.contains("expired") {
            r.expiries += 1;
        } else {
            r.drops.push(reason);
        }
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Attackers

#[derive(Default, Debug)]
struct AttackResult {
    statuses: BTreeMap<String, u64>,
    first: Option<String>,
    /// Requests before the first 429, and when it came.
    first_429: Option<(u64, f64)>,
    sent: u64,
}

async fn login_attacker(
    ctx: Arc<Ctx>,
    victim: String,
    deadline: Instant,
    rps: f64,
) -> AttackResult {
    let ip = "10.66.0.1";
    let mut r = AttackResult::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        r.sent += 1;
        let reply = ctx
            .call(
                Kind::AttackLogin,
                ctx.pick(),
                Method::POST,
                "/auth/login",
                ip,
                Auth::Anonymous,
                Some(&json!({"username": victim, "password": format!("wrong-guess-{}", r.sent)})),
            )
            .await;
        let label = reply
            .as_ref()
            .map_or_else(|| "error".to_owned(), |r| r.status.to_string());
        if r.first.is_none() {
            r.first = Some(label.clone());
        }
        if label == "429" && r.first_429.is_none() {
            r.first_429 = Some((r.sent - 1, started.elapsed().as_secs_f64()));
        }
        *r.statuses.entry(label).or_default() += 1;
    }
    r
}

#[derive(Default, Debug)]
struct FloodResult {
    allowed: u64,
    limited: u64,
    other: u64,
    first_sent: Option<Instant>,
    last_done: Option<Instant>,
    allowed_by_instance: BTreeMap<usize, u64>,
    /// Send times in µs after the first.
    sends_us: Vec<i64>,
}

async fn flood(ctx: Arc<Ctx>, deadline: Instant, rps: f64) -> FloodResult {
    let state = Arc::new(Mutex::new(FloodResult::default()));
    let gate = Arc::new(Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < deadline {
        tick.tick().await;
        let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
            break;
        };
        let (ctx, state) = (Arc::clone(&ctx), Arc::clone(&state));
        let instance = ctx.pick();
        {
            let mut s = lock(&state);
            let now = Instant::now();
            let first = *s.first_sent.get_or_insert(now);
            s.sends_us.push((now - first).as_micros() as i64);
        }
        tokio::spawn(async move {
            let reply = ctx
                .call(
                    Kind::Flood,
                    instance,
                    Method::GET,
                    "/",
                    "10.66.0.2",
                    Auth::Anonymous,
                    None,
                )
                .await;
            let mut s = lock(&state);
            s.last_done = Some(Instant::now());
            match reply.map(|r| r.status) {
                Some(200) => {
                    s.allowed += 1;
                    *s.allowed_by_instance.entry(instance).or_default() += 1;
                }
                Some(429) => s.limited += 1,
                _ => s.other += 1,
            }
            drop(permit);
        });
    }
    // Every request in flight has finished once all permits are back.
    let _ = gate.acquire_many(64).await;
    std::mem::take(&mut *lock(&state))
}

// ---------------------------------------------------------------------------------------------
// Sampling

struct Row {
    t: f64,
    kinds: BTreeMap<Kind, (u64, u64, f64, f64)>,
    rss: Vec<Option<u64>>,
    fds: Vec<Option<u64>>,
    threads: Vec<Option<u64>>,
}

fn sample(ctx: &Ctx, pids: &[u32], t0: Instant) -> Row {
    let kinds = ctx
        .rec
        .take_interval()
        .into_iter()
        .map(|(k, s)| {
            let l = sorted(&s.lat_ms);
            (
                k,
                (
                    s.count,
                    s.errors,
                    percentile(&l, 50.0),
                    percentile(&l, 99.0),
                ),
            )
        })
        .collect();
    Row {
        t: t0.elapsed().as_secs_f64(),
        kinds,
        rss: pids.iter().map(|p| proc_status(*p, "VmRSS:")).collect(),
        fds: pids.iter().map(|p| open_fds(*p)).collect(),
        threads: pids.iter().map(|p| proc_status(*p, "Threads:")).collect(),
    }
}

/// (HTTP requests and WebSocket handshakes, WebSocket frames, errors) of a sample row.
fn row_counts(row: &Row) -> (u64, u64, u64) {
    row.kinds
        .iter()
        .fold((0, 0, 0), |(c, fr, e), (k, (n, er, _, _))| {
            if *k == Kind::WsMessage {
                (c, fr + n, e + er)
            } else {
                (c + n, fr, e + er)
            }
        })
}

fn progress(row: &Row) {
    let (count, frames, errors) = row_counts(row);
    let rss: Vec<String> = row
        .rss
        .iter()
        .map(|r| r.map_or_else(|| "gone".into(), |k| format!("{} MiB", mib(k))))
        .collect();
    eprintln!(
        "soak t={:>5.0}s  requests={count:<5} ws-frames={frames:<6} errors={errors:<4} rss=[{}]",
        row.t,
        rss.join(", ")
    );
}

/// The instances' own counters (Prometheus `/metrics`), read once at the end.
const COUNTERS: &[(&str, &str)] = &[
    (
        "kyros_redis_failures_total",
        "Redis calls failed or timed out",
    ),
    (
        "kyros_ratelimit_local_fallbacks_total",
        "limiter decisions made locally (Redis down)",
    ),
    ("kyros_audit_rows_dropped_total", "audit rows dropped"),
    ("kyros_rate_limited_total", "429s sent"),
    ("kyros_auth_failures_total", "401s sent"),
    ("5xx", "responses with a 5xx status"),
];

async fn server_counters(ctx: &Ctx) -> Vec<Option<BTreeMap<&'static str, f64>>> {
    let token = ctx.admin_token.read().await.clone();
    let mut out = Vec::new();
    for i in 0..ctx.urls.len() {
        let reply = ctx
            .call(
                Kind::Metrics,
                i,
                Method::GET,
                "/metrics",
                "10.0.0.1",
                Auth::Bearer(&token),
                None,
            )
            .await;
        let Some(reply) = reply.filter(|r| r.expected) else {
            out.push(None);
            continue;
        };
        let mut values = BTreeMap::new();
        for line in reply.body.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or("");
            for (counter, _) in COUNTERS {
                let hit = if *counter == "5xx" {
                    name == "kyros_http_requests_total" && series.contains("status_class=\"5xx\"")
                } else {
                    name == *counter
                };
                if hit {
                    *values.entry(*counter).or_insert(0.0) += value;
                }
            }
        }
        out.push(Some(values));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Machine

fn machine() -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    vec![
        ("cores (nproc)".into(), nproc.to_string()),
        ("CPU".into(), cpu),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("rustc".into(), rustc),
        ("load average at start".into(), load),
    ]
}

// ---------------------------------------------------------------------------------------------
// Main

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(run(a));
    std::process::exit(code);
}

async fn run(a: Args) -> i32 {
    kyros::install_crypto_provider();
    let budgets = budgets();
    let machine = machine();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let run_id = format!("{:08x}", Rng::new().next() as u32);
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(64)
        .build()
        .expect("HTTP client");
    let ctx = Arc::new(Ctx {
        client,
        urls: a.urls.clone(),
        rr: AtomicUsize::new(0),
        rec: Recorder::new(),
        jobs: Mutex::new(Vec::new()),
        claimed: Mutex::new(HashSet::new()),
        completed: Mutex::new(HashSet::new()),
        duplicate_claims: AtomicU64::new(0),
        admin_token: RwLock::new(String::new()),
    });

    eprintln!("soak: setting up ({} instances)", a.urls.len());
    let s = match setup(&ctx, &a, &run_id).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak: setup failed: {e}");
            return 2;
        }
    };

    // Subscribers first, so they are live before the first job.
    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicUsize::new(0));
    let total_subs = a.ws_per_instance * a.urls.len();
    let mut subs = Vec::new();
    for n in 0..total_subs {
        let instance = n % a.urls.len();
        subs.push(tokio::spawn(subscriber(
            Arc::clone(&ctx),
            instance,
            n,
            stop_rx.clone(),
            Arc::clone(&ready),
        )));
        if n % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let wait_until = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < total_subs && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "soak: {}/{} WebSocket subscribers live; running the workload for {} s",
        ready.load(Ordering::Relaxed),
        total_subs,
        a.seconds
    );

    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(a.seconds);
    let sampling = Arc::new(AtomicBool::new(true));
    let rows = Arc::new(Mutex::new(Vec::<Row>::new()));
    let sampler = {
        let (ctx, pids, rows, sampling) = (
            Arc::clone(&ctx),
            a.pids.clone(),
            Arc::clone(&rows),
            Arc::clone(&sampling),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.tick().await;
            // The first sample: memory after setup, before the workload.
            let row = sample(&ctx, &pids, t0);
            progress(&row);
            lock(&rows).push(row);
            while sampling.load(Ordering::Relaxed) {
                tick.tick().await;
                if !sampling.load(Ordering::Relaxed) {
                    break;
                }
                let row = sample(&ctx, &pids, t0);
                progress(&row);
                lock(&rows).push(row);
            }
        })
    };
    let refresher_stop = Arc::new(AtomicBool::new(false));
    let refresher = tokio::spawn(admin_refresher(
        Arc::clone(&ctx),
        a.admin.clone(),
        a.admin_password.clone(),
        Arc::clone(&refresher_stop),
    ));

    let mut users = Vec::new();
    for (i, (name, pw)) in s.users.iter().enumerate() {
        users.push(tokio::spawn(user_worker(
            Arc::clone(&ctx),
            i,
            name.clone(),
            pw.clone(),
            deadline,
        )));
    }
    let draining = Arc::new(AtomicBool::new(false));
    let drain_deadline = Arc::new(Mutex::new(None));
    let mut agents = Vec::new();
    for i in 0..a.agents {
        agents.push(tokio::spawn(agent_worker(
            Arc::clone(&ctx),
            i,
            s.agent_key.clone(),
            Arc::clone(&draining),
            Arc::clone(&drain_deadline),
        )));
    }
    let attacker = tokio::spawn(login_attacker(
        Arc::clone(&ctx),
        s.victim.clone(),
        deadline,
        a.attack_rps,
    ));
    let flooder = tokio::spawn(flood(Arc::clone(&ctx), deadline, a.flood_rps));

    for u in users {
        let _ = u.await;
    }
    let attack = attacker.await.unwrap_or_default();
    let flood_r = flooder.await.unwrap_or_default();
    let workload_secs = t0.elapsed().as_secs_f64();
    eprintln!("soak: workload over after {workload_secs:.0} s; agents empty the queue");
    *lock(&drain_deadline) = Some(Instant::now() + AGENT_DRAIN_MAX);
    draining.store(true, Ordering::Relaxed);
    for g in agents {
        let _ = g.await;
    }
    tokio::time::sleep(FINAL_DRAIN).await;
    let _ = stop_tx.send(true);
    let mut sub_results = Vec::new();
    for h in subs {
        if let Ok(r) = h.await {
            sub_results.push(r);
        }
    }
    refresher_stop.store(true, Ordering::Relaxed);
    let _ = refresher.await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let final_row = sample(&ctx, &a.pids, t0);
    progress(&final_row);
    lock(&rows).push(final_row);
    let hwm: Vec<Option<u64>> = a.pids.iter().map(|p| proc_status(*p, "VmHWM:")).collect();
    let counters = server_counters(&ctx).await;

    let rows = std::mem::take(&mut *lock(&rows));
    let report = Report {
        a: &a,
        budgets: &budgets,
        machine: &machine,
        date: &date,
        ctx: &ctx,
        workload_secs,
        subs: &sub_results,
        attack: &attack,
        flood: &flood_r,
        rows: &rows,
        hwm: &hwm,
        victim: &s.victim,
        counters: &counters,
    };
    let (text, ok) = report.render();
    if let Some(path) = &a.report {
        if let Err(e) = std::fs::write(path, &text) {
            eprintln!("soak: could not write {path}: {e}");
        }
    } else {
        println!("{text}");
    }
    eprintln!(
        "soak: {} — report {}",
        if ok { "PASS" } else { "FAIL" },
        a.report.as_deref().unwrap_or("on stdout")
    );
    if ok { 0 } else { 1 }
}

// ---------------------------------------------------------------------------------------------
// Report

struct Report<'a> {
    a: &'a Args,
    budgets: &'a Budgets,
    machine: &'a [(String, String)],
    date: &'a str,
    ctx: &'a Ctx,
    workload_secs: f64,
    subs: &'a [SubResult],
    attack: &'a AttackResult,
    flood: &'a FloodResult,
    rows: &'a [Row],
    hwm: &'a [Option<u64>],
    counters: &'a [Option<BTreeMap<&'static str, f64>>],
    victim: &'a str,
}

struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Report<'_> {
    fn render(&self) -> (String, bool) {
        let mut checks = Vec::new();
        let mut body = String::new();
        self.run_section(&mut body);
        self.requests_section(&mut body, &mut checks);
        self.jobs_section(&mut body, &mut checks);
        self.ws_section(&mut body, &mut checks);
        self.attack_section(&mut body, &mut checks);
        self.counters_section(&mut body, &mut checks);
        self.memory_section(&mut body, &mut checks);
        self.timeline_section(&mut body);

        let ok = checks.iter().all(|c| c.ok);
        let mut out = String::new();
        let _ = writeln!(out, "## Checks\n");
        let _ = writeln!(out, "| check | result | measured |\n|---|---|---|");
        for c in &checks {
            let _ = writeln!(out, "| {} | {} | {} |", c.name, pass(c.ok), c.detail);
        }
        let _ = writeln!(
            out,
            "\nSoak client verdict: **{}** ({} of {} checks passed).\n",
            if ok { "PASS" } else { "FAIL" },
            checks.iter().filter(|c| c.ok).count(),
            checks.len()
        );
        out.push_str(&body);
        (out, ok)
    }

    fn run_section(&self, out: &mut String) {
        let a = self.a;
        let command = std::env::var("KYROS_SOAK_COMMAND").unwrap_or_else(|_| {
            let argv: Vec<String> = std::env::args().collect();
            argv.join(" ")
        });
        let _ = writeln!(out, "## Run\n");
        let _ = writeln!(out, "- date: {}", self.date);
        let _ = writeln!(out, "- command: `{command}`");
        let _ = writeln!(
            out,
            "- workload: {:.0} s, then the agents empty the queue and the subscribers get {} s for the last events",
            self.workload_secs,
            FINAL_DRAIN.as_secs()
        );
        let _ = writeln!(out, "\n| machine | |\n|---|---|");
        for (k, v) in self.machine {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let _ = writeln!(out, "\n### Deployment\n");
        let _ = writeln!(out, "| instance | URL | PID |\n|---|---|---|");
        for (i, u) in a.urls.iter().enumerate() {
            let pid = a.pids.get(i).map_or_else(|| "?".into(), |p| p.to_string());
            let _ = writeln!(out, "| {} | {u} | {pid} |", i + 1);
        }
        let _ = writeln!(out, "\n- PostgreSQL: {}", a.postgres);
        let _ = writeln!(out, "- Redis: {}", a.redis);
        let _ = writeln!(
            out,
            "- every instance: `ENVIRONMENT=local`, `LOG_LEVEL=WARNING`, `TRUSTED_PROXIES=127.0.0.1/32` (each simulated client sends its own `X-Forwarded-For` address), the same `SECRET_KEY`, its own `KYROS_DATA_DIR`"
        );
        if let Ok(extra) = std::env::var("KYROS_SOAK_SERVER_ENV")
            && !extra.trim().is_empty()
        {
            let _ = writeln!(out, "- extra server environment: `{}`", extra.trim());
        }
        let _ = writeln!(out, "\n| budget variable | value |\n|---|---|");
        for (k, v) in &self.budgets.vars {
            let _ = writeln!(out, "| `{k}` | {v} |");
        }
        let _ = writeln!(out, "\n### Workload\n");
        let _ = writeln!(
            out,
            "- {} users (own address each): bearer login, 1–3 jobs submitted and each read back on another instance, a job list, logout; every third cycle a cookie session (`POST /auth/session`, a job submitted with `X-CSRF-Token`, `DELETE /auth/session`); at most every {} s the logged-out token is tried on another instance (must be 401); 1.5–3.5 s think time",
            a.users,
            REVOKED_CHECK_EVERY.as_secs()
        );
        let _ = writeln!(
            out,
            "- {} agents sharing one API key (`jobs:claim`, `jobs:read`): claim (200 or 204), complete (200); 250 ms pause after a 204",
            a.agents
        );
        let _ = writeln!(
            out,
            "- {} WebSocket subscribers per instance ({} in all), administrator bearer token, `{{\"type\":\"subscribe\",\"stream\":\"orchestrator\"}}`",
            a.ws_per_instance,
            a.ws_per_instance * a.urls.len()
        );
        let _ = writeln!(
            out,
            "- attacker 1 (10.66.0.1): {} wrong-password logins per second against `{}`, a user nobody else logs in as (expected 401, then 429)",
            a.attack_rps, self.victim
        );
        let _ = writeln!(
            out,
            "- attacker 2 (10.66.0.2): {} anonymous `GET /` per second, round-robin over the instances (expected 200 or 429)\n",
            a.flood_rps
        );
    }

    fn requests_section(&self, out: &mut String, checks: &mut Vec<Check>) {
        let g = lock(&self.ctx.rec.inner);
        let _ = writeln!(out, "## Requests by kind\n");
        let _ = writeln!(
            out,
            "Latency is measured by the client from sending the request to the end of the body (WebSocket: to the completed upgrade).\n"
        );
        let _ = writeln!(
            out,
            "| kind | request | expected | count | statuses | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---:|---|---:|---:|---:|---:|"
        );
        let mut legit_limited = 0u64;
        let mut legit_total = 0u64;
        for k in Kind::ALL {
            let Some(t) = g.totals.get(&k) else { continue };
            let l = sorted(&t.lat_ms);
            let statuses: Vec<String> = t
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            let expected: Vec<String> = k.expected().iter().map(u16::to_string).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                k.name(),
                k.request(),
                if expected.is_empty() {
                    "–".into()
                } else {
                    expected.join("/")
                },
                t.count,
                statuses.join(", "),
                t.errors,
                ms(percentile(&l, 50.0)),
                ms(percentile(&l, 99.0)),
                ms(l.last().map_or(f64::NAN, |v| f64::from(*v))),
            );
            if !k.is_attack() && k != Kind::WsMessage {
                legit_total += t.count;
                legit_limited += t.statuses.get("429").copied().unwrap_or(0);
            }
        }
        let _ = writeln!(
            out,
            "\n| instance | requests and frames | errors |\n|---|---:|---:|"
        );
        for (i, (n, e)) in &g.per_instance {
            let _ = writeln!(out, "| {} | {n} | {e} |", i + 1);
        }
        let total_errors: u64 = g.totals.values().map(|t| t.errors).sum();
        let total: u64 = g.totals.values().map(|t| t.count).sum();
        let _ = writeln!(out, "\n## Errors\n");
        if g.errors.is_empty() {
            let _ = writeln!(
                out,
                "None: every response had a status expected for its kind.\n"
            );
        } else {
            let _ = writeln!(
                out,
                "**{total_errors} errors.** Samples (at most {SAMPLES_PER_ERROR} per kind; bodies cut and credentials removed):\n"
            );
            let _ = writeln!(
                out,
                "| kind | error | count | t (s) | instance | request | status | body |\n|---|---|---:|---:|---:|---|---|---|"
            );
            for ((k, reason), b) in &g.errors {
                for (j, s) in b.samples.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {:.1} | {} | {} {} | {} | {} |",
                        if j == 0 { k.name() } else { "" },
                        if j == 0 { reason.as_str() } else { "" },
                        if j == 0 {
                            b.count.to_string()
                        } else {
                            String::new()
                        },
                        s.at_secs,
                        s.instance + 1,
                        s.method,
                        s.path.replace('|', "\\|"),
                        s.outcome,
                        s.body
                    );
                }
            }
            let _ = writeln!(out);
        }
        checks.push(Check {
            name: "no errors (statuses outside the expected ones, 5xx, timeouts, transport errors)"
                .into(),
            ok: total_errors == 0,
            detail: format!("{total_errors} errors in {total} requests and frames"),
        });
        checks.push(Check {
            name: "legitimate traffic never rate-limited".into(),
            ok: legit_limited == 0,
            detail: format!("{legit_limited} 429s in {legit_total} legitimate requests"),
        });
        let revoked = g.totals.get(&Kind::RevokedCheck);
        if let Some(t) = revoked {
            checks.push(Check {
                name: "logged-out token refused by another instance".into(),
                ok: t.errors == 0,
                detail: format!("{} of {} checks answered 401", t.count - t.errors, t.count),
            });
        }
    }

    fn jobs_section(&self, out: &mut String, checks: &mut Vec<Check>) {
        let jobs = lock(&self.ctx.jobs);
        let created: HashSet<u128> = jobs.iter().map(|j| j.id).collect();
        let claimed = lock(&self.ctx.claimed);
        let completed = lock(&self.ctx.completed);
        let dup = self.ctx.duplicate_claims.load(Ordering::Relaxed);
        let never_claimed = created.difference(&claimed).count();
        let not_completed = created.difference(&completed).count();
        let foreign = claimed.difference(&created).count();
        let _ = writeln!(out, "## Jobs and agents\n");
        let _ = writeln!(out, "| | count |\n|---|---:|");
        let _ = writeln!(out, "| jobs submitted (201) | {} |", created.len());
        let _ = writeln!(out, "| distinct jobs claimed | {} |", claimed.len());
        let _ = writeln!(out, "| jobs completed (200) | {} |", completed.len());
        let _ = writeln!(
            out,
            "| duplicate claims (same job handed out twice) | {dup} |"
        );
        let _ = writeln!(out, "| submitted but never claimed | {never_claimed} |");
        let _ = writeln!(out, "| submitted but not completed | {not_completed} |");
        let _ = writeln!(
            out,
            "| claimed jobs nobody submitted in this run | {foreign} |\n"
        );
        checks.push(Check {
            name: "no job claimed twice".into(),
            ok: dup == 0,
            detail: format!(
                "{dup} duplicate claims in {} claims",
                claimed.len() as u64 + dup
            ),
        });
        checks.push(Check {
            name: "every submitted job claimed and completed".into(),
            ok: never_claimed == 0 && not_completed == 0 && foreign == 0 && !created.is_empty(),
            detail: format!(
                "{} submitted, {} claimed, {} completed",
                created.len(),
                claimed.len(),
                completed.len()
            ),
        });
    }

    fn ws_section(&self, out: &mut String, checks: &mut Vec<Check>) {
        let jobs = lock(&self.ctx.jobs);
        let mut expected_total = 0u64;
        let mut delivered_total = 0u64;
        let mut duplicates = 0u64;
        let mut worst: Option<(f64, u64, u64)> = None;
        let mut connects = 0u64;
        let mut drops: BTreeMap<String, u64> = BTreeMap::new();
        let mut expiries = 0u64;
        let mut events: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_instance: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        for s in self.subs {
            let mut exp = 0u64;
            let mut del = 0u64;
            for j in jobs.iter() {
                let inside = s
                    .intervals
                    .iter()
                    .any(|(from, to)| j.sent >= *from && j.done + DELIVERY_GRACE <= *to);
                if inside {
                    exp += 1;
                    if s.created.contains_key(&j.id) {
                        del += 1;
                    }
                }
            }
            duplicates += s
                .created
                .values()
                .filter(|n| **n > 1)
                .map(|n| u64::from(*n - 1))
                .sum::<u64>();
            expected_total += exp;
            delivered_total += del;
            let e = per_instance.entry(s.instance).or_default();
            e.0 += del;
            e.1 += exp;
            let ratio = if exp == 0 {
                1.0
            } else {
                del as f64 / exp as f64
            };
            if worst.is_none_or(|(r, _, _)| ratio < r) {
                worst = Some((ratio, del, exp));
            }
            connects += s.connects;
            expiries += s.expiries;
            for d in &s.drops {
                *drops.entry(d.clone()).or_default() += 1;
            }
            for (k, v) in &s.events {
                *events.entry(k.clone()).or_default() += v;
            }
        }
        let subscribers = self.subs.len() as u64;
        let reconnects = connects.saturating_sub(subscribers);
        let dropped: u64 = drops.values().sum();
        let _ = writeln!(out, "## WebSocket\n");
        let _ = writeln!(
            out,
            "Every subscriber is the administrator, who sees every job event. A job counts as expected on a subscriber when its `POST` was sent after the subscription was acknowledged and answered at least {} s before that connection ended; delivered when its `job_created` event arrived on that connection. Events of jobs created through another instance arrive through Redis pub/sub.\n",
            DELIVERY_GRACE.as_secs()
        );
        let _ = writeln!(out, "| | |\n|---|---:|");
        let _ = writeln!(out, "| subscribers | {subscribers} |");
        let _ = writeln!(out, "| connections opened | {connects} |");
        let _ = writeln!(out, "| reconnects | {reconnects} |");
        let _ = writeln!(out, "| unexpected disconnects | {dropped} |");
        let _ = writeln!(
            out,
            "| closed for token expiry (1008, expected after `ACCESS_TOKEN_EXPIRE_MINUTES`) | {expiries} |"
        );
        let _ = writeln!(
            out,
            "| job_created delivered / expected | {delivered_total} / {expected_total} ({:.3} %) |",
            if expected_total == 0 {
                100.0
            } else {
                100.0 * delivered_total as f64 / expected_total as f64
            }
        );
        if let Some((r, d, e)) = worst {
            let _ = writeln!(out, "| worst subscriber | {d} / {e} ({:.3} %) |", 100.0 * r);
        }
        let _ = writeln!(out, "| duplicate job_created frames | {duplicates} |");
        for (k, v) in &events {
            let _ = writeln!(out, "| events received: {k} | {v} |");
        }
        for (i, (d, e)) in &per_instance {
            let _ = writeln!(
                out,
                "| subscribers of instance {}: delivered / expected | {d} / {e} |",
                i + 1
            );
        }
        let _ = writeln!(out);
        if !drops.is_empty() {
            let _ = writeln!(out, "Unexpected disconnects by reason:\n");
            for (k, v) in &drops {
                let _ = writeln!(out, "- {v} × {}", k.replace('|', "\\|"));
            }
            let _ = writeln!(out);
        }
        checks.push(Check {
            name: "every job_created event delivered to every live subscriber".into(),
            ok: delivered_total == expected_total && expected_total > 0 && duplicates == 0,
            detail: format!(
                "{delivered_total} / {expected_total} delivered, {duplicates} duplicates"
            ),
        });
        checks.push(Check {
            name: "WebSocket connections stay up (no unexpected disconnects)".into(),
            ok: dropped == 0 && subscribers > 0,
            detail: format!("{subscribers} subscribers, {reconnects} reconnects, {dropped} unexpected disconnects"),
        });
    }

    fn attack_section(&self, out: &mut String, checks: &mut Vec<Check>) {
        let at = self.attack;
        let _ = writeln!(out, "## Attackers\n");
        let statuses: Vec<String> = at
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "**Password guessing** against `{}` from 10.66.0.1: {} attempts, statuses {}; first answer {}; first 429 after {} attempts{}.\n",
            self.victim,
            at.sent,
            statuses.join(", "),
            at.first.as_deref().unwrap_or("none"),
            at.first_429
                .map_or_else(|| "–".into(), |(n, _)| n.to_string()),
            at.first_429
                .map_or_else(String::new, |(_, t)| format!(" ({t:.1} s into the attack)")),
        );
        let other: u64 = at
            .statuses
            .iter()
            .filter(|(s, _)| s.as_str() != "401" && s.as_str() != "429")
            .map(|(_, n)| n)
            .sum();
        checks.push(Check {
            name: "password guessing: 401 first, then 429, nothing else".into(),
            ok: at.first.as_deref() == Some("401") && at.first_429.is_some() && other == 0,
            detail: statuses.join(", "),
        });

        let f = self.flood;
        let b = self.budgets;
        let elapsed = match (f.first_sent, f.last_done) {
            (Some(a), Some(z)) if z > a => (z - a).as_secs_f64(),
            _ => 0.0,
        };
        let period = if b.anon_requests > 0.0 {
            b.anon_window / b.anon_requests
        } else {
            f64::INFINITY
        };
        let capacity = b.anon_requests + b.anon_burst;
        let max_allowed = capacity + elapsed / period;
        let replayed = replay_limiter(b, &f.sends_us) as f64;
        let ratio_max = f.allowed as f64 / max_allowed;
        let ratio_model = if replayed > 0.0 {
            f.allowed as f64 / replayed
        } else {
            f64::NAN
        };
        let by_instance: Vec<String> = f
            .allowed_by_instance
            .iter()
            .map(|(i, n)| format!("instance {}: {n}", i + 1))
            .collect();
        let _ = writeln!(out, "## Rate-limit accuracy\n");
        let _ = writeln!(
            out,
            "The anonymous flood from 10.66.0.2 goes round-robin to every instance; the instances share one GCRA budget through Redis. Budget: {} requests per {} s (one every {:.3} s) plus a burst of {}, i.e. capacity B = {}. Over the flood's {:.1} s (first request sent to last answer received) a GCRA admits at most B + elapsed/T = {:.1}; one more admitted request would mean the budget leaked (per-instance budgets, a lost update, a fallback to local state).\n",
            b.anon_requests, b.anon_window, period, b.anon_burst, capacity, elapsed, max_allowed
        );
        let _ = writeln!(
            out,
            "The flood is also penalized by the adaptive limiter: every 429 is a strike, and past `KYROS_PENALTY_STRIKES` = {} strikes each request costs `KYROS_PENALTY_FACTOR` = {} units, so once the burst is spent only one request every {:.2} s comes back. To measure accuracy, the client replays the service's algorithm (GCRA, strikes, penalty, with the configured budgets) on the exact send times of the flood: that is what one exact limiter shared by all instances admits. Admitted / replayed is the accuracy (1.000 = exact; above 1 the instances let more through than the budget allows, below 1 they refused more).\n",
            b.penalty_strikes,
            b.penalty_factor,
            period * b.penalty_factor
        );
        let _ = writeln!(out, "| | |\n|---|---:|");
        let _ = writeln!(
            out,
            "| requests sent | {} |",
            f.allowed + f.limited + f.other
        );
        let _ = writeln!(
            out,
            "| admitted (200) | {} ({}) |",
            f.allowed,
            by_instance.join(", ")
        );
        let _ = writeln!(out, "| refused (429) | {} |", f.limited);
        let _ = writeln!(out, "| other | {} |", f.other);
        let _ = writeln!(
            out,
            "| theoretical maximum B + elapsed/T | {max_allowed:.1} |"
        );
        let _ = writeln!(out, "| admitted / maximum | {ratio_max:.3} |");
        let _ = writeln!(out, "| admitted by the replayed limiter | {replayed:.0} |");
        let _ = writeln!(
            out,
            "| accuracy: admitted / replayed | {ratio_model:.3} |\n"
        );
        checks.push(Check {
            name: "shared budget holds across instances (admitted ≤ B + elapsed/T)".into(),
            ok: elapsed > 0.0 && (f.allowed as f64) <= max_allowed,
            detail: format!(
                "{} admitted, maximum {max_allowed:.1} (ratio {ratio_max:.3})",
                f.allowed
            ),
        });
        checks.push(Check {
            name: "limiter accuracy: admitted = replayed limiter ± 5 % (or ± 3 requests)".into(),
            ok: replayed > 0.0
                && ((f.allowed as f64 - replayed).abs() <= 3.0
                    || (0.95..=1.05).contains(&ratio_model)),
            detail: format!(
                "{} admitted, replay {replayed:.0} (accuracy {ratio_model:.3})",
                f.allowed
            ),
        });
    }

    fn counters_section(&self, out: &mut String, checks: &mut Vec<Check>) {
        let _ = writeln!(out, "## Server counters\n");
        let _ = writeln!(
            out,
            "From each instance's `/metrics` at the end of the run (counted since the instance started).\n"
        );
        let mut head = String::from("| counter |");
        let mut sep = String::from("|---|");
        for i in 0..self.counters.len() {
            let _ = write!(head, " instance {} |", i + 1);
            sep.push_str("---:|");
        }
        let _ = writeln!(out, "{head}\n{sep}");
        let total = |name: &str| -> f64 {
            self.counters
                .iter()
                .flatten()
                .map(|c| c.get(name).copied().unwrap_or(0.0))
                .sum()
        };
        for (name, label) in COUNTERS {
            let mut line = format!("| {label} (`{name}`) |");
            for c in self.counters {
                match c {
                    Some(c) => {
                        let _ = write!(line, " {} |", c.get(name).copied().unwrap_or(0.0));
                    }
                    None => line.push_str(" unread |"),
                }
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
        let read = self.counters.iter().all(Option::is_some) && !self.counters.is_empty();
        let redis = total("kyros_redis_failures_total");
        let fallbacks = total("kyros_ratelimit_local_fallbacks_total");
        if redis > 0.0 {
            let _ = writeln!(
                out,
                "While an instance considers Redis down (after one call that failed or took longer than `KYROS_REDIS_TIMEOUT_MS`, until its probe succeeds), its limiter decides with local state (each instance with a budget of its own) and the events it publishes do not reach the other instances: their WebSocket subscribers miss them.\n"
            );
        }
        checks.push(Check {
            name: "shared state: Redis never failed, no local limiter fallback".into(),
            ok: read && redis == 0.0 && fallbacks == 0.0,
            detail: format!("{redis} Redis failures, {fallbacks} local decisions"),
        });
        checks.push(Check {
            name: "no audit row dropped, no 5xx counted by the instances".into(),
            ok: read && total("kyros_audit_rows_dropped_total") == 0.0 && total("5xx") == 0.0,
            detail: format!(
                "{} dropped, {} 5xx",
                total("kyros_audit_rows_dropped_total"),
                total("5xx")
            ),
        });
    }

    fn memory_section(&self, out: &mut String, checks: &mut Vec<Check>) {
        let n = self.a.pids.len();
        let _ = writeln!(out, "## Memory and resources per instance\n");
        // RSS is compared from a sample taken once the workload has warmed up (connection pools,
        // allocator arenas, caches): the first sample at or after a fifth of the run (at most 120 s).
        let warm_t = (self.workload_secs / 5.0).min(120.0);
        let warm_idx = self.rows.iter().position(|r| r.t >= warm_t).unwrap_or(0);
        let _ = writeln!(
            out,
            "VmRSS from `/proc/<pid>/status` every {} s (the first sample before the workload starts, with the subscribers connected; the last after the workload, once the subscribers have closed), VmHWM at the end; open descriptors from `/proc/<pid>/fd`. \"Flat\" means the RSS at the end is at most 10 % (or 8 MiB, whichever is larger) above the sample at t ≈ {:.0} s, after the warm-up.\n",
            SAMPLE_EVERY.as_secs(),
            self.rows.get(warm_idx).map_or(0.0, |r| r.t)
        );
        let _ = writeln!(
            out,
            "| instance | PID | first MiB | min MiB | max MiB | last MiB | growth first→last | after warm-up | VmHWM MiB | fds first / max / last | threads first / max / last |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        let mut all_flat = true;
        let mut alive = true;
        let mut growths = Vec::new();
        for i in 0..n {
            let rss: Vec<u64> = self
                .rows
                .iter()
                .filter_map(|r| r.rss.get(i).copied().flatten())
                .collect();
            let gone = self
                .rows
                .last()
                .is_none_or(|r| r.rss.get(i).copied().flatten().is_none());
            if gone {
                alive = false;
            }
            let (Some(first), Some(last)) = (rss.first().copied(), rss.last().copied()) else {
                let _ = writeln!(
                    out,
                    "| {} | {} | no samples | | | | | | | | |",
                    i + 1,
                    self.a.pids[i]
                );
                all_flat = false;
                continue;
            };
            let min = rss.iter().min().copied().unwrap_or(0);
            let max = rss.iter().max().copied().unwrap_or(0);
            let warm = self
                .rows
                .get(warm_idx)
                .and_then(|r| r.rss.get(i).copied().flatten())
                .unwrap_or(first);
            let growth = last as f64 / first as f64 - 1.0;
            let growth_warm = last as f64 / warm as f64 - 1.0;
            let allowance = (warm as f64 * 0.10).max(8.0 * 1024.0);
            let flat = (last as f64) <= warm as f64 + allowance;
            all_flat &= flat;
            growths.push(format!("instance {}: {:+.1} %", i + 1, growth_warm * 100.0));
            let series = |f: fn(&Row) -> &Vec<Option<u64>>| {
                let v: Vec<u64> = self
                    .rows
                    .iter()
                    .filter_map(|r| f(r).get(i).copied().flatten())
                    .collect();
                match (v.first(), v.iter().max(), v.last()) {
                    (Some(a), Some(m), Some(z)) => format!("{a} / {m} / {z}"),
                    _ => "–".into(),
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:+.1} % | {:+.1} % | {} | {} | {} |",
                i + 1,
                self.a.pids[i],
                mib(first),
                mib(min),
                mib(max),
                mib(last),
                growth * 100.0,
                growth_warm * 100.0,
                self.hwm
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or_else(|| "–".into(), mib),
                series(|r| &r.fds),
                series(|r| &r.threads),
            );
        }
        let _ = writeln!(out);
        checks.push(Check {
            name: "RSS flat after warm-up (≤ +10 % or +8 MiB)".into(),
            ok: all_flat && n > 0,
            detail: growths.join(", "),
        });
        checks.push(Check {
            name: "every instance alive until the end".into(),
            ok: alive && n > 0,
            detail: format!("{n} instances sampled"),
        });
    }

    fn timeline_section(&self, out: &mut String) {
        let n = self.a.pids.len();
        let _ = writeln!(out, "## Timeline\n");
        let _ = writeln!(
            out,
            "Each row covers the {} s before it: HTTP requests of every kind (WebSocket handshakes included), WebSocket frames received, errors, client-side p50/p99 latency (ms) of some kinds, and each instance's RSS (MiB) at its end. The row at 0 s is the setup (users, key, subscribers).\n",
            SAMPLE_EVERY.as_secs()
        );
        let shown = [
            Kind::Login,
            Kind::JobCreate,
            Kind::JobRead,
            Kind::Claim,
            Kind::Flood,
        ];
        let mut head = String::from("| t (s) | requests | ws frames | errors |");
        let mut sep = String::from("|---:|---:|---:|---:|");
        for k in shown {
            let _ = write!(head, " {} p50/p99 |", k.name());
            sep.push_str("---|");
        }
        for i in 0..n {
            let _ = write!(head, " RSS {} |", i + 1);
            sep.push_str("---:|");
        }
        let _ = writeln!(out, "{head}\n{sep}");
        for r in self.rows {
            let (count, frames, errors) = row_counts(r);
            let mut line = format!("| {:.0} | {count} | {frames} | {errors} |", r.t);
            for k in shown {
                match r.kinds.get(&k) {
                    Some((_, _, p50, p99)) => {
                        let _ = write!(line, " {}/{} |", ms(*p50), ms(*p99));
                    }
                    None => line.push_str(" – |"),
                }
            }
            for i in 0..n {
                let _ = write!(
                    line,
                    " {} |",
                    r.rss
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or_else(|| "–".into(), mib)
                );
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);

        // Every kind in every interval: requests, errors, p50/p99.
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::WsMessage && self.rows.iter().any(|r| r.kinds.contains_key(k)))
            .collect();
        let _ = writeln!(
            out,
            "<details><summary>Every kind in every interval (requests · errors · p50/p99 ms)</summary>\n"
        );
        let mut head = String::from("| t (s) |");
        let mut sep = String::from("|---:|");
        for k in &kinds {
            let _ = write!(head, " {} |", k.name());
            sep.push_str("---|");
        }
        let _ = writeln!(out, "{head}\n{sep}");
        for r in self.rows {
            let mut line = format!("| {:.0} |", r.t);
            for k in &kinds {
                match r.kinds.get(k) {
                    Some((n, e, p50, p99)) => {
                        let _ = write!(line, " {n} · {e} · {}/{} |", ms(*p50), ms(*p99));
                    }
                    None => line.push_str(" – |"),
                }
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "\n</details>\n");
    }
}

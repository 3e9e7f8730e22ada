//! What the running service knows about itself: request counts and latencies (recorded by one
//! HTTP middleware into a Prometheus registry of this instance), and process and machine figures
//! read from `/proc` without blocking the runtime.
//!
//! The registry is per `AppState`, not process-global, so several services in one process (the
//! test suite) keep their own numbers. Counters kept elsewhere — limiter fallbacks, Redis
//! failures, dropped audit rows — are copied in when `/metrics` is rendered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::Method;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::{Value, json};

/// Upper bounds (seconds) of the request-duration histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

pub const HTTP_REQUESTS: &str = "kyros_http_requests_total";
pub const HTTP_DURATION: &str = "kyros_http_request_duration_seconds";
pub const RATE_LIMITED: &str = "kyros_rate_limited_total";
pub const AUTH_FAILURES: &str = "kyros_auth_failures_total";
pub const LOCAL_FALLBACKS: &str = "kyros_ratelimit_local_fallbacks_total";
pub const REDIS_FAILURES: &str = "kyros_redis_failures_total";
pub const AUDIT_DROPPED: &str = "kyros_audit_rows_dropped_total";
pub const PROCESS_RSS: &str = "kyros_process_resident_memory_bytes";
pub const PROCESS_THREADS: &str = "kyros_process_threads";
pub const UPTIME: &str = "kyros_uptime_seconds";

/// The route label of a request that matched no route (bounded labels: never the raw path).
pub const UNMATCHED: &str = "unmatched";

/// Linux reports CPU time in clock ticks of `USER_HZ`, which is 100 on every architecture the
/// kernel exposes to user space.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// Histogram upkeep and the CPU sample happen this often, in a background task.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static METADATA: Metadata<'static> = Metadata::new("kyros", Level::INFO, Some(module_path!()));

pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    started: Instant,
    rate_limited: Counter,
    auth_failures: Counter,
    local_fallbacks: Counter,
    redis_failures: Counter,
    audit_dropped: Counter,
    rss: Gauge,
    threads: Gauge,
    uptime: Gauge,
    perf: Mutex<Perf>,
    cpu: Arc<Mutex<CpuState>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Perf {
    requests: u64,
    by_class: [u64; 5],
    /// Requests per latency bucket (not cumulative); the last slot is above the last bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_secs: f64,
    max_secs: f64,
    /// Per route template, then per method (a handful each): the figures and the Prometheus
    /// handles of that pair, registered on its first request so that later requests touch
    /// atomics only (no label vector, no registry lookup, no allocation).
    routes: HashMap<String, Vec<(&'static str, RouteSeries)>>,
}

#[derive(Debug)]
struct RouteSeries {
    stats: RouteStats,
    /// `kyros_http_requests_total{method,route,status_class}`, by [`class_index`].
    requests: [Option<Counter>; 5],
    /// `kyros_http_request_duration_seconds{method,route}`.
    duration: Histogram,
}

#[derive(Debug, Default, Clone)]
struct RouteStats {
    count: u64,
    client_errors: u64,
    server_errors: u64,
    sum_secs: f64,
    max_secs: f64,
}

/// The last CPU sample of the background task and the use it measured since the one before.
#[derive(Debug, Default)]
struct CpuState {
    last: Option<(Instant, f64)>,
    usage: Option<CpuUsage>,
}

impl CpuState {
    fn sample(&mut self, at: Instant, cpu_seconds: f64) {
        if let Some((prev_at, prev_cpu)) = self.last {
            let window = at.duration_since(prev_at).as_secs_f64();
            if window > 0.0 {
                let used = (cpu_seconds - prev_cpu).max(0.0);
                self.usage = Some(CpuUsage {
                    percent: (used / window * 1000.0).round() / 10.0,
                    window_seconds: (window * 1000.0).round() / 1000.0,
                });
            }
        }
        self.last = Some((at, cpu_seconds));
    }
}

/// CPU use of the process between the last two background looks at `/proc/self/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    pub percent: f64,
    pub window_seconds: f64,
}

/// The bounded `method` label: the standard methods, anything else is `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

impl Telemetry {
    /// Builds the registry and starts its upkeep task (histogram samples are folded in every
    /// few seconds, so memory stays flat even if nobody scrapes).
    pub fn start() -> Telemetry {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            recorder.describe_counter(KeyName::from(name), unit, help.into());
        };
        describe(
            HTTP_REQUESTS,
            None,
            "HTTP responses by method, matched route template and status class",
        );
        recorder.describe_histogram(
            KeyName::from(HTTP_DURATION),
            Some(Unit::Seconds),
            "Time from request to response headers, by method and matched route template".into(),
        );
        describe(
            RATE_LIMITED,
            None,
            "Requests refused with 429 by the rate limiter",
        );
        describe(
            AUTH_FAILURES,
            None,
            "Responses with status 401 (failed logins, missing or rejected credentials)",
        );
        describe(
            LOCAL_FALLBACKS,
            None,
            "Rate-limit decisions made locally because Redis was unavailable",
        );
        describe(REDIS_FAILURES, None, "Redis calls that failed or timed out");
        describe(
            AUDIT_DROPPED,
            None,
            "Audit rows not stored because the audit queue was full",
        );
        recorder.describe_gauge(
            KeyName::from(PROCESS_RSS),
            Some(Unit::Bytes),
            "Resident memory of the process".into(),
        );
        recorder.describe_gauge(
            KeyName::from(PROCESS_THREADS),
            None,
            "Threads of the process".into(),
        );
        recorder.describe_gauge(
            KeyName::from(UPTIME),
            Some(Unit::Seconds),
            "Seconds since this service instance started".into(),
        );
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_name(name), &METADATA);
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_name(name), &METADATA);
        let telemetry = Telemetry {
            rate_limited: counter(RATE_LIMITED),
            auth_failures: counter(AUTH_FAILURES),
            local_fallbacks: counter(LOCAL_FALLBACKS),
            redis_failures: counter(REDIS_FAILURES),
            audit_dropped: counter(AUDIT_DROPPED),
            rss: gauge(PROCESS_RSS),
            threads: gauge(PROCESS_THREADS),
            uptime: gauge(UPTIME),
            recorder,
            handle: handle.clone(),
            started: Instant::now(),
            perf: Mutex::new(Perf::default()),
            cpu: Arc::new(Mutex::new(CpuState::default())),
        };
        let cpu = Arc::clone(&telemetry.cpu);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tick.tick().await;
                handle.run_upkeep();
                if let Some(seconds) = read("/proc/self/stat")
                    .await
                    .as_deref()
                    .and_then(cpu_seconds_from_stat)
                {
                    cpu.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .sample(Instant::now(), seconds);
                }
            }
        });
        telemetry
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// One finished request. `route` is the matched route template or [`UNMATCHED`].
    pub fn observe(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let class = class_index(status);
        match status {
            429 => self.rate_limited.increment(1),
            401 => self.auth_failures.increment(1),
            _ => {}
        }

        let mut perf = self.perf.lock().unwrap_or_else(PoisonError::into_inner);
        perf.requests += 1;
        perf.by_class[class] += 1;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        perf.buckets[bucket] += 1;
        perf.sum_secs += secs;
        perf.max_secs = perf.max_secs.max(secs);
        if !perf.routes.contains_key(route) {
            perf.routes.insert(route.to_owned(), Vec::new());
        }
        let Some(methods) = perf.routes.get_mut(route) else {
            return;
        };
        let at = match methods.iter().position(|(m, _)| *m == method) {
            Some(at) => at,
            None => {
                let duration = self.recorder.register_histogram(
                    &Key::from_parts(
                        HTTP_DURATION,
                        vec![
                            Label::new("method", method),
                            Label::new("route", route.to_owned()),
                        ],
                    ),
                    &METADATA,
                );
                methods.push((
                    method,
                    RouteSeries {
                        stats: RouteStats::default(),
                        requests: Default::default(),
                        duration,
                    },
                ));
                methods.len() - 1
            }
        };
        let series = &mut methods[at].1;
        series.requests[class]
            .get_or_insert_with(|| {
                self.recorder.register_counter(
                    &Key::from_parts(
                        HTTP_REQUESTS,
                        vec![
                            Label::new("method", method),
                            Label::new("route", route.to_owned()),
                            Label::new("status_class", status_class(status)),
                        ],
                    ),
                    &METADATA,
                )
            })
            .increment(1);
        series.duration.record(secs);
        let stats = &mut series.stats;
        stats.count += 1;
        match status {
            400..=499 => stats.client_errors += 1,
            500.. => stats.server_errors += 1,
            _ => {}
        }
        stats.sum_secs += secs;
        stats.max_secs = stats.max_secs.max(secs);
    }

    /// The Prometheus text exposition (format 0.0.4), with the counters kept elsewhere copied in.
    pub fn render(&self, external: &ExternalCounters, process: &ProcessStats) -> String {
        self.local_fallbacks.absolute(external.local_fallbacks);
        self.redis_failures.absolute(external.redis_failures);
        self.audit_dropped.absolute(external.audit_dropped);
        if let Some(rss) = process.rss_bytes {
            self.rss.set(rss as f64);
        }
        if let Some(threads) = process.threads {
            self.threads.set(threads as f64);
        }
        self.uptime.set(self.uptime().as_secs_f64());
        self.handle.render()
    }

    /// Request counters and latency buckets as JSON, for `/api/v1/monitoring/performance`.
    pub fn performance(&self) -> Value {
        let perf = self.perf.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cumulative = 0;
        let mut buckets: Vec<Value> = LATENCY_BUCKETS
            .iter()
            .zip(perf.buckets.iter())
            .map(|(le, n)| {
                cumulative += n;
                json!({"le": le, "count": cumulative})
            })
            .collect();
        buckets.push(json!({"le": "+Inf", "count": perf.requests}));
        let ms = |secs: f64| (secs * 1_000_000.0).round() / 1000.0;
        let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { ms(sum / n as f64) };
        let mut routes: Vec<((&'static str, &str), &RouteStats)> = perf
            .routes
            .iter()
            .flat_map(|(route, methods)| {
                methods
                    .iter()
                    .map(move |(method, series)| ((*method, route.as_str()), &series.stats))
            })
            .collect();
        routes.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        let routes: Vec<Value> = routes
            .into_iter()
            .map(|((method, route), s)| {
                json!({
                    "method": method,
                    "route": route,
                    "requests": s.count,
                    "client_errors": s.client_errors,
                    "server_errors": s.server_errors,
                    "mean_ms": mean(s.sum_secs, s.count),
                    "max_ms": ms(s.max_secs),
                })
            })
            .collect();
        let [c1, c2, c3, c4, c5] = perf.by_class;
        json!({
            "uptime_seconds": self.uptime().as_secs(),
            "requests_total": perf.requests,
            "by_status_class": {"1xx": c1, "2xx": c2, "3xx": c3, "4xx": c4, "5xx": c5},
            "latency": {
                "mean_ms": mean(perf.sum_secs, perf.requests),
                "max_ms": ms(perf.max_secs),
                "buckets_seconds": buckets,
            },
            "routes": routes,
        })
    }

    /// Process CPU use over the last background sampling window (about five seconds); `None`
    /// until two samples exist or without `/proc`. Reading it does no I/O.
    pub fn cpu_usage(&self) -> Option<CpuUsage> {
        self.cpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .usage
    }
}

/// Counters that live in other parts of the service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExternalCounters {
    pub local_fallbacks: u64,
    pub redis_failures: u64,
    pub audit_dropped: u64,
}

/// The process as `/proc/self` describes it; `None` where that is unavailable.
#[derive(Debug, Clone, Default)]
pub struct ProcessStats {
    pub pid: u32,
    pub rss_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
}

/// The machine as `/proc/meminfo` and `/proc/loadavg` describe it.
#[derive(Debug, Clone, Default)]
pub struct SystemStats {
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub load_average: Option<[f64; 3]>,
}

/// A `Name:   1234 kB` line of a `/proc` status file, in bytes (or the bare number).
fn proc_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        })
    })
}

/// User plus system CPU seconds from `/proc/self/stat` (fields 14 and 15, counted after the
/// parenthesised command name, which may itself contain spaces).
fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SEC)
}

async fn read(path: &str) -> Option<String> {
    tokio::fs::read_to_string(path).await.ok()
}

async fn count_entries(path: &str) -> Option<u64> {
    let mut dir = tokio::fs::read_dir(path).await.ok()?;
    let mut n = 0;
    while let Ok(Some(_)) = dir.next_entry().await {
        n += 1;
    }
    Some(n)
}

/// Reads the process figures (on tokio's blocking pool, through `tokio::fs`).
pub async fn process_stats() -> ProcessStats {
    let (status, stat, open_fds) = tokio::join!(
        read("/proc/self/status"),
        read("/proc/self/stat"),
        count_entries("/proc/self/fd"),
    );
    ProcessStats {
        pid: std::process::id(),
        rss_bytes: status.as_deref().and_then(|s| proc_field(s, "VmRSS")),
        threads: status.as_deref().and_then(|s| proc_field(s, "Threads")),
        cpu_seconds: stat.as_deref().and_then(cpu_seconds_from_stat),
        open_fds,
    }
}

/// Reads the machine figures (on tokio's blocking pool, through `tokio::fs`).
pub async fn system_stats() -> SystemStats {
    let (meminfo, loadavg) = tokio::join!(read("/proc/meminfo"), read("/proc/loadavg"));
    let load_average = loadavg.as_deref().and_then(|l| {
        let mut it = l.split_whitespace().map(|v| v.parse::<f64>().ok());
        Some([it.next()??, it.next()??, it.next()??])
    });
    SystemStats {
        memory_total_bytes: meminfo.as_deref().and_then(|m| proc_field(m, "MemTotal")),
        memory_available_bytes: meminfo
            .as_deref()
            .and_then(|m| proc_field(m, "MemAvailable")),
        load_average,
    }
}

/// `healthy`, `warning` (above 80 %) or `critical` (above 90 %) for the process's resident memory
/// against the machine's; `unknown` without `/proc`.
pub fn memory_status(rss: Option<u64>, total: Option<u64>) -> (&'static str, Option<f64>) {
    match (rss, total) {
        (Some(rss), Some(total)) if total > 0 => {
            let percent = rss as f64 / total as f64 * 100.0;
            let status = if percent > 90.0 {
                "critical"
            } else if percent > 80.0 {
                "warning"
            } else {
                "healthy"
            };
            (status, Some((percent * 100.0).round() / 100.0))
        }
        _ => ("unknown", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let status = "Name:\tkyros\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(proc_field(status, "VmRSS"), Some(2048 * 1024));
        assert_eq!(proc_field(status, "Threads"), Some(7));
        assert_eq!(proc_field(status, "VmSwap"), None);
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_seconds_from_stat(stat), Some(3.0));
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(class_index(503), 4);
        assert_eq!(memory_status(Some(95), Some(100)).0, "critical");
        assert_eq!(memory_status(Some(85), Some(100)).0, "warning");
        assert_eq!(memory_status(Some(10), Some(100)).0, "healthy");
        assert_eq!(memory_status(None, Some(100)).0, "unknown");
    }

    #[test]
    fn cpu_use_is_the_difference_between_samples() {
        let mut cpu = CpuState::default();
        let t0 = Instant::now();
        cpu.sample(t0, 10.0);
        assert_eq!(cpu.usage, None);
        cpu.sample(t0 + Duration::from_secs(4), 11.0);
        assert_eq!(
            cpu.usage,
            Some(CpuUsage {
                percent: 25.0,
                window_seconds: 4.0
            })
        );
    }
}

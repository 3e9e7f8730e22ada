//! `/api/v1/monitoring/*`: health, process and machine figures, request performance, dependency
//! status and recent security events — for administrators outside `ENVIRONMENT=local` (public
//! there). Every figure is real: the database is pinged, `/proc` is read through `tokio::fs`
//! (never blocking the runtime), CPU use comes from the background sample of
//! [`crate::telemetry`] (no sampling sleep on the request path). Failures are reported as states, never as error text.

use axum::Json;
use axum::extract::State;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, access};
use super::extract::Query;
use super::utils::{check_database, redis_status};
use crate::auth::rbac::AdminOutsideLocal;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::telemetry::{self, memory_status};

/// Most audit rows `logs/recent` returns.
pub const RECENT_LOGS_MAX: i64 = 200;
const RECENT_LOGS_DEFAULT: i64 = 50;

pub fn routes() -> ApiRouter {
    access(
        Access::AdminOutsideLocal,
        ApiRouter::new()
            .routes(routes!(health))
            .routes(routes!(metrics))
            .routes(routes!(database_health))
            .routes(routes!(performance))
            .routes(routes!(dependencies))
            .routes(routes!(recent_logs)),
    )
}

fn timestamp(state: &AppState) -> String {
    state
        .clock
        .now()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The service's health in one word, with its reasons.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitoringHealth {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// RFC 3339, milliseconds.
    pub timestamp: String,
    pub service: String,
    pub version: String,
    pub environment: String,
    /// `healthy` or `unhealthy`.
    pub database: String,
    /// `healthy`, `warning`, `critical` or `unknown`.
    pub memory: String,
}

/// `unhealthy` when the database does not answer or the process holds more than 90 % of the
/// machine's memory, `degraded` above 80 %, else `healthy`. Always 200: the state is the answer.
#[utoipa::path(
    get, path = "/api/v1/monitoring/health", tag = "monitoring",
    responses(
        (status = 200, description = "The health (whatever it is)", body = MonitoringHealth),
    ),
)]
async fn health(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<MonitoringHealth> {
    let (db, process, system) = tokio::join!(
        check_database(&state),
        telemetry::process_stats(),
        telemetry::system_stats()
    );
    let (memory, _) = memory_status(process.rss_bytes, system.memory_total_bytes);
    let status = if !db.healthy || memory == "critical" {
        "unhealthy"
    } else if memory == "warning" {
        "degraded"
    } else {
        "healthy"
    };
    Json(MonitoringHealth {
        status: status.into(),
        timestamp: timestamp(&state),
        service: state.settings().project_name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        environment: state.settings().environment.as_str().into(),
        database: db.status().into(),
        memory: memory.into(),
    })
}

/// Process, database pool, limiter, audit and machine figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitoringMetrics {
    pub timestamp: String,
    pub process: ProcessFigures,
    pub database: PoolFigures,
    pub rate_limiter: LimiterFigures,
    pub audit: AuditFigures,
    pub system: SystemFigures,
}

/// This process (null where `/proc` does not say).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessFigures {
    pub pid: u32,
    pub resident_memory_bytes: Option<u64>,
    pub memory_percent_of_machine: Option<f64>,
    /// `healthy`, `warning`, `critical` or `unknown`.
    pub memory_status: String,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub uptime_seconds: u64,
    pub cpu_seconds_total: Option<f64>,
    /// CPU use over the last background sampling window.
    pub cpu_percent: Option<f64>,
    pub cpu_window_seconds: Option<f64>,
}

/// The database connection pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolFigures {
    /// `sqlite` or `postgres`.
    pub engine: String,
    pub pool_connections: u32,
    pub pool_idle: usize,
}

/// The rate limiter.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimiterFigures {
    pub enabled: bool,
    pub redis_configured: bool,
    /// Decisions taken locally because Redis did not answer.
    pub local_fallbacks_total: u64,
    pub redis_failures_total: u64,
}

/// The audit log writer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditFigures {
    /// Rows dropped while the database was unreachable.
    pub rows_dropped_total: u64,
}

/// The machine (null where `/proc` does not say).
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemFigures {
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    /// 1, 5 and 15 minutes.
    pub load_average: Option<[f64; 3]>,
}

fn pool_figures(state: &AppState) -> PoolFigures {
    let (size, idle) = state.db.pool_stats();
    PoolFigures {
        engine: state.db.engine().into(),
        pool_connections: size,
        pool_idle: idle,
    }
}

/// Service figures as JSON.
#[utoipa::path(
    get, path = "/api/v1/monitoring/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "The figures", body = MonitoringMetrics),
    ),
)]
async fn metrics(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<MonitoringMetrics> {
    let (process, system) = tokio::join!(telemetry::process_stats(), telemetry::system_stats());
    let cpu = state.telemetry.cpu_usage();
    let (memory, memory_percent) = memory_status(process.rss_bytes, system.memory_total_bytes);
    Json(MonitoringMetrics {
        timestamp: timestamp(&state),
        process: ProcessFigures {
            pid: process.pid,
            resident_memory_bytes: process.rss_bytes,
            memory_percent_of_machine: memory_percent,
            memory_status: memory.into(),
            threads: process.threads,
            open_fds: process.open_fds,
            uptime_seconds: state.telemetry.uptime().as_secs(),
            cpu_seconds_total: process.cpu_seconds,
            cpu_percent: cpu.map(|c| c.percent),
            cpu_window_seconds: cpu.map(|c| c.window_seconds),
        },
        database: pool_figures(&state),
        rate_limiter: LimiterFigures {
            enabled: state.limiter.enabled(),
            redis_configured: state.redis.is_some(),
            local_fallbacks_total: state.limiter.local_fallbacks(),
            redis_failures_total: state.redis.as_ref().map_or(0, |r| r.failures()),
        },
        audit: AuditFigures {
            rows_dropped_total: state.audit.dropped(),
        },
        system: SystemFigures {
            memory_total_bytes: system.memory_total_bytes,
            memory_available_bytes: system.memory_available_bytes,
            load_average: system.load_average,
        },
    })
}

/// The database's answer to a ping.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseHealth {
    /// `healthy` or `unhealthy`.
    pub status: String,
    pub engine: String,
    /// The ping's round trip; null when it failed.
    pub latency_ms: Option<f64>,
    pub timestamp: String,
}

/// Database health: a ping, with its latency.
#[utoipa::path(
    get, path = "/api/v1/monitoring/database/health", tag = "monitoring",
    responses(
        (status = 200, description = "The database's health", body = DatabaseHealth),
    ),
)]
async fn database_health(
    State(state): State<AppState>,
    _: AdminOutsideLocal,
) -> Json<DatabaseHealth> {
    let db = check_database(&state).await;
    Json(DatabaseHealth {
        status: db.status().into(),
        engine: state.db.engine().into(),
        latency_ms: db.latency_ms(),
        timestamp: timestamp(&state),
    })
}

/// Request performance since the start.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Performance {
    pub uptime_seconds: u64,
    pub requests_total: u64,
    /// Responses by status class: `1xx` … `5xx`.
    pub by_status_class: StatusClasses,
    pub latency: LatencyFigures,
    /// By route template, most requested first.
    pub routes: Vec<RouteFigures>,
    /// Added here; not part of the telemetry figures.
    #[serde(default)]
    pub timestamp: String,
}

/// Responses by status class.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    #[schema(rename = "1xx")]
    pub c1: u64,
    #[serde(rename = "2xx")]
    #[schema(rename = "2xx")]
    pub c2: u64,
    #[serde(rename = "3xx")]
    #[schema(rename = "3xx")]
    pub c3: u64,
    #[serde(rename = "4xx")]
    #[schema(rename = "4xx")]
    pub c4: u64,
    #[serde(rename = "5xx")]
    #[schema(rename = "5xx")]
    pub c5: u64,
}

/// LatencyFigures of every request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatencyFigures {
    pub mean_ms: f64,
    pub max_ms: f64,
    /// Cumulative histogram, the last bucket `+Inf`.
    pub buckets_seconds: Vec<LatencyBucket>,
}

/// One cumulative histogram bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatencyBucket {
    pub le: BucketBound,
    /// Requests that took at most `le`.
    pub count: u64,
}

/// Upper bound of a bucket: seconds, or `"+Inf"` for the last one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BucketBound {
    Seconds(f64),
    Infinite(String),
}

/// The figures of one route template (`unmatched` for requests no route matched).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RouteFigures {
    pub method: String,
    pub route: String,
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// Request counts and latency, overall and by route.
#[utoipa::path(
    get, path = "/api/v1/monitoring/performance", tag = "monitoring",
    responses(
        (status = 200, description = "The figures", body = Performance),
    ),
)]
async fn performance(
    State(state): State<AppState>,
    _: AdminOutsideLocal,
) -> Result<Json<Performance>, ApiError> {
    let mut body: Performance =
        serde_json::from_value(state.telemetry.performance()).map_err(ApiError::internal)?;
    body.timestamp = timestamp(&state);
    Ok(Json(body))
}

/// The state of the service's dependencies.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyReport {
    /// `healthy`, or `degraded` when one is not.
    pub status: String,
    pub timestamp: String,
    pub dependencies: DependencyStates,
}

/// Each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyStates {
    pub database: DatabaseState,
    pub redis: RedisState,
}

/// The database.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseState {
    /// `healthy` or `unhealthy`.
    pub status: String,
    pub engine: String,
    pub latency_ms: Option<f64>,
}

/// Redis.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedisState {
    /// `healthy`, `unhealthy` or `not_configured`.
    pub status: String,
}

/// Dependency status: the database and Redis.
#[utoipa::path(
    get, path = "/api/v1/monitoring/dependencies", tag = "monitoring",
    responses(
        (status = 200, description = "The dependencies", body = DependencyReport),
    ),
)]
async fn dependencies(
    State(state): State<AppState>,
    _: AdminOutsideLocal,
) -> Json<DependencyReport> {
    let db = check_database(&state).await;
    let redis = redis_status(&state);
    let status = if db.healthy && redis != "unhealthy" {
        "healthy"
    } else {
        "degraded"
    };
    Json(DependencyReport {
        status: status.into(),
        timestamp: timestamp(&state),
        dependencies: DependencyStates {
            database: DatabaseState {
                status: db.status().into(),
                engine: state.db.engine().into(),
                latency_ms: db.latency_ms(),
            },
            redis: RedisState {
                status: redis.into(),
            },
        },
    })
}

/// How many rows.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Rows to return (default 50).
    #[param(minimum = 1, maximum = 200)]
    lines: Option<i64>,
}

/// The newest audit rows, summarised.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentLogs {
    /// `audit_log`.
    pub source: String,
    pub count: usize,
    /// Newest first.
    pub entries: Vec<LogEntry>,
}

/// One audit row, summarised: no actors, addresses or details.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEntry {
    /// RFC 3339, milliseconds.
    pub at: String,
    pub event: String,
    pub outcome: String,
}

/// The newest audit rows, summarised (event, outcome, time) — no actors, addresses or details;
/// the full rows are at `/api/v1/admin/audit`. `?lines=` (1–200, default 50) as in the original.
#[utoipa::path(
    get, path = "/api/v1/monitoring/logs/recent", tag = "monitoring",
    params(LogsQuery),
    responses(
        (status = 200, description = "The newest rows", body = RecentLogs),
    ),
)]
async fn recent_logs(
    State(state): State<AppState>,
    _: AdminOutsideLocal,
    query: Result<Query<LogsQuery>, ApiError>,
) -> Result<Json<RecentLogs>, ApiError> {
    let invalid = || {
        ApiError::validation(vec![FieldError::query(
            "lines",
            "int_parsing",
            format!("Input should be a whole number from 1 to {RECENT_LOGS_MAX}"),
        )])
    };
    let lines = match query.map_err(|_| invalid())?.0.lines {
        None => RECENT_LOGS_DEFAULT,
        Some(n) if (1..=RECENT_LOGS_MAX).contains(&n) => n,
        Some(_) => return Err(invalid()),
    };
    let rows = state.audit.recent(None, lines).await?;
    let entries: Vec<LogEntry> = rows
        .into_iter()
        .map(|r| LogEntry {
            at: r.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            event: r.event,
            outcome: r.outcome,
        })
        .collect();
    Ok(Json(RecentLogs {
        source: "audit_log".into(),
        count: entries.len(),
        entries,
    }))
}

//! `/api/v1/monitoring/*`: health, process and machine figures, request performance, dependency
//! status and recent security events — for administrators outside `ENVIRONMENT=local` (public
//! there). Every figure is real: the database is pinged, `/proc` is read through `tokio::fs`
//! (never blocking the runtime), CPU use comes from the background sample of
//! [`crate::telemetry`] (no sampling sleep on the request path). Failures are reported as states, never as error text.

use super::extract::Query;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{Value, json};

use super::utils::{check_database, redis_status};
use crate::auth::rbac::AdminOutsideLocal;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::telemetry::{self, memory_status};

/// Most audit rows `logs/recent` returns.
pub const RECENT_LOGS_MAX: i64 = 200;
const RECENT_LOGS_DEFAULT: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/monitoring/health", get(health))
        .route("/api/v1/monitoring/metrics", get(metrics))
        .route("/api/v1/monitoring/database/health", get(database_health))
        .route("/api/v1/monitoring/performance", get(performance))
        .route("/api/v1/monitoring/dependencies", get(dependencies))
        .route("/api/v1/monitoring/logs/recent", get(recent_logs))
}

fn timestamp(state: &AppState) -> String {
    state
        .clock
        .now()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `unhealthy` when the database does not answer or the process holds more than 90 % of the
/// machine's memory, `degraded` above 80 %, else `healthy`. Always 200: the state is the answer.
async fn health(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
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
    Json(json!({
        "status": status,
        "timestamp": timestamp(&state),
        "service": state.settings.project_name,
        "version": env!("CARGO_PKG_VERSION"),
        "environment": state.settings.environment.as_str(),
        "database": db.status(),
        "memory": memory,
    }))
}

fn pool_json(state: &AppState) -> Value {
    let (size, idle) = state.db.pool_stats();
    json!({"engine": state.db.engine(), "pool_connections": size, "pool_idle": idle})
}

async fn metrics(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
    let (process, system) = tokio::join!(telemetry::process_stats(), telemetry::system_stats());
    let cpu = state.telemetry.cpu_usage();
    let (memory, memory_percent) = memory_status(process.rss_bytes, system.memory_total_bytes);
    Json(json!({
        "timestamp": timestamp(&state),
        "process": {
            "pid": process.pid,
            "resident_memory_bytes": process.rss_bytes,
            "memory_percent_of_machine": memory_percent,
            "memory_status": memory,
            "threads": process.threads,
            "open_fds": process.open_fds,
            "uptime_seconds": state.telemetry.uptime().as_secs(),
            "cpu_seconds_total": process.cpu_seconds,
            "cpu_percent": cpu.map(|c| c.percent),
            "cpu_window_seconds": cpu.map(|c| c.window_seconds),
        },
        "database": pool_json(&state),
        "rate_limiter": {
            "enabled": state.limiter.enabled(),
            "redis_configured": state.redis.is_some(),
            "local_fallbacks_total": state.limiter.local_fallbacks(),
            "redis_failures_total": state.redis.as_ref().map_or(0, |r| r.failures()),
        },
        "audit": {"rows_dropped_total": state.audit.dropped()},
        "system": {
            "memory_total_bytes": system.memory_total_bytes,
            "memory_available_bytes": system.memory_available_bytes,
            "load_average": system.load_average,
        },
    }))
}

async fn database_health(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
    let db = check_database(&state).await;
    Json(json!({
        "status": db.status(),
        "engine": state.db.engine(),
        "latency_ms": db.latency_ms(),
        "timestamp": timestamp(&state),
    }))
}

async fn performance(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
    let mut body = state.telemetry.performance();
    if let Value::Object(map) = &mut body {
        map.insert("timestamp".into(), json!(timestamp(&state)));
    }
    Json(body)
}

async fn dependencies(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
    let db = check_database(&state).await;
    let redis = redis_status(&state);
    let status = if db.healthy && redis != "unhealthy" {
        "healthy"
    } else {
        "degraded"
    };
    Json(json!({
        "status": status,
        "timestamp": timestamp(&state),
        "dependencies": {
            "database": {
                "status": db.status(),
                "engine": state.db.engine(),
                "latency_ms": db.latency_ms(),
            },
            "redis": {"status": redis},
        },
    }))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    lines: Option<String>,
}

/// The newest audit rows, summarised (event, outcome, time) — no actors, addresses or details;
/// the full rows are at `/api/v1/admin/audit`. `?lines=` (1–200, default 50) as in the original.
async fn recent_logs(
    State(state): State<AppState>,
    _: AdminOutsideLocal,
    query: Result<Query<LogsQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let invalid = || {
        ApiError::validation(vec![FieldError::query(
            "lines",
            "int_parsing",
            format!("Input should be a whole number from 1 to {RECENT_LOGS_MAX}"),
        )])
    };
    let lines = match query.map_err(|_| invalid())?.0.lines {
        None => RECENT_LOGS_DEFAULT,
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=RECENT_LOGS_MAX).contains(n))
            .ok_or_else(invalid)?,
    };
    let rows = state.audit.recent(None, lines).await?;
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "at": r.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "event": r.event,
                "outcome": r.outcome,
            })
        })
        .collect();
    Ok(Json(json!({
        "source": "audit_log",
        "count": entries.len(),
        "entries": entries,
    })))
}

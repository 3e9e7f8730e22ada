//! `/api/v1/utils/*`: the original service's health check and service information.
//!
//! The health check is public (it is the container's health probe) and says only healthy or
//! not, never why. The information discloses configuration, so outside `ENVIRONMENT=local` it is
//! for administrators.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::rbac::AdminOutsideLocal;
use crate::model::DbCheck;
use crate::state::AppState;

/// Longest wait for the database in a health check.
pub const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/utils/health-check", get(health_check))
        .route("/api/v1/utils/info", get(info))
}

/// Pings the database with a short timeout (`Db::check`).
pub async fn check_database(state: &AppState) -> DbCheck {
    state.db.check(DB_PING_TIMEOUT).await
}

/// `healthy`, `unhealthy` or `not_configured`, from the Redis connection's health flag (kept up
/// to date by its probe; reading it does no I/O).
pub fn redis_status(state: &AppState) -> &'static str {
    match state.redis.as_ref().map(|r| r.is_healthy()) {
        Some(true) => "healthy",
        Some(false) => "unhealthy",
        None => "not_configured",
    }
}

async fn health_check(State(state): State<AppState>) -> Json<Value> {
    let db = check_database(&state).await;
    let redis = redis_status(&state);
    let status = if db.healthy && redis != "unhealthy" {
        "healthy"
    } else {
        "degraded"
    };
    Json(json!({
        "status": status,
        "service": "orchestrator",
        "version": env!("CARGO_PKG_VERSION"),
        "environment": state.settings.environment.as_str(),
        "database": db.status(),
        "redis": redis,
    }))
}

async fn info(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<Value> {
    let s = &state.settings;
    Json(json!({
        "service": "orchestrator",
        "version": env!("CARGO_PKG_VERSION"),
        "project_name": s.project_name,
        "environment": s.environment.as_str(),
        "api_v1_str": "/api/v1",
        "cors_origins": s.cors_origins,
        "features": {
            "emails_enabled": false,
            "local_password_auth": true,
            "seed_data": false,
        },
    }))
}

//! `/api/v1/utils/*`: the original service's health check and service information.
//!
//! The health check is public (it is the container's health probe) and says only healthy or
//! not, never why. The information discloses configuration, so outside `ENVIRONMENT=local` it is
//! for administrators.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, access};
use crate::auth::rbac::AdminOutsideLocal;
use crate::model::DbCheck;
use crate::state::AppState;

/// Longest wait for the database in a health check.
pub const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(access(
            Access::Public,
            ApiRouter::new().routes(routes!(health_check)),
        ))
        .merge(access(
            Access::AdminOutsideLocal,
            ApiRouter::new().routes(routes!(info)),
        ))
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

/// The service's health, as the original reported it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthCheck {
    /// `healthy`, or `degraded` when a dependency is not.
    pub status: String,
    /// `orchestrator`.
    pub service: String,
    pub version: String,
    pub environment: String,
    /// `healthy` or `unhealthy`.
    pub database: String,
    /// `healthy`, `unhealthy` or `not_configured`.
    pub redis: String,
}

/// Health check (the container's probe): healthy or not, never why. Always 200.
#[utoipa::path(
    get, path = "/api/v1/utils/health-check", tag = "utils",
    responses((status = 200, description = "The health", body = HealthCheck)),
)]
async fn health_check(State(state): State<AppState>) -> Json<HealthCheck> {
    let db = check_database(&state).await;
    let redis = redis_status(&state);
    let status = if db.healthy && redis != "unhealthy" {
        "healthy"
    } else {
        "degraded"
    };
    Json(HealthCheck {
        status: status.into(),
        service: "orchestrator".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        environment: state.settings().environment.as_str().into(),
        database: db.status().into(),
        redis: redis.into(),
    })
}

/// Service information.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceInfo {
    /// `orchestrator`.
    pub service: String,
    pub version: String,
    pub project_name: String,
    pub environment: String,
    /// `/api/v1`.
    pub api_v1_str: String,
    /// The origins CORS admits.
    pub cors_origins: Vec<String>,
    pub features: ServiceFeatures,
}

/// Features of the original service and whether this one has them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceFeatures {
    pub emails_enabled: bool,
    pub local_password_auth: bool,
    pub seed_data: bool,
}

/// Service information (discloses configuration).
#[utoipa::path(
    get, path = "/api/v1/utils/info", tag = "utils",
    responses(
        (status = 200, description = "The information", body = ServiceInfo),
    ),
)]
async fn info(State(state): State<AppState>, _: AdminOutsideLocal) -> Json<ServiceInfo> {
    let s = &state.settings();
    Json(ServiceInfo {
        service: "orchestrator".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        project_name: s.project_name.clone(),
        environment: s.environment.as_str().into(),
        api_v1_str: "/api/v1".into(),
        cors_origins: s.cors_origins.clone(),
        features: ServiceFeatures {
            emails_enabled: false,
            local_password_auth: true,
            seed_data: false,
        },
    })
}

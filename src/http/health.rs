//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, ErrorEnvelope, Message, access};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    access(
        Access::Public,
        ApiRouter::new()
            .routes(routes!(root))
            .routes(routes!(health))
            .routes(routes!(healthz)),
    )
}

/// A one-word state.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    pub status: String,
}

impl HealthStatus {
    fn new(status: &str) -> Json<HealthStatus> {
        Json(HealthStatus {
            status: status.into(),
        })
    }
}

/// The service is running.
#[utoipa::path(
    get, path = "/", tag = "health",
    responses((status = 200, description = "Running", body = Message)),
)]
async fn root() -> Json<Message> {
    Message::new("Orchestrator API is running")
}

/// Liveness: the process answers (`healthy`).
#[utoipa::path(
    get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = HealthStatus)),
)]
async fn health() -> Json<HealthStatus> {
    HealthStatus::new("healthy")
}

/// Readiness: the database answers (`ok`). The failure says nothing about why (that goes to the
/// log).
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 500, description = "The database does not answer", body = ErrorEnvelope),
    ),
)]
async fn healthz(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => Ok(HealthStatus::new("ok")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "database health check failed");
            Err(db_unavailable())
        }
        Err(_) => {
            tracing::error!("database health check timed out");
            Err(db_unavailable())
        }
    }
}

fn db_unavailable() -> ApiError {
    let mut e = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "DB unavailable");
    e.kind = "http_exception";
    e
}

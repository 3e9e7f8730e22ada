//! Liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/healthz", get(healthz))
}

async fn root() -> Json<Value> {
    Json(json!({"message": "Orchestrator API is running"}))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

/// Readiness: the database answers. The failure says nothing about why (that goes to the log).
async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ok"}))),
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

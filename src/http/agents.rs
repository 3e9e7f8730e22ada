//! `/api/v1/agents`: agents are API-key principals with the `jobs:claim` scope; they run jobs
//! through leases (`orchestrator::leases`: claim, heartbeat, complete, fail, each after the
//! first presenting the claim's `lease_token` — 422 without, 409 with a stale one).
//! `GET /api/v1/agents/` lists agents with their status, last heartbeat and current job.

use super::extract::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonObject;
use crate::auth::api_keys::Scope;
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::auth::rbac::require_scope;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::leases::{self, Agent, LeaseError, leased_json};
use crate::state::AppState;

const RESULT_MAX_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/", get(list))
        .route("/api/v1/agents/claim", post(claim))
        .route("/api/v1/agents/jobs/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/agents/jobs/{id}/complete", post(complete))
        .route("/api/v1/agents/jobs/{id}/fail", post(fail))
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::NotFound => ApiError::not_found(e.to_string()),
            LeaseError::Store(e) => e.into(),
            other => ApiError::conflict(other.to_string()),
        }
    }
}

/// The calling agent, after checking the `jobs:claim` scope.
fn agent(current: &CurrentUser) -> Result<Agent<'_>, ApiError> {
    require_scope(current, Scope::JobsClaim)?;
    match current.method {
        AuthMethod::ApiKey { key_id, .. } => Ok(Agent {
            key_id,
            owner: &current.user,
        }),
        _ => Err(ApiError::forbidden(
            "Only agents (API keys with the jobs:claim scope) can run jobs",
        )),
    }
}

/// The `lease_token` of an agent's request body: required (422 without it).
fn lease_token(body: Option<&JsonObject>) -> Result<String, ApiError> {
    let missing = || {
        ApiError::validation(vec![FieldError::body(
            "lease_token",
            "missing",
            "Field required",
        )])
    };
    let body = body.ok_or_else(missing)?;
    let mut fields = body.fields();
    let token = fields.string("lease_token", 64);
    fields.finish()?;
    token.ok_or_else(missing)
}

async fn claim(State(state): State<AppState>, current: CurrentUser) -> Result<Response, ApiError> {
    let agent = agent(&current)?;
    Ok(match leases::claim(&state, agent).await? {
        Some(job) => Json(leased_json(&job)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn heartbeat(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let agent = agent(&current)?;
    let token = lease_token(body.as_ref())?;
    let job = leases::heartbeat(&state, agent, &id, &token).await?;
    Ok(Json(leased_json(&job)).into_response())
}

async fn complete(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let agent = agent(&current)?;
    let token = lease_token(body.as_ref())?;
    let result = match body.as_ref().and_then(|b| b.0.get("result")) {
        None | Some(Value::Null) => None,
        Some(v) if v.to_string().len() <= RESULT_MAX_BYTES => Some(v.clone()),
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::body(
                "result",
                "too_long",
                "result must be at most 64 KiB of JSON",
            )]));
        }
    };
    let job = leases::complete(&state, agent, &id, &token, result).await?;
    Ok(Json(leased_json(&job)).into_response())
}

async fn fail(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let agent = agent(&current)?;
    let token = lease_token(body.as_ref())?;
    let error = match &body {
        Some(b) => {
            let mut fields = b.fields();
            let e = fields.optional_string("error", 4096);
            fields.finish()?;
            e
        }
        None => None,
    };
    let job = leases::fail(&state, agent, &id, &token, error).await?;
    Ok(Json(leased_json(&job)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    status: Option<String>,
}

/// The original shape `{agents, total, page, pageSize}`, now with real agents.
async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    require_scope(&current, Scope::JobsRead)?;
    let page = q.page.unwrap_or(1).max(1);
    let page_size = q.page_size.unwrap_or(20).clamp(1, 100);
    let agents: Vec<Value> = leases::agents(&state, &current.user)
        .await?
        .into_iter()
        .filter(|a| q.status.as_deref().is_none_or(|s| s == a.status))
        .map(|a| {
            json!({
                "id": a.key_id,
                "name": a.name,
                "owner": a.owner_id,
                "status": a.status,
                "lastHeartbeatAt": a.last_seen_at,
                "currentJob": a.current_job.as_ref().map(|j| json!({"id": j.id, "name": j.name, "leaseExpiresAt": j.lease_expires_at})),
            })
        })
        .collect();
    let total = agents.len() as i64;
    let items: Vec<Value> = agents
        .into_iter()
        .skip(((page - 1) * page_size) as usize)
        .take(page_size as usize)
        .collect();
    Ok(Json(
        json!({"agents": items, "total": total, "page": page, "pageSize": page_size}),
    ))
}

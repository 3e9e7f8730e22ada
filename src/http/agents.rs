//! `/api/v1/agents`: agents are API-key principals with the `jobs:claim` scope. An agent claims
//! the next pending job (priority, then age) with a lease and its fencing token
//! (`lease_token`, new at every claim), keeps it alive with heartbeats and completes or fails it
//! with a result — each of those presenting the token (422 without, 409 with a stale one). A lease that runs out returns the job to `pending` (up to
//! `KYROS_JOB_MAX_ATTEMPTS` runs). `GET /api/v1/agents/` lists agents with their status, last
//! heartbeat and current job.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::types::Json as DbJson;
use uuid::Uuid;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::body::JsonObject;
use super::events::emit;
use crate::auth::api_keys::Scope;
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::auth::rbac::require_scope;
use crate::clock::at_storage_precision;
use crate::crypto::{ct_eq, random_bytes};
use crate::error::{ApiError, FieldError};
use crate::orchestrator::jobs::{self, JobStatus};
use crate::state::AppState;
use crate::store::api_keys as keys;
use crate::store::jobs::{self as store, JobRow};

/// An agent seen within this many seconds is online.
const ONLINE_SECS: i64 = 120;
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

/// The calling agent's key id, after checking the `jobs:claim` scope.
fn agent(current: &CurrentUser) -> Result<Uuid, ApiError> {
    require_scope(current, Scope::JobsClaim)?;
    match current.method {
        AuthMethod::ApiKey { key_id, .. } => Ok(key_id),
        _ => Err(ApiError::forbidden(
            "Only agents (API keys with the jobs:claim scope) can run jobs",
        )),
    }
}

/// Returns expired leases to the queue (or fails them), so a claim never waits for a sweeper.
pub async fn requeue_expired(state: &AppState) -> Result<(), ApiError> {
    let now = at_storage_precision(state.clock.now());
    for job in store::expired_leases(&state.db, now).await? {
        let next = jobs::expire_lease(&job, now, state.settings.job_max_attempts);
        // Losing this race means another request already handled the job.
        if store::update_status(&state.db, &next, job.version).await? {
            let name = if next.status == JobStatus::Pending.as_str() {
                "job_requeued"
            } else {
                "job_failed"
            };
            emit(
                state,
                jobs::event(&next, name, None, json!({"reason": "lease expired"})),
            )
            .await;
        }
    }
    Ok(())
}

async fn touch(state: &AppState, key_id: Uuid, current: &CurrentUser) -> Result<(), ApiError> {
    let name = keys::find_by_id(&state.db, key_id)
        .await?
        .map_or_else(|| "agent".to_owned(), |k| k.name);
    store::touch_agent(
        &state.db,
        key_id,
        &name,
        current.user.id,
        at_storage_precision(state.clock.now()),
    )
    .await?;
    Ok(())
}

async fn claim(State(state): State<AppState>, current: CurrentUser) -> Result<Response, ApiError> {
    let key_id = agent(&current)?;
    requeue_expired(&state).await?;
    touch(&state, key_id, &current).await?;
    let now = at_storage_precision(state.clock.now());
    let lease = now + Duration::seconds(state.settings.job_lease_secs);
    let lease_token = URL_SAFE_NO_PAD.encode(random_bytes::<18>());
    // An agent works only what its owner may see (auth::policy).
    let owner = crate::auth::policy::claimable_owner(&current.user);
    match store::claim(&state.db, key_id, now, lease, &lease_token, owner).await? {
        Some(job) => {
            emit(
                &state,
                jobs::event(&job, "job_claimed", None, json!({"agent_id": key_id})),
            )
            .await;
            Ok(Json(leased_json(&job)).into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// The job as its agent sees it: with the fencing token of its lease.
fn leased_json(job: &JobRow) -> Value {
    let mut body = jobs::to_json(job);
    body["lease_token"] = json!(job.lease_token);
    body
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

/// The job if this agent holds its lease *under this token*: a worker whose lease expired and
/// was handed out again (to any agent, the same key included) gets 409, as in job queues with
/// fencing tokens.
async fn leased(
    state: &AppState,
    current: &CurrentUser,
    key_id: Uuid,
    id: &str,
    token: &str,
) -> Result<JobRow, ApiError> {
    let not_found = || ApiError::not_found("Job not found");
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    // A job its owner may not see does not exist for an agent.
    let job = store::find(&state.db, id)
        .await?
        .filter(|job| crate::auth::policy::may_see_job(&current.user, job.owner_id))
        .ok_or_else(not_found)?;
    let now = state.clock.now();
    let held = job.status == JobStatus::Running.as_str()
        && job.lease_owner == Some(key_id)
        && job.lease_expires_at.is_some_and(|until| until > now);
    if !held {
        return Err(ApiError::conflict(
            "This agent does not hold a lease on the job",
        ));
    }
    let current = job
        .lease_token
        .as_deref()
        .is_some_and(|t| ct_eq(t.as_bytes(), token.as_bytes()));
    if !current {
        return Err(ApiError::conflict(
            "The lease token is not the job's current one: the lease was lost",
        ));
    }
    Ok(job)
}

async fn save(
    state: &AppState,
    next: JobRow,
    version: i32,
    event: Option<&str>,
) -> Result<Response, ApiError> {
    if !store::update_status(&state.db, &next, version).await? {
        return Err(ApiError::conflict("The job was changed by another request"));
    }
    let mut next = next;
    next.version += 1;
    if let Some(name) = event {
        emit(state, jobs::event(&next, name, None, json!({}))).await;
    }
    Ok(Json(leased_json(&next)).into_response())
}

async fn heartbeat(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let key_id = agent(&current)?;
    let token = lease_token(body.as_ref())?;
    let job = leased(&state, &current, key_id, &id, &token).await?;
    touch(&state, key_id, &current).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next = job.clone();
    next.updated_at = now;
    next.lease_expires_at = Some(now + Duration::seconds(state.settings.job_lease_secs));
    save(&state, next, job.version, None).await
}

async fn complete(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let key_id = agent(&current)?;
    let token = lease_token(body.as_ref())?;
    let result = match body.as_ref().and_then(|b| b.0.get("result")) {
        None | Some(Value::Null) => None,
        Some(v) if v.to_string().len() <= RESULT_MAX_BYTES => Some(DbJson(v.clone())),
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::body(
                "result",
                "too_long",
                "result must be at most 64 KiB of JSON",
            )]));
        }
    };
    let job = leased(&state, &current, key_id, &id, &token).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next = jobs::transition(&job, JobStatus::Completed, now).map_err(|e| {
        ApiError::conflict(format!(
            "Invalid status transition from {} to {}",
            e.from, e.to
        ))
    })?;
    next.result = result;
    save(&state, next, job.version, Some("job_completed")).await
}

async fn fail(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let key_id = agent(&current)?;
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
    let job = leased(&state, &current, key_id, &id, &token).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next = jobs::transition(&job, JobStatus::Failed, now).map_err(|e| {
        ApiError::conflict(format!(
            "Invalid status transition from {} to {}",
            e.from, e.to
        ))
    })?;
    next.error = error;
    save(&state, next, job.version, Some("job_failed")).await
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
    requeue_expired(&state).await?;
    let page = q.page.unwrap_or(1).max(1);
    let page_size = q.page_size.unwrap_or(20).clamp(1, 100);
    let now = state.clock.now();
    let mut agents = Vec::new();
    for a in store::agents(&state.db).await? {
        if !crate::auth::policy::may_see_agent(&current.user, a.owner_id) {
            continue;
        }
        let current_job = store::leased_by(&state.db, a.key_id)
            .await?
            .into_iter()
            .next();
        let online = (now - a.last_seen_at).num_seconds() <= ONLINE_SECS;
        let status = match (online, &current_job) {
            (true, Some(_)) => "active",
            (true, None) => "idle",
            (false, _) => "offline",
        };
        if q.status.as_deref().is_some_and(|s| s != status) {
            continue;
        }
        agents.push(json!({
            "id": a.key_id,
            "name": a.name,
            "owner": a.owner_id,
            "status": status,
            "lastHeartbeatAt": a.last_seen_at,
            "currentJob": current_job.as_ref().map(|j| json!({"id": j.id, "name": j.name, "leaseExpiresAt": j.lease_expires_at})),
        }));
    }
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

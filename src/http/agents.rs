//! `/api/v1/agents`: agents are API-key principals with the `jobs:claim` scope; they run jobs
//! through leases (`orchestrator::leases`: claim, heartbeat, complete, fail, each after the
//! first presenting the claim's `lease_token` — 422 without, 409 with a stale one).
//! `GET /api/v1/agents/` lists agents with their status, last heartbeat and current job.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::extract::{Json, Path, Query};
use crate::auth::principal::AuthMethod;
use crate::auth::rbac::{Authorized, JobsClaim, JobsRead};
use crate::error::{ApiError, FieldError};
use crate::orchestrator::leases::{self, Agent, LeaseError, LeasedJobView};
use crate::state::AppState;

const RESULT_MAX_BYTES: usize = 64 * 1024;

pub fn routes() -> ApiRouter {
    access(
        Access::Any,
        ApiRouter::new()
            .routes(routes!(list))
            .routes(routes!(list_alias)),
    )
    .merge(access(
        Access::Agent,
        ApiRouter::new()
            .routes(routes!(claim))
            .routes(routes!(heartbeat))
            .routes(routes!(complete))
            .routes(routes!(fail)),
    ))
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

/// The calling agent: an API key (with the `jobs:claim` scope, checked by the extractor).
fn agent(caller: &Authorized<JobsClaim>) -> Result<Agent<'_>, ApiError> {
    match caller.method {
        AuthMethod::ApiKey { key_id, .. } => Ok(Agent {
            key_id,
            owner: &caller.user,
        }),
        _ => Err(ApiError::forbidden(
            "Only agents (API keys with the jobs:claim scope) can run jobs",
        )),
    }
}

fn missing_lease_token() -> ApiError {
    ApiError::validation(vec![FieldError::body(
        "lease_token",
        "missing",
        "Field required",
    )])
}

/// A heartbeat: the lease's fencing token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LeaseBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
}

/// A completion: the fencing token and the job's result.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompleteBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
    /// Any JSON, at most 64 KiB once serialized.
    pub result: Option<serde_json::Value>,
}

/// A failure: the fencing token and the error message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FailBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
    /// What went wrong.
    #[schema(max_length = 4096)]
    pub error: Option<String>,
}

/// Claim the next pending job the agent's owner may see (highest priority, oldest first): the
/// job, now `running` under a lease, with its `lease_token`; 204 when none is waiting.
#[utoipa::path(
    post, path = "/api/v1/agents/claim", tag = "agents",
    responses(
        (status = 200, description = "The claimed job", body = LeasedJobView),
        (status = 204, description = "No job is waiting"),
    ),
)]
async fn claim(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
) -> Result<Response, ApiError> {
    let agent = agent(&caller)?;
    Ok(match leases::claim(&state, agent).await? {
        Some(job) => axum::Json(LeasedJobView::from(&job)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Extend the lease of a running job.
#[utoipa::path(
    post, path = "/api/v1/agents/jobs/{id}/heartbeat", tag = "agents",
    params(("id" = Uuid, Path, description = "the job id")),
    request_body = LeaseBody,
    responses(
        (status = 200, description = "The job with its extended lease", body = LeasedJobView),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "Not this agent's lease, or a stale lease_token", body = ErrorEnvelope),
    ),
)]
async fn heartbeat(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
    Path(id): Path<Uuid>,
    body: Option<Json<LeaseBody>>,
) -> Result<Response, ApiError> {
    let agent = agent(&caller)?;
    let Json(body) = body.ok_or_else(missing_lease_token)?;
    let job = leases::heartbeat(&state, agent, &id.to_string(), &body.lease_token).await?;
    Ok(axum::Json(LeasedJobView::from(&job)).into_response())
}

/// Complete a running job with its result.
#[utoipa::path(
    post, path = "/api/v1/agents/jobs/{id}/complete", tag = "agents",
    params(("id" = Uuid, Path, description = "the job id")),
    request_body = CompleteBody,
    responses(
        (status = 200, description = "The completed job", body = LeasedJobView),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "Not this agent's lease, or a stale lease_token", body = ErrorEnvelope),
    ),
)]
async fn complete(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
    Path(id): Path<Uuid>,
    body: Option<Json<CompleteBody>>,
) -> Result<Response, ApiError> {
    let agent = agent(&caller)?;
    let Json(body) = body.ok_or_else(missing_lease_token)?;
    let result = body.result.filter(|v| !v.is_null());
    if result
        .as_ref()
        .is_some_and(|v| v.to_string().len() > RESULT_MAX_BYTES)
    {
        return Err(ApiError::validation(vec![FieldError::body(
            "result",
            "too_long",
            "result must be at most 64 KiB of JSON",
        )]));
    }
    let job = leases::complete(&state, agent, &id.to_string(), &body.lease_token, result).await?;
    Ok(axum::Json(LeasedJobView::from(&job)).into_response())
}

/// Fail a running job (it is retried while attempts remain).
#[utoipa::path(
    post, path = "/api/v1/agents/jobs/{id}/fail", tag = "agents",
    params(("id" = Uuid, Path, description = "the job id")),
    request_body = FailBody,
    responses(
        (status = 200, description = "The job after the failure", body = LeasedJobView),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "Not this agent's lease, or a stale lease_token", body = ErrorEnvelope),
    ),
)]
async fn fail(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
    Path(id): Path<Uuid>,
    body: Option<Json<FailBody>>,
) -> Result<Response, ApiError> {
    let agent = agent(&caller)?;
    let Json(body) = body.ok_or_else(missing_lease_token)?;
    let job = leases::fail(
        &state,
        agent,
        &id.to_string(),
        &body.lease_token,
        body.error,
    )
    .await?;
    Ok(axum::Json(LeasedJobView::from(&job)).into_response())
}

/// Whether an agent is at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Online and holding a lease.
    Active,
    /// Online, no lease.
    Idle,
    /// Not seen recently.
    Offline,
}

impl AgentStatus {
    fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Idle => "idle",
            AgentStatus::Offline => "offline",
        }
    }
}

/// Paging of the agent list (the original's camelCase names).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<i64>,
    /// Agents per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<i64>,
    /// Only agents in this state.
    #[param(inline)]
    status: Option<AgentStatus>,
}

/// The job an agent holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentJob {
    pub id: Uuid,
    pub name: String,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// An agent as listed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    /// The API key's id.
    pub id: Uuid,
    pub name: String,
    /// The key owner's user id.
    pub owner: Option<Uuid>,
    /// `active`, `idle` or `offline`.
    pub status: String,
    pub last_heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub current_job: Option<AgentJob>,
}

/// The original shape `{agents, total, page, pageSize}`, now with real agents.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentList {
    pub agents: Vec<AgentEntry>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

fn query_error(field: &str, kind: &'static str, msg: &str) -> ApiError {
    ApiError::validation(vec![FieldError::query(field, kind, msg)])
}

/// The agents the caller may see, with status, last heartbeat and current job.
#[utoipa::path(
    get, path = "/api/v1/agents", tag = "agents",
    params(ListQuery),
    responses((status = 200, description = "The agents", body = AgentList)),
)]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<JobsRead>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<AgentList>, ApiError> {
    let page = q.page.unwrap_or(1);
    if page < 1 {
        return Err(query_error(
            "page",
            "greater_than_equal",
            "Input should be greater than or equal to 1",
        ));
    }
    let page_size = q.page_size.unwrap_or(20);
    if !(1..=100).contains(&page_size) {
        return Err(query_error(
            "pageSize",
            "less_than_equal",
            "Input should be from 1 to 100",
        ));
    }
    let agents: Vec<AgentEntry> = leases::agents(&state, &caller.user)
        .await?
        .into_iter()
        .filter(|a| q.status.is_none_or(|s| s.as_str() == a.status))
        .map(|a| AgentEntry {
            id: a.key_id,
            name: a.name,
            owner: a.owner_id,
            status: a.status.to_owned(),
            last_heartbeat_at: a.last_seen_at,
            current_job: a.current_job.map(|j| AgentJob {
                id: j.id,
                name: j.name,
                lease_expires_at: j.lease_expires_at,
            }),
        })
        .collect();
    let total = agents.len() as i64;
    let skip = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let agents = agents
        .into_iter()
        .skip(skip)
        .take(page_size as usize)
        .collect();
    Ok(axum::Json(AgentList {
        agents,
        total,
        page,
        page_size,
    }))
}

/// `GET /api/v1/agents/`: the original's path, the same operation as `GET /api/v1/agents`.
#[utoipa::path(
    get, path = "/api/v1/agents/", tag = "agents",
    params(ListQuery),
    responses((status = 200, description = "The agents", body = AgentList)),
)]
async fn list_alias(
    state: State<AppState>,
    caller: Authorized<JobsRead>,
    q: Query<ListQuery>,
) -> Result<axum::Json<AgentList>, ApiError> {
    list(state, caller, q).await
}

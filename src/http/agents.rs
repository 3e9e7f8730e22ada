//! `/api/v1/agents`: agents are API-key principals with the `jobs:claim` scope (`kyros agent` is
//! one); they run jobs through leases (`orchestrator::leases`: claim, heartbeat with progress,
//! output, complete, fail, release, each after the first presenting the claim's `lease_token` —
//! 422 without, 409 with a stale one). `GET /api/v1/agents/` lists agents with their status,
//! labels, runs and current jobs.

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
use crate::orchestrator::jobs::{LabelError, normalize_labels};
use crate::orchestrator::leases::{
    self, Agent, AgentInfo, LeaseError, LeasedJobView, NewOutputLine, PROGRESS_MESSAGE_MAX,
    Progress,
};
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
            .routes(routes!(fail))
            .routes(routes!(release))
            .routes(routes!(output)),
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

/// What an agent says about itself when it claims (every field optional; an older client
/// sends no body).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ClaimBody {
    /// The agent's name as people see it (default: its API key's name).
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// The agent's labels: it is handed only jobs whose `requires` are among them (lower-cased;
    /// 1–64 characters of `a-z 0-9 . _ - : /`; at most 32).
    pub labels: Option<Vec<String>>,
    /// The agent's software version.
    #[schema(max_length = 64)]
    pub version: Option<String>,
    /// The machine it runs on.
    #[schema(max_length = 255)]
    pub host: Option<String>,
}

/// A heartbeat: the lease's fencing token and, optionally, how far the run is.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LeaseBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
    /// How far the run is, from 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub progress: Option<f64>,
    /// What the run is doing (with `progress`).
    #[schema(max_length = 1024)]
    pub message: Option<String>,
}

/// A completion: the fencing token and the job's result.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompleteBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
    /// Any JSON, at most 64 KiB once serialized.
    pub result: Option<serde_json::Value>,
    /// The exit status of the command that ran the job.
    pub exit_code: Option<i32>,
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
    /// The exit status of the command that ran the job.
    pub exit_code: Option<i32>,
}

/// A release: the fencing token of the lease given back.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReleaseBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line of a command's output (without its line break).
#[derive(Debug, Deserialize, ToSchema)]
pub struct OutputLineIn {
    #[schema(inline)]
    pub stream: OutputStream,
    /// At most 16 KiB (an agent cuts longer lines).
    #[schema(max_length = 16384)]
    pub line: String,
    /// When the agent read the line (default: when the service receives it).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A batch of output lines.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OutputBody {
    /// The `lease_token` of the claim.
    #[schema(min_length = 1, max_length = 64)]
    pub lease_token: String,
    /// At most 1 000 lines, in the order they were printed.
    #[schema(max_items = 1000)]
    pub lines: Vec<OutputLineIn>,
}

/// What became of a batch of output.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputReceiptView {
    /// Lines stored (a truncation marker included).
    pub accepted: usize,
    /// Lines dropped because the job's output budget is used up.
    pub dropped: usize,
    /// Whether the job's output is truncated: send no more.
    pub truncated: bool,
    /// The number of the last line stored (0 when none was).
    pub last_seq: i64,
}

/// The most lines of one output batch.
pub const OUTPUT_LINES_MAX: usize = 1000;
/// The longest output line, in bytes.
pub const OUTPUT_LINE_MAX_BYTES: usize = 16 * 1024;

fn too_long(field: &str, message: &str) -> FieldError {
    FieldError::body(field, "too_long", message)
}

fn label_error(field: &str, e: LabelError) -> ApiError {
    ApiError::validation(vec![FieldError::body(
        field,
        "invalid_labels",
        e.to_string(),
    )])
}

/// The agent's claim body, checked: names and versions within their lengths, labels in
/// canonical form.
fn agent_info(body: ClaimBody) -> Result<AgentInfo, ApiError> {
    let mut errors = Vec::new();
    let name = body.name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if name.chars().count() > 100 {
        errors.push(too_long("name", "name must be at most 100 characters"));
    }
    if body
        .version
        .as_ref()
        .is_some_and(|v| v.chars().count() > 64)
    {
        errors.push(too_long("version", "version must be at most 64 characters"));
    }
    if body.host.as_ref().is_some_and(|h| h.chars().count() > 255) {
        errors.push(too_long("host", "host must be at most 255 characters"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let labels = body
        .labels
        .map(|l| normalize_labels(&l))
        .transpose()
        .map_err(|e| label_error("labels", e))?;
    Ok(AgentInfo {
        name,
        labels,
        version: body.version,
        host: body.host,
    })
}

/// Claim the next pending job the agent's owner may see and whose `requires` are among the
/// agent's `labels` (highest priority, oldest first): the job, now `running` under a lease,
/// with its `lease_token`; 204 when none is waiting. The body (optional) describes the agent.
#[utoipa::path(
    post, path = "/api/v1/agents/claim", tag = "agents",
    request_body(content = Option<ClaimBody>),
    responses(
        (status = 200, description = "The claimed job", body = LeasedJobView),
        (status = 204, description = "No job is waiting"),
    ),
)]
async fn claim(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
    body: Option<Json<ClaimBody>>,
) -> Result<Response, ApiError> {
    let agent = agent(&caller)?;
    let info = agent_info(body.map(|Json(b)| b).unwrap_or_default())?;
    Ok(match leases::claim(&state, agent, &info).await? {
        Some(job) => axum::Json(LeasedJobView::from(&job)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Extend the lease of a running job and report its progress (`job_progress` on the live
/// channels).
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
    let progress = match (body.progress, body.message) {
        (None, None) => None,
        (fraction, message) => {
            let fraction = fraction.unwrap_or(0.0);
            let mut errors = Vec::new();
            if !(0.0..=1.0).contains(&fraction) {
                errors.push(FieldError::body(
                    "progress",
                    "out_of_range",
                    "progress must be from 0 to 1",
                ));
            }
            if message
                .as_ref()
                .is_some_and(|m| m.chars().count() > PROGRESS_MESSAGE_MAX)
            {
                errors.push(too_long(
                    "message",
                    "message must be at most 1024 characters",
                ));
            }
            if !errors.is_empty() {
                return Err(ApiError::validation(errors));
            }
            Some(Progress { fraction, message })
        }
    };
    let job =
        leases::heartbeat(&state, agent, &id.to_string(), &body.lease_token, progress).await?;
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
    let job = leases::complete(
        &state,
        agent,
        &id.to_string(),
        &body.lease_token,
        result,
        body.exit_code,
    )
    .await?;
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
        body.exit_code,
    )
    .await?;
    Ok(axum::Json(LeasedJobView::from(&job)).into_response())
}

/// Give a running job back: it returns to `pending` without counting an attempt (an agent
/// that stops releases what it could not finish).
#[utoipa::path(
    post, path = "/api/v1/agents/jobs/{id}/release", tag = "agents",
    params(("id" = Uuid, Path, description = "the job id")),
    request_body = ReleaseBody,
    responses(
        (status = 200, description = "The job, pending again", body = LeasedJobView),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "Not this agent's lease, or a stale lease_token", body = ErrorEnvelope),
    ),
)]
async fn release(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
    Path(id): Path<Uuid>,
    body: Option<Json<ReleaseBody>>,
) -> Result<Response, ApiError> {
    let agent = agent(&caller)?;
    let Json(body) = body.ok_or_else(missing_lease_token)?;
    let job = leases::release(&state, agent, &id.to_string(), &body.lease_token).await?;
    Ok(axum::Json(LeasedJobView::from(&job)).into_response())
}

/// Append output lines of a running job (stored in order, numbered, within the job's budget
/// `KYROS_JOB_OUTPUT_MAX_BYTES`; past it one marker line, then nothing), delivered live as a
/// `job_output` event.
#[utoipa::path(
    post, path = "/api/v1/agents/jobs/{id}/output", tag = "agents",
    params(("id" = Uuid, Path, description = "the job id")),
    request_body = OutputBody,
    responses(
        (status = 200, description = "What was kept", body = OutputReceiptView),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "Not this agent's lease, or a stale lease_token", body = ErrorEnvelope),
    ),
)]
async fn output(
    State(state): State<AppState>,
    caller: Authorized<JobsClaim>,
    Path(id): Path<Uuid>,
    body: Option<Json<OutputBody>>,
) -> Result<axum::Json<OutputReceiptView>, ApiError> {
    let agent = agent(&caller)?;
    let Json(body) = body.ok_or_else(missing_lease_token)?;
    let mut errors = Vec::new();
    if body.lines.len() > OUTPUT_LINES_MAX {
        errors.push(too_long("lines", "at most 1000 lines per request"));
    }
    if let Some(i) = body
        .lines
        .iter()
        .position(|l| l.line.len() > OUTPUT_LINE_MAX_BYTES)
    {
        errors.push(FieldError::body(
            &format!("lines.{i}.line"),
            "too_long",
            "a line must be at most 16 KiB",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let lines = body
        .lines
        .into_iter()
        .map(|l| NewOutputLine {
            stream: match l.stream {
                OutputStream::Stdout => "stdout",
                OutputStream::Stderr => "stderr",
            }
            .to_owned(),
            at: l.at,
            line: l.line,
        })
        .collect();
    let receipt =
        leases::append_output(&state, agent, &id.to_string(), &body.lease_token, lines).await?;
    Ok(axum::Json(OutputReceiptView {
        accepted: receipt.stored.len(),
        dropped: receipt.dropped,
        truncated: receipt.truncated,
        last_seq: receipt.stored.last().map_or(0, |l| l.seq),
    }))
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

/// A job an agent holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentJob {
    pub id: Uuid,
    pub name: String,
    /// The run, from 1.
    pub attempt: i32,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// As the agent last reported it, from 0 to 1.
    pub progress: Option<f64>,
}

/// An agent as listed (the original `Agent` fields `name`, `status`, `capabilities`,
/// `successRate`, `lastRunAt` from real data, among more).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentEntry {
    /// The API key's id.
    pub id: Uuid,
    pub name: String,
    /// The key owner's user id.
    pub owner: Option<Uuid>,
    /// `active` (online, running jobs), `idle` (online) or `offline` (not seen for 2 minutes).
    pub status: String,
    pub last_heartbeat_at: chrono::DateTime<chrono::Utc>,
    /// The agent's labels.
    pub labels: Vec<String>,
    /// The original's name for the labels.
    pub capabilities: Vec<String>,
    pub version: Option<String>,
    pub host: Option<String>,
    pub runs_completed: i64,
    pub runs_failed: i64,
    /// Completed runs among finished ones, from 0 to 1 (`null` before the first).
    pub success_rate: Option<f64>,
    /// When its last run finished.
    pub last_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The first of `currentJobs` (kept for older clients).
    pub current_job: Option<AgentJob>,
    /// The running jobs it holds.
    pub current_jobs: Vec<AgentJob>,
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

fn agent_job(j: &crate::orchestrator::jobs::JobRow) -> AgentJob {
    AgentJob {
        id: j.id,
        name: j.name.clone(),
        attempt: j.attempts + 1,
        started_at: j.started_at,
        lease_expires_at: j.lease_expires_at,
        progress: j.progress,
    }
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
            success_rate: a.success_rate(),
            name: a.name,
            owner: a.owner_id,
            status: a.status.to_owned(),
            last_heartbeat_at: a.last_seen_at,
            capabilities: a.labels.clone(),
            labels: a.labels,
            version: a.version,
            host: a.host,
            runs_completed: a.runs_completed,
            runs_failed: a.runs_failed,
            last_run_at: a.last_run_at,
            current_job: a.current_jobs.first().map(agent_job),
            current_jobs: a.current_jobs.iter().map(agent_job).collect(),
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

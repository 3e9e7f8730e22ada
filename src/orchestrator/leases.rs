//! Leases: how agents run jobs. An agent (an API key with `jobs:claim`) claims the next pending
//! job it may run (`auth::policy::claimable_owner`: what its owner may see), highest priority
//! first, with a lease of `KYROS_JOB_LEASE_SECS` and a fencing token (`lease_token`, new at every
//! claim). Heartbeat, complete and fail must present the token: a worker whose lease expired and
//! was handed out again — to any agent, the same key included — is refused, as in job queues with
//! fencing tokens. Expired leases return the job to `pending` (or fail it after
//! `KYROS_JOB_MAX_ATTEMPTS` runs): the sweeper does it every second, and a claim settles them
//! first so it never waits for the sweeper.

use std::time::Duration as StdDuration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use serde_json::{Value, json};
use uuid::Uuid;

use super::events::emit;
use super::jobs::{self, JobRow, JobStatus};
use crate::clock::at_storage_precision;
use crate::crypto::{ct_eq, random_bytes};
use crate::model::User;
use crate::state::AppState;
pub use crate::store::jobs::AgentInfo;
pub use crate::store::output::OutputLine;
use crate::store::{StoreError, api_keys as keys, jobs as store, output as output_store};

/// An agent seen within this many seconds is online.
pub const ONLINE_SECS: i64 = 120;
/// How often the sweeper settles expired leases.
pub const SWEEP_EVERY: StdDuration = StdDuration::from_secs(1);

/// Why a lease operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// No such job, or one the agent's owner may not see.
    #[error("Job not found")]
    NotFound,
    #[error("This agent does not hold a lease on the job")]
    NotHeld,
    #[error("The lease token is not the job's current one: the lease was lost")]
    Stale,
    #[error("Invalid status transition from {} to {}", .0.from, .0.to)]
    Transition(jobs::IllegalTransition),
    #[error("The job was changed by another request")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An agent: the API key `key_id` owned by `owner`.
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    pub key_id: Uuid,
    pub owner: &'a User,
}

/// The job as its agent sees it: with the fencing token of its lease.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = LeasedJob)]
pub struct LeasedJobView {
    #[serde(flatten)]
    pub job: jobs::JobView,
    /// The fencing token of the lease: required by heartbeat, complete and fail.
    pub lease_token: Option<String>,
}

impl From<&JobRow> for LeasedJobView {
    fn from(job: &JobRow) -> Self {
        LeasedJobView {
            job: jobs::JobView::from(job),
            lease_token: job.lease_token.clone(),
        }
    }
}

/// [`LeasedJobView`] as JSON.
pub fn leased_json(job: &JobRow) -> Value {
    serde_json::to_value(LeasedJobView::from(job)).unwrap_or(Value::Null)
}

/// Returns expired leases to the queue (or fails them); each change goes on the bus once.
///
/// One sweep at a time per instance (the sweeper and every claim take turns). After a mass
/// expiry (a fleet of agents gone at once) every concurrent claim used to settle the same batch
/// of up to 500 leases, racing for the same rows — 32 × 500 statements per wave: at 1 000 000
/// jobs with about 4 000 expired leases, 13 claims/s on PostgreSQL and 286 on SQLite
/// (`bench/scale.sh`). Now the first settles the batch and those after it find it settled.
pub async fn requeue_expired(state: &AppState) -> Result<(), StoreError> {
    let _turn = state.lease_sweep.lock().await;
    sweep(state).await
}

async fn sweep(state: &AppState) -> Result<(), StoreError> {
    let now = at_storage_precision(state.clock.now());
    for job in store::expired_leases(&state.db, now).await? {
        let next = jobs::expire_lease(&job, now, state.settings().job_max_attempts);
        // Losing this race means another instance or request already handled the job.
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

/// Starts the sweeper: expired leases are settled every [`SWEEP_EVERY`], whether or not anyone
/// claims or looks. It ends with the state (or when the process starts to stop).
pub fn spawn_sweeper(state: crate::state::WeakState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { return };
            if state.shutdown.is_triggered() {
                return;
            }
            if let Err(e) = requeue_expired(&state).await {
                tracing::debug!(error = %e, "expired leases could not be settled");
            }
        }
    });
}

/// Records the agent as seen now, with what it said about itself (its key's name when it gave
/// none); the name recorded.
async fn touch(
    state: &AppState,
    agent: Agent<'_>,
    info: Option<&AgentInfo>,
) -> Result<String, StoreError> {
    let mut info = info.cloned().unwrap_or_default();
    if info.name.is_empty() {
        info.name = keys::find_by_id(&state.db, agent.key_id)
            .await?
            .map_or_else(|| "agent".to_owned(), |k| k.name);
    }
    store::touch_agent(
        &state.db,
        agent.key_id,
        &info,
        agent.owner.id,
        at_storage_precision(state.clock.now()),
    )
    .await?;
    Ok(info.name)
}

/// Hands the next job the agent may run to it — one that requires none of the labels the agent
/// lacks (`info.labels`) — with a new lease and fencing token; records what the agent said
/// about itself (`AgentInfo`).
pub async fn claim(
    state: &AppState,
    agent: Agent<'_>,
    info: &AgentInfo,
) -> Result<Option<JobRow>, LeaseError> {
    requeue_expired(state).await?;
    let name = touch(state, agent, Some(info)).await?;
    let labels = info.labels.clone().unwrap_or_default();
    let now = at_storage_precision(state.clock.now());
    let lease = now + Duration::seconds(state.settings().job_lease_secs);
    let lease_token = URL_SAFE_NO_PAD.encode(random_bytes::<18>());
    let owner = crate::auth::policy::claimable_owner(agent.owner);
    // The store picks and locks the next job; the state machine starts it.
    let job = store::claim_next(&state.db, owner, &labels, |job| {
        jobs::start_lease(job, agent.key_id, &name, now, lease, &lease_token).ok()
    })
    .await?;
    if let Some(job) = &job {
        emit(
            state,
            jobs::event(
                job,
                "job_claimed",
                None,
                json!({"agent_id": agent.key_id, "agent_name": name}),
            ),
        )
        .await;
    }
    Ok(job)
}

/// The job if this agent holds its lease under this token.
async fn leased(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
) -> Result<JobRow, LeaseError> {
    let id = Uuid::parse_str(id).map_err(|_| LeaseError::NotFound)?;
    // A job its owner may not see does not exist for an agent.
    let job = store::find(&state.db, id)
        .await?
        .filter(|job| crate::auth::policy::may_see_job(agent.owner, job.owner_id))
        .ok_or(LeaseError::NotFound)?;
    let now = state.clock.now();
    let held = job.status == JobStatus::Running.as_str()
        && job.lease_owner == Some(agent.key_id)
        && job.lease_expires_at.is_some_and(|until| until > now);
    if !held {
        return Err(LeaseError::NotHeld);
    }
    let current = job
        .lease_token
        .as_deref()
        .is_some_and(|t| ct_eq(t.as_bytes(), token.as_bytes()));
    if !current {
        return Err(LeaseError::Stale);
    }
    Ok(job)
}

async fn save(
    state: &AppState,
    next: JobRow,
    version: i32,
    event: Option<&str>,
) -> Result<JobRow, LeaseError> {
    if !store::update_status(&state.db, &next, version).await? {
        return Err(LeaseError::Changed);
    }
    let mut next = next;
    next.version += 1;
    if let Some(name) = event {
        emit(state, jobs::event(&next, name, None, json!({}))).await;
    }
    Ok(next)
}

/// How far a run is, as its agent reports it with a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// From 0 to 1.
    pub fraction: f64,
    /// What the run is doing (at most [`PROGRESS_MESSAGE_MAX`] characters).
    pub message: Option<String>,
}

/// The longest progress message, in characters.
pub const PROGRESS_MESSAGE_MAX: usize = 1024;

/// Extends the lease by `KYROS_JOB_LEASE_SECS` from now and records `progress` when given;
/// `job_progress` goes on the bus (the job with its new lease end and progress), so that a
/// console follows both live.
pub async fn heartbeat(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
    progress: Option<Progress>,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    touch(state, agent, None).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next = job.clone();
    next.updated_at = now;
    next.lease_expires_at = Some(now + Duration::seconds(state.settings().job_lease_secs));
    if let Some(p) = progress {
        next.progress = Some(p.fraction.clamp(0.0, 1.0));
        next.progress_message = p.message;
    }
    save(state, next, job.version, Some("job_progress")).await
}

/// Gives a running job back: it returns to `pending` for any agent without counting a run
/// (`job_released`), as an agent that stops (`kyros agent` on SIGTERM) does with the jobs it
/// could not finish.
pub async fn release(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    let now = at_storage_precision(state.clock.now());
    let next = jobs::release_lease(&job, now);
    save(state, next, job.version, Some("job_released")).await
}

/// A line of output as an agent sends it.
#[derive(Debug, Clone)]
pub struct NewOutputLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the agent read it (the service's clock when the agent gave no time or one in the
    /// future).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    pub line: String,
}

/// What became of an output batch.
#[derive(Debug, Clone)]
pub struct OutputReceipt {
    /// Lines stored (a truncation marker included).
    pub stored: Vec<OutputLine>,
    /// Lines not stored: the job's output budget (`KYROS_JOB_OUTPUT_MAX_BYTES`) is used up.
    pub dropped: usize,
    /// Whether the job's output is truncated; an agent stops sending when it is.
    pub truncated: bool,
}

/// Appends the leased job's output (`store::output::append`: in order, numbered, within the
/// job's byte budget) and puts the stored lines on the bus as one `job_output` event, seen by
/// whoever may see the job.
pub async fn append_output(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
    lines: Vec<NewOutputLine>,
) -> Result<OutputReceipt, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    let now = at_storage_precision(state.clock.now());
    let lines: Vec<_> = lines
        .into_iter()
        .map(|l| {
            let at =
                l.at.filter(|at| *at <= now)
                    .map_or(now, at_storage_precision);
            (l.stream, at, l.line)
        })
        .collect();
    let appended = output_store::append(
        &state.db,
        job.id,
        token,
        job.attempts + 1,
        &lines,
        state.settings().job_output_max_bytes,
    )
    .await?
    .ok_or(LeaseError::Stale)?;
    if !appended.lines.is_empty() {
        let rendered: Vec<Value> = appended.lines.iter().map(output_json).collect();
        emit(
            state,
            super::events::NewEvent {
                stream: super::events::ORCHESTRATOR,
                event: "job_output".to_owned(),
                actor: None,
                target: Some(job.id.to_string()),
                task_id: Some(job.id.to_string()),
                run_id: Some(format!("{}:{}", job.id, job.attempts + 1)),
                owner_id: job.owner_id,
                payload: json!({
                    "job_id": job.id,
                    "attempt": job.attempts + 1,
                    "lines": rendered,
                    "truncated": appended.truncated,
                }),
            },
        )
        .await;
    }
    Ok(OutputReceipt {
        stored: appended.lines,
        dropped: appended.dropped,
        truncated: appended.truncated,
    })
}

/// A stored output line as clients get it: `{seq, attempt, stream, at, line}`.
pub fn output_json(line: &OutputLine) -> Value {
    json!({
        "seq": line.seq,
        "attempt": line.attempt,
        "stream": line.stream,
        "at": line.at,
        "line": line.line,
    })
}

/// Completes the leased job with its result.
pub async fn complete(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
    result: Option<Value>,
    exit_code: Option<i32>,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next =
        jobs::transition(&job, JobStatus::Completed, now).map_err(LeaseError::Transition)?;
    next.result = result.map(sqlx::types::Json);
    next.exit_code = exit_code;
    let next = save(state, next, job.version, Some("job_completed")).await?;
    store::record_run(&state.db, agent.key_id, true, now).await?;
    Ok(next)
}

/// Fails the leased job with what went wrong.
pub async fn fail(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
    error: Option<String>,
    exit_code: Option<i32>,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next =
        jobs::transition(&job, JobStatus::Failed, now).map_err(LeaseError::Transition)?;
    next.error = error;
    next.exit_code = exit_code;
    let next = save(state, next, job.version, Some("job_failed")).await?;
    store::record_run(&state.db, agent.key_id, false, now).await?;
    Ok(next)
}

/// An agent as people see it.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub key_id: Uuid,
    pub name: String,
    pub owner_id: Option<Uuid>,
    /// `active` (online, holding a lease), `idle` (online) or `offline` (not seen for
    /// [`ONLINE_SECS`]).
    pub status: &'static str,
    pub last_seen_at: chrono::DateTime<chrono::Utc>,
    pub labels: Vec<String>,
    pub version: Option<String>,
    pub host: Option<String>,
    pub runs_completed: i64,
    pub runs_failed: i64,
    pub last_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The running jobs it holds, oldest lease first.
    pub current_jobs: Vec<JobRow>,
}

impl AgentView {
    /// Completed runs among finished ones (0 to 1); `None` before the first.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.runs_completed + self.runs_failed;
        (total > 0).then(|| self.runs_completed as f64 / total as f64)
    }
}

/// The labels of a JSON array column (strings only).
pub fn labels_of(value: Option<&sqlx::types::Json<Value>>) -> Vec<String> {
    value
        .and_then(|v| v.0.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The agents `viewer` may see (`auth::policy`), with their status and current jobs.
pub async fn agents(state: &AppState, viewer: &User) -> Result<Vec<AgentView>, StoreError> {
    let now = state.clock.now();
    let mut out = Vec::new();
    for a in store::agents(&state.db).await? {
        if !crate::auth::policy::may_see_agent(viewer, a.owner_id) {
            continue;
        }
        let mut current_jobs = store::leased_by(&state.db, a.key_id).await?;
        current_jobs.sort_by_key(|j| (j.started_at, j.id));
        let online = (now - a.last_seen_at).num_seconds() <= ONLINE_SECS;
        let status = match (online, current_jobs.is_empty()) {
            (true, false) => "active",
            (true, true) => "idle",
            (false, _) => "offline",
        };
        out.push(AgentView {
            key_id: a.key_id,
            name: a.name,
            owner_id: a.owner_id,
            status,
            last_seen_at: a.last_seen_at,
            labels: labels_of(a.labels.as_ref()),
            version: a.version,
            host: a.host,
            runs_completed: a.runs_completed,
            runs_failed: a.runs_failed,
            last_run_at: a.last_run_at,
            current_jobs,
        });
    }
    Ok(out)
}

/// The name of the agent holding a job's lease, for views (`None` without a lease or record).
pub async fn agent_name(
    state: &AppState,
    key_id: Option<Uuid>,
) -> Result<Option<String>, StoreError> {
    let Some(key_id) = key_id else {
        return Ok(None);
    };
    Ok(store::agent(&state.db, key_id).await?.map(|a| a.name))
}

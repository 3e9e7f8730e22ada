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
use crate::store::{StoreError, api_keys as keys, jobs as store};

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

async fn touch(state: &AppState, agent: Agent<'_>) -> Result<(), StoreError> {
    let name = keys::find_by_id(&state.db, agent.key_id)
        .await?
        .map_or_else(|| "agent".to_owned(), |k| k.name);
    store::touch_agent(
        &state.db,
        agent.key_id,
        &name,
        agent.owner.id,
        at_storage_precision(state.clock.now()),
    )
    .await
}

/// Hands the next job the agent may run to it, with a new lease and fencing token.
pub async fn claim(state: &AppState, agent: Agent<'_>) -> Result<Option<JobRow>, LeaseError> {
    requeue_expired(state).await?;
    touch(state, agent).await?;
    let now = at_storage_precision(state.clock.now());
    let lease = now + Duration::seconds(state.settings().job_lease_secs);
    let lease_token = URL_SAFE_NO_PAD.encode(random_bytes::<18>());
    let owner = crate::auth::policy::claimable_owner(agent.owner);
    // The store picks and locks the next job; the state machine starts it.
    let job = store::claim_next(&state.db, owner, |job| {
        jobs::start_lease(job, agent.key_id, now, lease, &lease_token).ok()
    })
    .await?;
    if let Some(job) = &job {
        emit(
            state,
            jobs::event(job, "job_claimed", None, json!({"agent_id": agent.key_id})),
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

/// Extends the lease by `KYROS_JOB_LEASE_SECS` from now.
pub async fn heartbeat(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    touch(state, agent).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next = job.clone();
    next.updated_at = now;
    next.lease_expires_at = Some(now + Duration::seconds(state.settings().job_lease_secs));
    save(state, next, job.version, None).await
}

/// Completes the leased job with its result.
pub async fn complete(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
    result: Option<Value>,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next =
        jobs::transition(&job, JobStatus::Completed, now).map_err(LeaseError::Transition)?;
    next.result = result.map(sqlx::types::Json);
    save(state, next, job.version, Some("job_completed")).await
}

/// Fails the leased job with what went wrong.
pub async fn fail(
    state: &AppState,
    agent: Agent<'_>,
    id: &str,
    token: &str,
    error: Option<String>,
) -> Result<JobRow, LeaseError> {
    let job = leased(state, agent, id, token).await?;
    let now = at_storage_precision(state.clock.now());
    let mut next =
        jobs::transition(&job, JobStatus::Failed, now).map_err(LeaseError::Transition)?;
    next.error = error;
    save(state, next, job.version, Some("job_failed")).await
}

/// An agent as people see it.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub key_id: Uuid,
    pub name: String,
    pub owner_id: Option<Uuid>,
    /// `active` (online, holding a lease), `idle` (online) or `offline`.
    pub status: &'static str,
    pub last_seen_at: chrono::DateTime<chrono::Utc>,
    pub current_job: Option<JobRow>,
}

/// The agents `viewer` may see (`auth::policy`), with their status and current job.
pub async fn agents(state: &AppState, viewer: &User) -> Result<Vec<AgentView>, StoreError> {
    let now = state.clock.now();
    let mut out = Vec::new();
    for a in store::agents(&state.db).await? {
        if !crate::auth::policy::may_see_agent(viewer, a.owner_id) {
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
        out.push(AgentView {
            key_id: a.key_id,
            name: a.name,
            owner_id: a.owner_id,
            status,
            last_seen_at: a.last_seen_at,
            current_job,
        });
    }
    Ok(out)
}

//! Jobs and their state machine:
//!
//! ```text
//! pending ──▶ running ──▶ completed
//!    │           │  └────▶ failed ──(retry)──▶ pending
//!    └─────┬─────┘
//!          ▼
//!      cancelled
//! ```
//!
//! Any other change is refused. `started_at` is set on entering `running`, `completed_at` on
//! reaching `completed`, `failed` or `cancelled`; a retry clears both and counts an attempt.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::model::User;
pub use crate::store::jobs::JobRow;

/// The state of a job.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the state machine allows `self → to`.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Pending, Running)
                | (Running, Completed)
                | (Running, Failed)
                | (Pending, Cancelled)
                | (Running, Cancelled)
                | (Failed, Pending)
        )
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl FromStr for JobStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

/// The job after the transition to `to` at `now`, or the refusal.
pub fn transition(
    job: &JobRow,
    to: JobStatus,
    now: DateTime<Utc>,
) -> Result<JobRow, IllegalTransition> {
    let from: JobStatus = job.status.parse().map_err(|_| IllegalTransition {
        from: JobStatus::Failed,
        to,
    })?;
    if !from.can_become(to) {
        return Err(IllegalTransition { from, to });
    }
    let mut next = job.clone();
    next.status = to.as_str().to_owned();
    next.updated_at = now;
    match to {
        JobStatus::Running => next.started_at = Some(now),
        JobStatus::Pending => {
            next.started_at = None;
            next.completed_at = None;
            next.result = None;
            next.error = None;
            next.exit_code = None;
            next.progress = None;
            next.progress_message = None;
            next.attempts += 1;
        }
        _ => next.completed_at = Some(now),
    }
    if to != JobStatus::Running {
        next.lease_owner = None;
        next.lease_expires_at = None;
        next.lease_token = None;
    }
    Ok(next)
}

/// Whether `user` may see and change the job (the policy of `auth::policy`).
pub fn may_access(user: &User, job: &JobRow) -> bool {
    crate::auth::policy::may_see_job(user, job.owner_id)
}

/// The representation clients get (the original `JobResponse` fields first among more): the
/// body of every job answer and the `job` of every job event.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    pub id: uuid::Uuid,
    /// The title (`title` on input; the original called it `name`).
    pub name: String,
    pub description: Option<String>,
    pub status: JobStatus,
    /// Higher runs first.
    pub priority: i32,
    /// The free-form JSON object given at submission.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub owner_id: Option<uuid::Uuid>,
    /// Runs started before the current one (a retry adds one).
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The API key (agent) holding the lease while the job runs.
    pub agent_id: Option<uuid::Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// What the agent reported on completion (any JSON).
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
    /// The agent's error message on failure.
    pub error: Option<String>,
    /// The labels an agent must have to claim the job (empty: any agent).
    pub requires: Vec<String>,
    /// The run under way or last made, from 1 (`attempts + 1` once started; 0 before).
    pub attempt: i32,
    /// The name of the agent that holds (or last held) the job.
    pub agent_name: Option<String>,
    /// How far the run is, from 0 to 1, as its agent reported it.
    pub progress: Option<f64>,
    /// What the agent said with its last progress report.
    pub progress_message: Option<String>,
    /// The exit status of the agent's command (`kyros agent`).
    pub exit_code: Option<i32>,
}

impl From<&JobRow> for JobView {
    fn from(job: &JobRow) -> Self {
        let status = job.status.parse().unwrap_or(JobStatus::Failed);
        JobView {
            id: job.id,
            name: job.name.clone(),
            description: job.description.clone(),
            status,
            priority: job.priority,
            metadata: job.metadata.as_ref().map(|m| m.0.clone()),
            owner_id: job.owner_id,
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            completed_at: job.completed_at,
            agent_id: job.lease_owner,
            lease_expires_at: job.lease_expires_at,
            result: job.result.as_ref().map(|r| r.0.clone()),
            error: job.error.clone(),
            requires: crate::orchestrator::leases::labels_of(job.requires.as_ref()),
            attempt: if job.started_at.is_some() {
                job.attempts + 1
            } else {
                job.attempts
            },
            agent_name: job.agent_name.clone(),
            progress: job.progress,
            progress_message: job.progress_message.clone(),
            exit_code: job.exit_code,
        }
    }
}

/// [`JobView`] as JSON.
pub fn to_json(job: &JobRow) -> Value {
    serde_json::to_value(JobView::from(job)).unwrap_or(Value::Null)
}

/// An orchestrator event about a job: `task_id` is the job id, `run_id` identifies the run (the
/// job id and its attempt number) while one is under way.
pub fn event(
    job: &JobRow,
    name: &str,
    actor: Option<&str>,
    extra: Value,
) -> crate::orchestrator::events::NewEvent {
    let mut payload = json!({"job": to_json(job)});
    if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
        p.extend(e);
    }
    crate::orchestrator::events::NewEvent {
        stream: crate::orchestrator::events::ORCHESTRATOR,
        event: name.to_owned(),
        actor: actor.map(str::to_owned),
        target: Some(job.id.to_string()),
        task_id: Some(job.id.to_string()),
        run_id: job
            .started_at
            .map(|_| format!("{}:{}", job.id, job.attempts + 1)),
        owner_id: job.owner_id,
        payload,
    }
}

/// A pending job handed to an agent: the state machine's `pending → running`, then the lease
/// (its holder and the holder's name, its end, its fencing token); the previous run's progress
/// and exit code are cleared.
pub fn start_lease(
    job: &JobRow,
    agent: uuid::Uuid,
    agent_name: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    token: &str,
) -> Result<JobRow, IllegalTransition> {
    let mut next = transition(job, JobStatus::Running, now)?;
    next.progress = None;
    next.progress_message = None;
    next.exit_code = None;
    next.agent_name = Some(agent_name.to_owned());
    next.lease_owner = Some(agent);
    next.lease_expires_at = Some(until);
    next.lease_token = Some(token.to_owned());
    Ok(next)
}

/// What happens to a running job whose agent stopped heartbeating: back to `pending` for another
/// agent while it has attempts left (this run counts as one), `failed` after the last one.
pub fn expire_lease(job: &JobRow, now: DateTime<Utc>, max_attempts: i32) -> JobRow {
    let mut next = job.clone();
    next.updated_at = now;
    next.lease_owner = None;
    next.lease_expires_at = None;
    next.lease_token = None;
    next.attempts += 1;
    if next.attempts < max_attempts {
        next.status = JobStatus::Pending.as_str().to_owned();
        next.started_at = None;
    } else {
        next.status = JobStatus::Failed.as_str().to_owned();
        next.completed_at = Some(now);
        next.error = Some("lease expired: the agent stopped sending heartbeats".to_owned());
    }
    next
}

/// A running job its agent gives back (`orchestrator::leases::release`): `pending` again for
/// any agent, without counting the run as an attempt (unlike [`expire_lease`]): the agent
/// stopped on purpose, the job did not fail.
pub fn release_lease(job: &JobRow, now: DateTime<Utc>) -> JobRow {
    let mut next = job.clone();
    next.status = JobStatus::Pending.as_str().to_owned();
    next.updated_at = now;
    next.started_at = None;
    next.lease_owner = None;
    next.lease_expires_at = None;
    next.lease_token = None;
    next.progress = None;
    next.progress_message = None;
    next
}

/// The most labels a job may require or an agent may have.
pub const LABELS_MAX: usize = 32;
/// The longest label, in characters.
pub const LABEL_MAX_LEN: usize = 64;

/// Why a label list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("at most {LABELS_MAX} labels")]
    TooMany,
    #[error(
        "a label is 1 to {LABEL_MAX_LEN} characters of a-z, 0-9, '.', '_', '-', ':' and '/', starting with a letter or digit"
    )]
    Invalid,
}

/// The canonical form of labels (a job's `requires`, an agent's `labels`): lower-case ASCII,
/// 1 to [`LABEL_MAX_LEN`] characters of `a-z 0-9 . _ - : /` starting with a letter or digit,
/// at most [`LABELS_MAX`], sorted, without repeats — so that "GPU" and "gpu" are one label and
/// a claim compares sets.
pub fn normalize_labels(labels: &[String]) -> Result<Vec<String>, LabelError> {
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for label in labels {
        let label = label.trim().to_ascii_lowercase();
        let valid = !label.is_empty()
            && label.len() <= LABEL_MAX_LEN
            && label.starts_with(|c: char| c.is_ascii_alphanumeric())
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
        if !valid {
            return Err(LabelError::Invalid);
        }
        out.push(label);
    }
    out.sort();
    out.dedup();
    if out.len() > LABELS_MAX {
        return Err(LabelError::TooMany);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_compared_as_lower_case_sets() {
        let got = normalize_labels(&["GPU".into(), " linux ".into(), "gpu".into()])
            .expect("valid labels");
        assert_eq!(got, vec!["gpu".to_owned(), "linux".to_owned()]);
        for bad in ["", "-gpu", "gp u", "gpü", &"a".repeat(LABEL_MAX_LEN + 1)] {
            assert_eq!(
                normalize_labels(&[bad.to_owned()]),
                Err(LabelError::Invalid),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=LABELS_MAX).map(|i| format!("l{i}")).collect();
        assert_eq!(normalize_labels(&many), Err(LabelError::TooMany));
    }

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        use JobStatus::*;
        let allowed = [
            (Pending, Running),
            (Running, Completed),
            (Running, Failed),
            (Pending, Cancelled),
            (Running, Cancelled),
            (Failed, Pending),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The jobs service: what REST, the WebSocket and the CLI do with jobs, checked and evented once.

/// Why a job operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job, or one the caller may not see (the two are not told apart).
    #[error("Job not found")]
    NotFound,
    /// The state machine forbids the change.
    #[error("Invalid status transition from {} to {}", .0.from, .0.to)]
    Transition(IllegalTransition),
    /// Someone changed the job first (optimistic concurrency).
    #[error("The job was changed by another request; read it again and retry")]
    Changed,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A job to submit, validated by the caller's parser.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub title: String,
    pub description: Option<String>,
    pub priority: i32,
    pub metadata: Option<Value>,
    /// The labels an agent needs to claim it, in the form of [`normalize_labels`].
    pub requires: Vec<String>,
}

/// The job `id` if it exists and `user` may see it (`auth::policy`).
pub async fn find_visible(
    state: &crate::state::AppState,
    user: &User,
    id: &str,
) -> Result<JobRow, JobError> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| JobError::NotFound)?;
    crate::store::jobs::find(&state.db, id)
        .await?
        .filter(|job| may_access(user, job))
        .ok_or(JobError::NotFound)
}

pub use crate::store::jobs::SortField;

/// Which jobs a list shows, as a client asks (every field optional).
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub status: Option<JobStatus>,
    /// Keyset pagination: the id of the last job of the previous page (default order only).
    pub after: Option<uuid::Uuid>,
    pub skip: i64,
    pub limit: i64,
    /// Text found anywhere in the title, case-insensitively.
    pub search: Option<String>,
    /// The owner's username (for a user who sees only their own jobs, another name finds none).
    pub owner: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub sort: SortField,
    pub ascending: bool,
    /// Count every matching job too (one more query).
    pub with_total: bool,
}

/// A page of jobs.
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    pub rows: Vec<JobRow>,
    /// Every job matching the request, when asked for.
    pub total: Option<i64>,
    /// The usernames of the page's owners (for callers who see other people's jobs).
    pub owner_names: std::collections::HashMap<uuid::Uuid, String>,
}

/// Why a list request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// `after` is not a job of the list.
    #[error("after must be the id of a job in the list")]
    UnknownAfter,
    /// `after` with an order other than the default.
    #[error("after (keyset pagination) follows the default order only")]
    AfterWithSort,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The jobs `user` may see (`auth::policy`), filtered, ordered and paged as `request` asks;
/// newest first by default.
pub async fn list(
    state: &crate::state::AppState,
    user: &User,
    request: &ListRequest,
) -> Result<JobPage, ListError> {
    let default_order = request.sort == SortField::CreatedAt && !request.ascending;
    let after = match request.after {
        Some(_) if !default_order => return Err(ListError::AfterWithSort),
        Some(id) => match find_visible(state, user, &id.to_string()).await {
            Ok(job) => Some((job.created_at, job.id)),
            Err(JobError::Store(e)) => return Err(e.into()),
            Err(_) => return Err(ListError::UnknownAfter),
        },
        None => None,
    };
    let mut owner = crate::auth::policy::owner_filter(user);
    if let Some(name) = request.owner.as_deref() {
        let requested = match crate::auth::accounts::username_key(name) {
            Some(key) => crate::store::users::find_by_username_key(&state.db, &key, name)
                .await?
                .map(|u| u.id),
            None => None,
        };
        match (requested, owner) {
            (Some(id), None) => owner = Some(id),
            (Some(id), Some(own)) if id == own => {}
            // Nobody by that name, or someone whose jobs the caller does not see.
            _ => return Ok(JobPage::default()),
        }
    }
    let like = request
        .search
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(crate::store::jobs::like_pattern);
    let filter = crate::store::jobs::ListFilter {
        status: request.status.map(JobStatus::as_str),
        owner,
        after,
        title_like: like.as_deref(),
        created_from: request.created_from,
        created_to: request.created_to,
        sort: request.sort,
        ascending: request.ascending,
    };
    let rows = crate::store::jobs::list(&state.db, filter, request.skip, request.limit).await?;
    let total = if request.with_total {
        Some(crate::store::jobs::count(&state.db, filter).await?)
    } else {
        None
    };
    let mut owner_names = std::collections::HashMap::new();
    if crate::auth::policy::owner_filter(user).is_none() {
        let mut ids: Vec<uuid::Uuid> = rows.iter().filter_map(|j| j.owner_id).collect();
        ids.sort();
        ids.dedup();
        owner_names.extend(crate::store::users::usernames(&state.db, &ids).await?);
    }
    Ok(JobPage {
        rows,
        total,
        owner_names,
    })
}

/// The queue at a glance: jobs per status, the oldest pending job, and per bucket of the
/// window the jobs submitted, completed and failed — counted by the database.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Every status with its count (0 included), in [`JobStatus::ALL`] order.
    pub counts: Vec<(JobStatus, i64)>,
    pub oldest_pending: Option<JobRow>,
    /// The start of the first bucket.
    pub from: DateTime<Utc>,
    pub bucket_secs: i64,
    /// One entry per bucket from `from`: `(start, submitted, completed, failed)`.
    pub series: Vec<(DateTime<Utc>, i64, i64, i64)>,
}

/// The overview of the jobs `user` may see, over the last `hours` hours in buckets of
/// `bucket_secs` seconds (the window starts at a bucket boundary).
pub async fn overview(
    state: &crate::state::AppState,
    user: &User,
    hours: i64,
    bucket_secs: i64,
) -> Result<Overview, crate::store::StoreError> {
    use crate::store::jobs::{self as store, SeriesTime};
    let owner = crate::auth::policy::owner_filter(user);
    let counted = store::count_by_status(&state.db, owner).await?;
    let counts = JobStatus::ALL
        .into_iter()
        .map(|status| {
            let n = counted
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            (status, n)
        })
        .collect();
    let oldest_pending = store::oldest_pending(&state.db, owner).await?;
    let now = state.clock.now().timestamp();
    let buckets = (hours * 3600 / bucket_secs).max(1);
    let first = (now / bucket_secs - buckets + 1) * bucket_secs;
    let from = DateTime::from_timestamp(first, 0).unwrap_or_default();
    let submitted = store::series(&state.db, SeriesTime::Created, owner, from, bucket_secs).await?;
    let finished = store::series(&state.db, SeriesTime::Finished, owner, from, bucket_secs).await?;
    let series = (0..buckets)
        .map(|i| {
            let bucket = first / bucket_secs + i;
            let sum = |rows: &[(i64, String, i64)], status: Option<&str>| {
                rows.iter()
                    .filter(|(b, s, _)| *b == bucket && status.is_none_or(|st| st == s))
                    .map(|(_, _, n)| n)
                    .sum::<i64>()
            };
            (
                DateTime::from_timestamp(bucket * bucket_secs, 0).unwrap_or_default(),
                sum(&submitted, None),
                sum(&finished, Some("completed")),
                sum(&finished, Some("failed")),
            )
        })
        .collect();
    Ok(Overview {
        counts,
        oldest_pending,
        from,
        bucket_secs,
        series,
    })
}

/// Submits a job owned by `user`; `job_created` goes on the bus.
pub async fn submit(
    state: &crate::state::AppState,
    user: &User,
    new: NewJob,
) -> Result<JobRow, JobError> {
    let now = crate::clock::at_storage_precision(state.clock.now());
    let job = JobRow {
        id: uuid::Uuid::new_v4(),
        name: new.title,
        description: new.description,
        status: JobStatus::Pending.as_str().to_owned(),
        priority: new.priority,
        metadata: new.metadata.map(sqlx::types::Json),
        owner_id: Some(user.id),
        version: 1,
        attempts: 0,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        lease_owner: None,
        lease_expires_at: None,
        lease_token: None,
        result: None,
        error: None,
        requires: (!new.requires.is_empty())
            .then(|| sqlx::types::Json(Value::from(new.requires.clone()))),
        progress: None,
        progress_message: None,
        exit_code: None,
        agent_name: None,
    };
    crate::store::jobs::insert(&state.db, &job).await?;
    crate::orchestrator::events::emit(
        state,
        event(&job, "job_created", Some(&user.username), json!({})),
    )
    .await;
    Ok(job)
}

/// Moves a job a person may see along the state machine (`job_status_updated` on the bus).
/// People may make every transition of the machine through this; agents move jobs through
/// their leases (`orchestrator::leases`).
pub async fn set_status(
    state: &crate::state::AppState,
    user: &User,
    job: &JobRow,
    requested: JobStatus,
) -> Result<JobRow, JobError> {
    let now = crate::clock::at_storage_precision(state.clock.now());
    let mut next = transition(job, requested, now).map_err(JobError::Transition)?;
    if !crate::store::jobs::update_status(&state.db, &next, job.version).await? {
        return Err(JobError::Changed);
    }
    next.version += 1;
    let change = json!({"old_status": job.status, "new_status": next.status});
    crate::orchestrator::events::emit(
        state,
        event(&next, "job_status_updated", Some(&user.username), change),
    )
    .await;
    Ok(next)
}

/// Deletes a job a person may see (`job_deleted` on the bus).
pub async fn delete(
    state: &crate::state::AppState,
    user: &User,
    job: &JobRow,
) -> Result<(), JobError> {
    if !crate::store::jobs::delete(&state.db, job.id, job.version).await? {
        return Err(JobError::Changed);
    }
    crate::orchestrator::events::emit(
        state,
        event(job, "job_deleted", Some(&user.username), json!({})),
    )
    .await;
    Ok(())
}

/// A page of a job's output.
#[derive(Debug, Clone)]
pub struct OutputPage {
    pub lines: Vec<crate::store::output::OutputLine>,
    /// Lines the job has in all.
    pub total: i64,
    /// Whether the output reached `KYROS_JOB_OUTPUT_MAX_BYTES` (a marker line says where).
    pub truncated: bool,
}

/// Up to `limit` output lines after line `after` of a job `user` may see, in order.
pub async fn output(
    state: &crate::state::AppState,
    user: &User,
    id: &str,
    after: i64,
    limit: i64,
) -> Result<OutputPage, JobError> {
    let job = find_visible(state, user, id).await?;
    let (total, _, truncated) = crate::store::output::counters(&state.db, job.id)
        .await?
        .ok_or(JobError::NotFound)?;
    let lines = crate::store::output::after(&state.db, job.id, after, limit).await?;
    Ok(OutputPage {
        lines,
        total,
        truncated,
    })
}

/// What a bulk request does to each of its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// `pending | running → cancelled`.
    Cancel,
    /// `failed → pending`.
    Retry,
}

/// The most jobs of one bulk request.
pub const BULK_MAX: usize = 100;

/// Applies `action` to each job of `ids` that `user` may see, one by one and independently
/// (each through [`set_status`]: the state machine, the event, the version check); the outcome
/// of each, in the order given (an id given twice is done once).
pub async fn bulk(
    state: &crate::state::AppState,
    user: &User,
    action: BulkAction,
    ids: &[uuid::Uuid],
) -> Vec<(uuid::Uuid, Result<JobRow, JobError>)> {
    let to = match action {
        BulkAction::Cancel => JobStatus::Cancelled,
        BulkAction::Retry => JobStatus::Pending,
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids.iter().filter(|id| seen.insert(**id)) {
        let outcome = match find_visible(state, user, &id.to_string()).await {
            Ok(job) => set_status(state, user, &job, to).await,
            Err(e) => Err(e),
        };
        out.push((*id, outcome));
    }
    out
}

/// Submits, as `user`'s, a new job with the title, description, priority, metadata and
/// required labels of a job `user` may see ("run again"); `job_created` goes on the bus.
pub async fn rerun(
    state: &crate::state::AppState,
    user: &User,
    id: &str,
) -> Result<JobRow, JobError> {
    let job = find_visible(state, user, id).await?;
    submit(
        state,
        user,
        NewJob {
            title: job.name.clone(),
            description: job.description.clone(),
            priority: job.priority,
            metadata: job.metadata.as_ref().map(|m| m.0.clone()),
            requires: crate::orchestrator::leases::labels_of(job.requires.as_ref()),
        },
    )
    .await
}

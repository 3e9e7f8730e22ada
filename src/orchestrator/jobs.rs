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
use crate::store::jobs::JobRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

fn ts(t: &DateTime<Utc>) -> Value {
    json!(t)
}

/// The representation clients get (the original `JobResponse` fields first among more).
pub fn to_json(job: &JobRow) -> Value {
    json!({
        "id": job.id,
        "name": job.name,
        "description": job.description,
        "status": job.status,
        "priority": job.priority,
        "metadata": job.metadata.as_ref().map(|m| m.0.clone()),
        "owner_id": job.owner_id,
        "attempts": job.attempts,
        "created_at": ts(&job.created_at),
        "updated_at": ts(&job.updated_at),
        "started_at": job.started_at.as_ref().map(ts),
        "completed_at": job.completed_at.as_ref().map(ts),
        "agent_id": job.lease_owner,
        "lease_expires_at": job.lease_expires_at.as_ref().map(ts),
        "result": job.result.as_ref().map(|r| r.0.clone()),
        "error": job.error,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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

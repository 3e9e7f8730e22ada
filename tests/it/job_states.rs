//! Properties of the job state machine over arbitrary sequences of requested transitions and
//! lease expiries: refused steps change nothing, and whatever the path, a job's fields agree
//! with its status.

use chrono::{Duration, TimeZone, Utc};
use kyros::orchestrator::jobs::{JobStatus, expire_lease, transition};
use kyros::store::jobs::JobRow;
use proptest::prelude::*;

const MAX_ATTEMPTS: i32 = 3;

#[derive(Debug, Clone)]
enum Step {
    To(JobStatus),
    /// The agent holding the job stops heartbeating (only meaningful while running).
    LeaseExpires,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::sample::select(JobStatus::ALL.to_vec()).prop_map(Step::To),
        1 => Just(Step::LeaseExpires),
    ]
}

fn new_job() -> JobRow {
    let at = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    JobRow {
        id: uuid::Uuid::from_u128(1),
        name: "job".into(),
        description: None,
        status: "pending".into(),
        priority: 0,
        metadata: None,
        owner_id: None,
        version: 1,
        attempts: 0,
        created_at: at,
        updated_at: at,
        started_at: None,
        completed_at: None,
        lease_owner: None,
        lease_expires_at: None,
        lease_token: None,
        result: None,
        error: None,
        requires: None,
        progress: None,
        progress_message: None,
        exit_code: None,
        agent_name: None,
    }
}

fn status(job: &JobRow) -> JobStatus {
    job.status.parse().expect("a known status")
}

fn check_invariants(job: &JobRow) {
    match status(job) {
        JobStatus::Pending => {
            assert!(
                job.started_at.is_none() && job.completed_at.is_none(),
                "{job:?}"
            );
            assert!(job.result.is_none() && job.error.is_none(), "{job:?}");
            assert!(job.lease_owner.is_none(), "{job:?}");
        }
        JobStatus::Running => {
            assert!(
                job.started_at.is_some() && job.completed_at.is_none(),
                "{job:?}"
            );
        }
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled => {
            assert!(job.completed_at.is_some(), "{job:?}");
            assert!(
                job.lease_owner.is_none() && job.lease_expires_at.is_none(),
                "{job:?}"
            );
        }
    }
    if let (Some(started), Some(done)) = (job.started_at, job.completed_at) {
        assert!(started <= done, "{job:?}");
    }
    assert!(job.updated_at >= job.created_at);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_path_keeps_the_job_consistent(steps in prop::collection::vec(step(), 0..40)) {
        let mut job = new_job();
        let mut now = job.created_at;
        for step in steps {
            now += Duration::seconds(1);
            let before = job.clone();
            match step {
                Step::To(to) => {
                    let from = status(&job);
                    match transition(&job, to, now) {
                        Ok(next) => {
                            prop_assert!(from.can_become(to));
                            prop_assert_eq!(status(&next), to);
                            prop_assert_eq!(next.updated_at, now);
                            // Only a retry counts an attempt.
                            let retry = from == JobStatus::Failed && to == JobStatus::Pending;
                            prop_assert_eq!(next.attempts, before.attempts + i32::from(retry));
                            prop_assert_eq!(&next.name, &before.name);
                            prop_assert_eq!(next.created_at, before.created_at);
                            job = next;
                            if to == JobStatus::Running {
                                // What a claim adds: the agent's lease.
                                job.lease_owner = Some(uuid::Uuid::from_u128(7));
                                job.lease_expires_at = Some(now + Duration::seconds(30));
                            }
                        }
                        Err(refused) => {
                            prop_assert!(!from.can_become(to));
                            prop_assert_eq!((refused.from, refused.to), (from, to));
                        }
                    }
                }
                Step::LeaseExpires => {
                    if status(&job) == JobStatus::Running {
                        let next = expire_lease(&job, now, MAX_ATTEMPTS);
                        prop_assert_eq!(next.attempts, before.attempts + 1);
                        let expected = if next.attempts < MAX_ATTEMPTS {
                            JobStatus::Pending
                        } else {
                            JobStatus::Failed
                        };
                        prop_assert_eq!(status(&next), expected);
                        job = next;
                    }
                }
            }
            check_invariants(&job);
            // Completed and cancelled jobs never change again.
            if matches!(status(&before), JobStatus::Completed | JobStatus::Cancelled) {
                prop_assert_eq!(&job.status, &before.status);
                prop_assert_eq!(job.updated_at, before.updated_at);
            }
        }
    }
}

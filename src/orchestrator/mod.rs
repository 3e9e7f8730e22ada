//! The orchestrator's domain: jobs and their state machine, leases, collaborative tasks, the
//! event log and its bus, ETags. Who may see what is `auth::policy`'s to say.

pub mod etag;
pub mod events;
pub mod jobs;
pub mod leases;
pub mod tasks;

use uuid::Uuid;

use crate::model::User;
use crate::state::AppState;

/// Whether `user` may follow the events of the job or task `id` (a live subscription): a job as
/// the policy lets them see it, a collaborative task always. Unknown ids and store failures: no.
pub async fn may_follow(state: &AppState, user: &User, id: &str) -> bool {
    let Ok(uuid) = Uuid::parse_str(id) else {
        return false;
    };
    match crate::store::jobs::find(&state.db, uuid).await {
        Ok(Some(job)) => return crate::auth::policy::may_see_job(user, job.owner_id),
        Ok(None) => {}
        Err(_) => return false,
    }
    matches!(
        crate::store::tasks::find(&state.db, uuid).await,
        Ok(Some(_))
    )
}

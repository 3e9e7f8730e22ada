//! The one visibility and authorization policy: who may see or change which job, task, event
//! and agent. REST handlers, WebSocket subscriptions, SSE streams, the agent claim and the CLI
//! all ask here; nothing else writes "moderators see all, users see their own".
//!
//! The rules (the original service's role model, §3 of the reference):
//! * **Jobs and their events**: moderators and administrators see and change every job; a `user`
//!   sees and changes the jobs they own.
//! * **Agents** (API keys with `jobs:claim`): a key claims only jobs its *owner* may see — a
//!   `user`'s agent works that user's jobs, a moderator's or administrator's agent the shared
//!   queue — so nothing an agent runs is invisible to the person who owns it. The owner's role is
//!   the current one: a demoted owner's agents narrow with them.
//! * **Collaborative tasks**: everyone signed in sees and edits them; deleting one is for its
//!   creator, moderators and administrators.
//! * **Collaboration events** are shared by everyone signed in.
//! * **Agents list**: a `user` sees their own agents, moderators and administrators all.

use uuid::Uuid;

use crate::model::{Role, User};

/// Whether `user` sees everything of the orchestrator (every job, every agent).
fn sees_all(user: &User) -> bool {
    user.role >= Role::Moderator
}

/// The owner a listing must be restricted to for `user`: `None` means every owner.
pub fn owner_filter(user: &User) -> Option<Uuid> {
    (!sees_all(user)).then_some(user.id)
}

/// Whether `user` may see (and, with the write scope, change) the job owned by `owner`.
pub fn may_see_job(user: &User, owner: Option<Uuid>) -> bool {
    sees_all(user) || owner == Some(user.id)
}

/// Whether `user` may see an event of `stream` about a job owned by `owner`.
pub fn may_see_event(user: &User, stream: &str, owner: Option<Uuid>) -> bool {
    stream == crate::model::COLLAB || may_see_job(user, owner)
}

/// Whether `user` may delete the collaborative task created by `creator`.
pub fn may_delete_task(user: &User, creator: Option<Uuid>) -> bool {
    sees_all(user) || creator == Some(user.id)
}

/// Whether `user` may see the agent (API key) owned by `owner`.
pub fn may_see_agent(user: &User, owner: Option<Uuid>) -> bool {
    sees_all(user) || owner == Some(user.id)
}

/// Whether `user` may see and revoke the credentials (sessions, API keys) of `owner`: their own,
/// and everyone's for administrators; for anyone else they do not exist (404).
pub fn may_manage_credentials_of(user: &User, owner: Uuid) -> bool {
    user.id == owner || user.role == Role::Admin
}

/// The jobs an agent whose key belongs to `key_owner` may claim: `None` is the shared queue,
/// `Some(id)` only the jobs of that user.
pub fn claimable_owner(key_owner: &User) -> Option<Uuid> {
    owner_filter(key_owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> User {
        let now = chrono::Utc::now();
        User {
            id: Uuid::new_v4(),
            username: "u".into(),
            email: "u@example.org".into(),
            password_hash: String::new(),
            role,
            active: true,
            created_at: now,
            updated_at: now,
            failed_logins: 0,
            locked_until: None,
            token_generation: 0,
        }
    }

    #[test]
    fn users_see_their_own_jobs_and_moderators_all() {
        let (u, m, a) = (user(Role::User), user(Role::Moderator), user(Role::Admin));
        let other = Some(Uuid::new_v4());
        assert!(may_see_job(&u, Some(u.id)));
        assert!(!may_see_job(&u, other));
        assert!(!may_see_job(&u, None), "an ownerless job is not a user's");
        assert!(may_see_job(&m, other) && may_see_job(&a, other));
        assert_eq!(owner_filter(&u), Some(u.id));
        assert_eq!(owner_filter(&m), None);
    }

    #[test]
    fn agents_claim_what_their_owner_sees() {
        let u = user(Role::User);
        assert_eq!(claimable_owner(&u), Some(u.id));
        assert_eq!(claimable_owner(&user(Role::Admin)), None);
    }

    #[test]
    fn collaboration_events_are_shared_and_job_events_follow_the_job() {
        let u = user(Role::User);
        let other = Some(Uuid::new_v4());
        assert!(may_see_event(&u, "collab", other));
        assert!(!may_see_event(&u, "orchestrator", other));
        assert!(may_see_event(&u, "orchestrator", Some(u.id)));
    }
}

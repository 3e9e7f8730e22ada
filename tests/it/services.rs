//! The domain services called directly, without HTTP, with the manual clock: what every entry
//! point (REST, WebSocket, SSE, CLI) gets from them.

use crate::common::{Backend, TestApp};
use chrono::Duration;
use kyros::audit::Actor;
use kyros::auth::api_keys::{self, NewApiKey, Scope, Scopes};
use kyros::auth::login::{self, LoginError, SecondFactor};
use kyros::model::Role;
use kyros::orchestrator::jobs::{self, JobStatus, NewJob};
use kyros::orchestrator::leases::{self, Agent, LeaseError};

const PW: &str = "services test password";

fn new_job(title: &str) -> NewJob {
    NewJob {
        title: title.into(),
        description: None,
        priority: 0,
        metadata: None,
        requires: Vec::new(),
    }
}

/// Leases through the service: an agent works its owner's jobs only, a lost lease's token is
/// stale, the sweeper's step requeues an expired lease and counts the attempt.
async fn leases_follow_the_policy_and_the_clock(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("KYROS_JOB_LEASE_SECS", "30")
        .start()
        .await
    else {
        return;
    };
    let state = &app.state;
    let ana = app.create_user("ana", PW, Role::User).await;
    let bob = app.create_user("bob", PW, Role::User).await;
    let key = api_keys::create(
        state,
        &ana,
        NewApiKey {
            name: "runner".into(),
            scopes: [Scope::JobsClaim].into_iter().collect::<Scopes>(),
            expires_in_days: None,
        },
        Actor::System,
    )
    .await
    .expect("key");
    let agent = Agent {
        key_id: key.key.id,
        owner: &ana,
    };
    jobs::submit(state, &bob, new_job("bob's"))
        .await
        .expect("job");
    assert!(
        leases::claim(state, agent, &Default::default())
            .await
            .expect("claim")
            .is_none(),
        "another user's job is not ana's agent's to run"
    );
    let own = jobs::submit(state, &ana, new_job("ana's"))
        .await
        .expect("job");
    let first = leases::claim(state, agent, &Default::default())
        .await
        .expect("claim")
        .expect("ana's job");
    assert_eq!(first.id, own.id);
    let token = first.lease_token.clone().expect("token");

    app.clock.advance(Duration::seconds(31));
    leases::requeue_expired(state).await.expect("sweep");
    let requeued = jobs::find_visible(state, &ana, &own.id.to_string())
        .await
        .expect("visible");
    assert_eq!(requeued.status, JobStatus::Pending.as_str());
    assert_eq!(requeued.attempts, 1);

    let second = leases::claim(state, agent, &Default::default())
        .await
        .expect("claim")
        .expect("again");
    let stale = leases::complete(state, agent, &own.id.to_string(), &token, None, None).await;
    assert!(matches!(stale, Err(LeaseError::Stale)), "{stale:?}");
    let done = leases::complete(
        state,
        agent,
        &own.id.to_string(),
        second.lease_token.as_deref().expect("token"),
        Some(serde_json::json!({"ok": true})),
        Some(0),
    )
    .await
    .expect("complete");
    assert_eq!(done.status, JobStatus::Completed.as_str());
}

/// The login service: a wrong password is the one refusal; a challenge that does not exist
/// is refused before any code is checked.
async fn the_login_service_refuses_alike(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("lia", PW, Role::User).await;
    let wrong = login::password(&app.state, None, "token", "lia", "nope".to_owned().into()).await;
    assert!(matches!(wrong, Err(LoginError::Refused)), "{wrong:?}");
    let unknown = login::password(&app.state, None, "token", "nobody", PW.to_owned().into()).await;
    assert!(matches!(unknown, Err(LoginError::Refused)), "{unknown:?}");
    let ok = login::password(&app.state, None, "token", "LIA", PW.to_owned().into()).await;
    assert!(
        matches!(ok, Ok(login::PasswordStep::Complete(ref u)) if u.username == "lia"),
        "{ok:?}"
    );
    let missing = login::second_factor(
        &app.state,
        None,
        Some("no-such-challenge"),
        SecondFactor::Code("123456".into()),
    )
    .await;
    assert!(
        matches!(missing, Err(LoginError::ChallengeInvalid)),
        "{missing:?}"
    );
}

backend_tests!(
    leases_follow_the_policy_and_the_clock,
    the_login_service_refuses_alike,
);

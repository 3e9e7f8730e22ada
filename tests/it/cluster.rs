//! Three instances sharing one PostgreSQL database and one Redis, each on its own port — the
//! scale-out deployment. What one instance decides, the others honour: one rate-limit budget,
//! logouts, live events over WebSocket, job claims, browser sessions.

use std::time::Duration;

use crate::common::ws::{Ws, close_code, connect, next_json};
use crate::common::{Backend, TestApp, json};
use futures_util::SinkExt;
use kyros::model::Role;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PW: &str = "cluster test password";

/// Three instances on PostgreSQL + Redis with one secret and one key prefix.
async fn cluster(extra: &[(&str, &str)]) -> Option<Vec<TestApp>> {
    let prefix = format!("kyros-cluster-{}:", uuid::Uuid::new_v4().simple());
    let mut first = TestApp::builder(Backend::Postgres).var("REDIS_KEY_PREFIX", prefix.clone());
    for (k, v) in extra {
        first = first.var(k, *v);
    }
    let first = first.start().await?;
    let mut apps = Vec::new();
    for _ in 0..2 {
        let mut next = TestApp::builder(Backend::Postgres)
            .var("SECRET_KEY", first.secret())
            .var("REDIS_KEY_PREFIX", prefix.clone())
            .sharing_storage_with(&first);
        for (k, v) in extra {
            next = next.var(k, *v);
        }
        apps.push(next.start().await?);
    }
    apps.insert(0, first);
    let ports: std::collections::HashSet<&str> = apps
        .iter()
        .map(|a| a.base.rsplit(':').next().unwrap_or_default())
        .collect();
    assert_eq!(ports.len(), 3, "each instance listens on its own port");
    Some(apps)
}

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_rate_limit_budget() {
    let Some(apps) = cluster(&[("RATE_LIMIT_REQUESTS", "12"), ("RATE_LIMIT_WINDOW", "600")]).await
    else {
        return;
    };
    let (mut ok, mut limited) = (0, 0);
    for i in 0..36 {
        let app = &apps[i % 3];
        match status(app.client.get(app.url("/"))).await {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (ok, limited),
        (12, 24),
        "three times the budget sent, the budget served once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_is_refused_by_the_others_within_a_second() {
    let Some(apps) = cluster(&[]).await else {
        return;
    };
    apps[0].create_user("lou", PW, Role::User).await;
    let token = apps[0].token("lou", PW).await;
    for app in &apps {
        assert_eq!(app.get_with_token("/auth/user", &token).await.status(), 200);
    }
    let res = apps[0]
        .client
        .post(apps[0].url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success(), "{}", res.status());
    // Pub/sub carries the revocation at once; the database poll (0.5 s) is the safety net.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    for app in &apps[1..] {
        loop {
            let status = app.get_with_token("/auth/user", &token).await.status();
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still accepts the token a second after the logout",
                app.base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_events_reach_websocket_clients_on_other_instances() {
    let Some(apps) = cluster(&[]).await else {
        return;
    };
    apps[0].create_user("wendy", PW, Role::User).await;
    let token = apps[0].token("wendy", PW).await;
    let mut listeners = Vec::new();
    for app in &apps[1..] {
        let mut request = format!("{}/ws", app.base.replacen("http", "ws", 1))
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        assert_eq!(next_json(&mut ws).await["type"], "connection");
        ws.send(Message::text(
            json!({"type": "subscribe", "stream": "orchestrator"}).to_string(),
        ))
        .await
        .expect("subscribe");
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        listeners.push(ws);
    }
    let res = apps[0]
        .client
        .post(apps[0].url("/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"title": "made on the first instance"}))
        .send()
        .await
        .expect("job");
    assert_eq!(res.status(), 201);
    let id = json(res).await["id"].as_str().expect("id").to_owned();
    for ws in &mut listeners {
        let event = next_json(ws).await;
        assert_eq!(event["type"], "event", "{event}");
        assert_eq!(event["event"]["event"], "job_created", "{event}");
        assert_eq!(event["event"]["task_id"], json!(id), "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_claimed_through_different_instances_are_handed_out_once() {
    let Some(apps) = cluster(&[]).await else {
        return;
    };
    apps[0].create_user("ada", PW, Role::User).await;
    let token = apps[0].token("ada", PW).await;
    let mut submitted = Vec::new();
    for i in 0..30 {
        let app = &apps[i % 3];
        let res = app
            .client
            .post(app.url("/api/v1/jobs"))
            .bearer_auth(&token)
            .json(&json!({"title": format!("job {i}"), "priority": i % 4}))
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 201);
        submitted.push(json(res).await["id"].as_str().expect("id").to_owned());
    }
    let res = apps[0]
        .client
        .post(apps[0].url("/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "agent", "scopes": ["jobs:claim"]}))
        .send()
        .await
        .expect("key");
    assert_eq!(res.status(), 201);
    let key = json(res).await["key"].as_str().expect("key").to_owned();
    // Nine agents, three per instance, all claiming at once until the queue is empty.
    let mut workers = Vec::new();
    for i in 0..9 {
        let client = apps[i % 3].client.clone();
        let url = apps[i % 3].url("/api/v1/agents/claim");
        let key = key.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let res = client
                    .post(&url)
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .expect("claim");
                match res.status().as_u16() {
                    200 => {
                        let job: Value = res.json().await.expect("job");
                        mine.push(job["id"].as_str().expect("id").to_owned());
                    }
                    204 => return mine,
                    other => panic!("claim answered {other}"),
                }
            }
        }));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.expect("worker"));
    }
    assert_eq!(
        claimed.len(),
        30,
        "every job claimed, none twice: {claimed:?}"
    );
    claimed.sort();
    submitted.sort();
    assert_eq!(claimed, submitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_works_on_every_instance() {
    let Some(apps) = cluster(&[]).await else {
        return;
    };
    apps[0].create_user("sue", PW, Role::User).await;
    let session = apps[0].session("sue", PW).await;
    // Made on the first instance, a CSRF-protected write through the second…
    let res = apps[1]
        .with_csrf(Method::POST, "/api/v1/jobs", &session)
        .json(&json!({"title": "from the browser"}))
        .send()
        .await
        .expect("job");
    assert_eq!(res.status(), 201);
    // …and the cookie alone is refused there as anywhere.
    let res = apps[1]
        .with_session(Method::POST, "/api/v1/jobs", &session)
        .json(&json!({"title": "forged"}))
        .send()
        .await
        .expect("job");
    assert_eq!(res.status(), 403);
    // The third lists it as the current session.
    let res = apps[2]
        .with_session(Method::GET, "/auth/sessions", &session)
        .send()
        .await
        .expect("sessions");
    assert_eq!(res.status(), 200);
    let list = json(res).await;
    let listed = list
        .as_array()
        .or_else(|| list["sessions"].as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|s| s["id"] == json!(session.id) && s["current"] == true),
        "{list}"
    );
    // Logged out on the third: refused by all.
    let res = apps[2]
        .with_csrf(Method::DELETE, "/auth/session", &session)
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success(), "{}", res.status());
    for app in &apps {
        let res = app
            .with_session(Method::GET, "/auth/user", &session)
            .send()
            .await
            .expect("user");
        assert_eq!(res.status(), 401, "{}", app.base);
    }
}

async fn ws_connect(app: &TestApp, query: &str, header: Option<(&'static str, String)>) -> Ws {
    let headers: Vec<_> = header.into_iter().collect();
    let mut ws = connect(app, query, &headers).await.expect("connect");
    assert_eq!(next_json(&mut ws).await["type"], "connection");
    ws
}

/// A key revoked on one instance closes the sockets it opened on the others; a ticket's socket
/// on another instance ends with a role change (which revokes the user's tokens) made on the
/// first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_channels_end_on_every_instance() {
    let Some(apps) = cluster(&[]).await else {
        return;
    };
    let mod_user = apps[0].create_user("liv", PW, Role::Moderator).await;
    let token = apps[0].token("liv", PW).await;
    let res = apps[0]
        .client
        .post(apps[0].url("/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "live", "scopes": ["jobs:read", "events:read"]}))
        .send()
        .await
        .expect("key");
    let key = json(res).await;
    let (key_id, key) = (
        key["id"].as_str().expect("id").to_owned(),
        key["key"].as_str().expect("key").to_owned(),
    );
    let mut by_key = ws_connect(&apps[1], "", Some(("x-api-key", key.clone()))).await;
    let res = apps[0]
        .client
        .post(apps[0].url("/auth/ws-ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("ticket");
    let ticket = json(res).await["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let mut by_ticket = ws_connect(&apps[2], &format!("?ticket={ticket}"), None).await;

    // Demoted on instance 0: instance 2's ticket socket ends (the role change revokes tokens).
    kyros::auth::accounts::set_role(
        &apps[0].state,
        &mod_user,
        Role::User,
        kyros::audit::Actor::System,
    )
    .await
    .expect("demote");
    assert_eq!(
        close_code(&mut by_ticket).await,
        (CloseCode::Policy, "Token revoked".to_owned())
    );
    // Revoked on instance 0: instance 1's key socket ends.
    let res = apps[0]
        .client
        .delete(apps[0].url(&format!("/api/v1/api-keys/{key_id}")))
        .bearer_auth(&apps[0].token("liv", PW).await)
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 204);
    assert_eq!(
        close_code(&mut by_key).await,
        (CloseCode::Policy, "API key revoked".to_owned())
    );
}

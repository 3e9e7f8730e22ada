//! The WebSocket: every way to authenticate and the refusals, the original message formats,
//! subscriptions to live job events, and closing with 1008 when the credentials end.

use std::time::Duration;

use crate::common::ws::{close_code, connect, next_json};
use crate::common::{Backend, TestApp, json};
use chrono::Duration as ChronoDuration;
use futures_util::{SinkExt, StreamExt};
use kyros::model::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PW: &str = "websocket password";

async fn setup(backend: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::spawn(backend).await?;
    app.create_user("wes", PW, Role::User).await;
    let token = app.token("wes", PW).await;
    Some((app, token))
}

async fn every_authentication_method_works_and_nothing_else(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let mut ws = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("header auth");
    let hello = next_json(&mut ws).await;
    assert_eq!(
        (
            hello["type"].clone(),
            hello["status"].clone(),
            hello["user"].clone()
        ),
        (json!("connection"), json!("connected"), json!("wes"))
    );

    let mut ws = connect(&app, &format!("?token={token}"), &[])
        .await
        .expect("query token");
    assert_eq!(next_json(&mut ws).await["user"], "wes");

    let res = app
        .client
        .post(app.url("/auth/ws-ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("ticket");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let ticket = json(res).await["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let mut ws = connect(&app, &format!("?ticket={ticket}"), &[])
        .await
        .expect("ticket");
    assert_eq!(next_json(&mut ws).await["user"], "wes");
    assert_eq!(
        connect(&app, &format!("?ticket={ticket}"), &[]).await.err(),
        Some(401),
        "a ticket works once"
    );

    let s = app.session("wes", PW).await;
    let cookie = format!("kyros_session={}", s.token);
    let mut ws = connect(
        &app,
        "",
        &[
            ("cookie", cookie.clone()),
            ("origin", "http://localhost:3001".into()),
        ],
    )
    .await
    .expect("cookie");
    assert_eq!(next_json(&mut ws).await["user"], "wes");
    assert_eq!(
        connect(
            &app,
            "",
            &[
                ("cookie", cookie),
                ("origin", "https://evil.example".into())
            ]
        )
        .await
        .err(),
        Some(403),
        "a foreign page cannot use the browser's cookie"
    );

    assert_eq!(connect(&app, "", &[]).await.err(), Some(401));
    assert_eq!(
        connect(&app, "?token=not-a-token", &[]).await.err(),
        Some(401)
    );
    assert_eq!(connect(&app, "?ticket=made-up", &[]).await.err(), Some(401));
}

async fn messages_keep_the_original_formats(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let mut ws = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    ws.send(Message::text(r#"{"hello": "world"}"#))
        .await
        .expect("send");
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["type"], "message");
    assert_eq!(echo["data"], json!({"hello": "world"}));
    assert_eq!(echo["user"], "wes");
    ws.send(Message::text("[1, 2]")).await.expect("send");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "message": "Invalid message format: must be JSON object"})
    );
    ws.send(Message::text("{broken")).await.expect("send");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "message": "Invalid JSON format"})
    );
    ws.send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .expect("send");
    assert_eq!(
        next_json(&mut ws).await["type"],
        "error",
        "a binary frame is an error message, not a crash"
    );
    ws.send(Message::text(r#"{"type": "ping"}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["type"], "pong");
}

async fn subscribers_receive_job_events_live(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"title": "live"}))
        .send()
        .await
        .expect("job");
    let id = json(res).await["id"].as_str().expect("id").to_owned();
    let mut ws = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    ws.send(Message::text(
        json!({"type": "subscribe", "job_id": id}).to_string(),
    ))
    .await
    .expect("subscribe");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    ws.send(Message::text(
        json!({"type": "subscribe", "job_id": uuid::Uuid::new_v4()}).to_string(),
    ))
    .await
    .expect("other");
    assert_eq!(
        next_json(&mut ws).await["type"],
        "error",
        "someone else's or an unknown job"
    );
    let res = app
        .client
        .put(app.url(&format!("/api/v1/jobs/{id}/status?status=running")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("run");
    assert_eq!(res.status(), 200);
    let event = next_json(&mut ws).await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["event"]["event"], "job_status_updated");
    assert_eq!(event["event"]["task_id"], json!(id));
    assert_eq!(event["event"]["new_status"], "running");
}

async fn revoked_or_expired_credentials_close_the_connection(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let mut ws = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    assert_eq!(
        close_code(&mut ws).await,
        (CloseCode::Policy, "Token revoked".to_owned())
    );

    let fresh = app.token("wes", PW).await;
    let mut ws = connect(&app, &format!("?token={fresh}"), &[])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    app.clock.advance(ChronoDuration::minutes(121));
    assert_eq!(
        close_code(&mut ws).await,
        (CloseCode::Policy, "Token expired".to_owned())
    );
}

async fn oversized_and_flooding_messages_are_refused(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let mut ws = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    for i in 0..30 {
        ws.send(Message::text(json!({"n": i}).to_string()))
            .await
            .expect("send");
    }
    let mut limited = 0;
    for _ in 0..30 {
        let reply = next_json(&mut ws).await;
        if reply == json!({"type": "error", "message": "Rate limit exceeded"}) {
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "at most 20 messages a second are handled, {limited} refused"
    );

    let mut ws = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    let _ = ws.send(Message::text("x".repeat(70 * 1024))).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer in time");
    match outcome {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        Some(Ok(Message::Close(None))) | Some(Err(_)) | None => {}
        Some(Ok(other)) => panic!("a 70 KiB message was answered with {other:?}"),
    }
    // The service is fine.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
}

async fn create_job(app: &TestApp, token: &str, title: &str) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(token)
        .json(&json!({"title": title}))
        .send()
        .await
        .expect("job");
    assert_eq!(res.status(), 201);
    json(res).await["id"].as_str().expect("id").to_owned()
}

/// `{"stream":"orchestrator"}` follows every job the caller may see (a console's job list) and
/// nothing else: another user's job stays invisible to a plain user, a moderator sees it.
async fn the_orchestrator_stream_follows_every_visible_job(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    app.create_user("other", PW, Role::User).await;
    app.create_user("mod", PW, Role::Moderator).await;
    let other = app.token("other", PW).await;
    let moderator = app.token("mod", PW).await;
    let mut mine = connect(&app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    let mut all = connect(
        &app,
        "",
        &[("authorization", format!("Bearer {moderator}"))],
    )
    .await
    .expect("connect");
    for ws in [&mut mine, &mut all] {
        next_json(ws).await;
        ws.send(Message::text(
            json!({"type": "subscribe", "stream": "orchestrator"}).to_string(),
        ))
        .await
        .expect("subscribe");
        let ack = next_json(ws).await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
        assert_eq!(ack["stream"], "orchestrator", "{ack}");
    }
    let foreign = create_job(&app, &other, "someone else's").await;
    let own = create_job(&app, &token, "my own").await;
    // The user's socket skips the foreign job and shows its own first.
    let event = next_json(&mut mine).await;
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(event["stream"], "orchestrator");
    assert_eq!(event["event"]["task_id"], json!(own), "{event}");
    // The moderator sees both, in order.
    let first = next_json(&mut all).await;
    let second = next_json(&mut all).await;
    assert_eq!(first["event"]["task_id"], json!(foreign), "{first}");
    assert_eq!(second["event"]["task_id"], json!(own), "{second}");
    // Unsubscribed: nothing more arrives but the reply to a ping.
    mine.send(Message::text(
        json!({"type": "unsubscribe", "stream": "orchestrator"}).to_string(),
    ))
    .await
    .expect("unsubscribe");
    assert_eq!(next_json(&mut mine).await["type"], "unsubscribed");
    create_job(&app, &token, "after").await;
    mine.send(Message::text(json!({"type": "ping"}).to_string()))
        .await
        .expect("ping");
    assert_eq!(next_json(&mut mine).await["type"], "pong");
}

async fn api_key(app: &TestApp, token: &str, scopes: &[&str]) -> (String, String) {
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({"name": "live", "scopes": scopes}))
        .send()
        .await
        .expect("key");
    assert_eq!(res.status(), 201);
    let body = json(res).await;
    (
        body["id"].as_str().expect("id").to_owned(),
        body["key"].as_str().expect("key").to_owned(),
    )
}

/// Reads an SSE body until it ends (bounded); true when the server closed it.
async fn sse_ends(res: &mut reqwest::Response) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = res.chunk().await {}
    })
    .await
    .is_ok()
}

/// A WebSocket and an SSE stream opened with an API key end when the key is revoked; a socket
/// opened with a ticket ends with the credential that minted it (here: log out everywhere).
async fn live_channels_end_with_the_credential_behind_them(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let (key_id, key) = api_key(&app, &token, &["jobs:read", "events:read"]).await;
    let mut ws = connect(&app, "", &[("x-api-key", key.clone())])
        .await
        .expect("connect with a key");
    next_json(&mut ws).await;
    let mut sse = app
        .client
        .get(app.url("/api/v1/events/tail"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status(), 200);
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/api-keys/{key_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 204);
    assert_eq!(
        close_code(&mut ws).await,
        (CloseCode::Policy, "API key revoked".to_owned())
    );
    assert!(sse_ends(&mut sse).await, "the event stream ended");

    // A ticket's socket lives as long as what minted it.
    let res = app
        .client
        .post(app.url("/auth/ws-ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("ticket");
    let ticket = json(res).await["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let mut ws = connect(&app, &format!("?ticket={ticket}"), &[])
        .await
        .expect("connect with a ticket");
    next_json(&mut ws).await;
    let res = app
        .client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout-all");
    assert_eq!(res.status(), 200);
    assert_eq!(
        close_code(&mut ws).await,
        (CloseCode::Policy, "Token revoked".to_owned())
    );
}

/// A moderator demoted to `user` stops receiving other users' job events: a socket opened with
/// a token ends (the role change revokes tokens), one opened with an API key narrows to what the
/// new role may see.
async fn a_demoted_moderator_stops_seeing_other_users_jobs(backend: Backend) {
    let Some((app, token)) = setup(backend).await else {
        return;
    };
    let moderator = app.create_user("mia", PW, Role::Moderator).await;
    let mod_token = app.token("mia", PW).await;
    let (_, key) = api_key(&app, &mod_token, &["jobs:read", "events:read"]).await;
    let mut by_token = connect(
        &app,
        "",
        &[("authorization", format!("Bearer {mod_token}"))],
    )
    .await
    .expect("connect");
    let mut by_key = connect(&app, "", &[("x-api-key", key)])
        .await
        .expect("connect");
    for ws in [&mut by_token, &mut by_key] {
        next_json(ws).await;
        ws.send(Message::text(
            json!({"type": "subscribe", "stream": "orchestrator"}).to_string(),
        ))
        .await
        .expect("subscribe");
        assert_eq!(next_json(ws).await["type"], "subscribed");
    }
    let before = create_job(&app, &token, "seen while a moderator").await;
    assert_eq!(
        next_json(&mut by_key).await["event"]["task_id"],
        json!(before)
    );

    kyros::auth::accounts::set_role(
        &app.state,
        &moderator,
        Role::User,
        kyros::audit::Actor::System,
    )
    .await
    .expect("demote");
    assert_eq!(
        close_code(&mut by_token).await,
        (CloseCode::Policy, "Token revoked".to_owned())
    );
    // The key's socket learns the new role at its next credential check: from then on another
    // user's job cannot be followed (polled, bounded)…
    let mut narrowed = false;
    for _ in 0..50 {
        by_key
            .send(Message::text(
                json!({"type": "subscribe", "job_id": before}).to_string(),
            ))
            .await
            .expect("subscribe");
        let reply = next_json(&mut by_key).await;
        if reply["type"] == "error" {
            assert_eq!(reply["message"], "Not found");
            narrowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(narrowed, "the socket follows the demotion");
    // …nor is it delivered, while its owner's own job still is.
    by_key
        .send(Message::text(
            json!({"type": "unsubscribe", "job_id": before}).to_string(),
        ))
        .await
        .expect("unsubscribe");
    assert_eq!(next_json(&mut by_key).await["type"], "unsubscribed");
    create_job(&app, &token, "someone else's, after the demotion").await;
    let own_token = app.token("mia", PW).await;
    let own = create_job(&app, &own_token, "mia's own").await;
    let event = next_json(&mut by_key).await;
    assert_eq!(event["event"]["task_id"], json!(own), "{event}");
}

backend_tests!(
    live_channels_end_with_the_credential_behind_them,
    a_demoted_moderator_stops_seeing_other_users_jobs,
    the_orchestrator_stream_follows_every_visible_job,
    oversized_and_flooding_messages_are_refused,
    every_authentication_method_works_and_nothing_else,
    messages_keep_the_original_formats,
    subscribers_receive_job_events_live,
    revoked_or_expired_credentials_close_the_connection,
);

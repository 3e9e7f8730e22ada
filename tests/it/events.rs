//! The event log and its SSE streams: backlog, Last-Event-ID resume, live delivery, visibility,
//! and delivery across instances through Redis.

use std::time::Duration;

use crate::common::{Backend, TestApp, json};
use kyros::model::Role;
use kyros::orchestrator::events::{COLLAB, NewEvent, ORCHESTRATOR};
use serde_json::json;

const PW: &str = "events test password";

/// Reads an SSE body until `needle` appears (bounded), returning everything read.
async fn read_until(res: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = res.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{needle:?} never arrived; got {text:?}"
    );
    text
}

fn ids(sse: &str) -> Vec<i64> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().parse().expect("id"))
        .collect()
}

async fn post_event(app: &TestApp, token: &str, event: &str) {
    let res = app
        .client
        .post(app.url("/api/v1/events/"))
        .bearer_auth(token)
        .json(&json!({"event": event, "target": "doc-1", "details": {"n": 1}}))
        .send()
        .await
        .expect("append");
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("etag"));
    assert_eq!(json(res).await, json!({"ok": true}));
}

async fn collaboration_events_replay_resume_and_stream_live(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("eve", PW, Role::User).await;
    let token = app.token("eve", PW).await;
    post_event(&app, &token, "opened").await;
    post_event(&app, &token, "edited").await;

    let res = app
        .client
        .get(app.url("/api/v1/events/tail?once=true"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("tail");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    let body = res.text().await.expect("body");
    let seen = ids(&body);
    assert_eq!(seen.len(), 2);
    assert!(seen[0] < seen[1], "ordered by id");
    assert!(
        body.contains("\"event\":\"opened\"") && body.contains("\"actor\":\"eve@example.org\"")
    );

    let res = app
        .client
        .get(app.url("/api/v1/events/tail?once=1"))
        .bearer_auth(&token)
        .header("last-event-id", seen[0].to_string())
        .send()
        .await
        .expect("resume");
    let resumed = res.text().await.expect("body");
    assert_eq!(
        ids(&resumed),
        [seen[1]],
        "only what came after Last-Event-ID"
    );

    // Live: the stream stays open and new events arrive as they happen.
    let mut live = app
        .client
        .get(app.url("/api/v1/events/tail"))
        .bearer_auth(&token)
        .header("last-event-id", seen[1].to_string())
        .send()
        .await
        .expect("live");
    post_event(&app, &token, "published").await;
    let text = read_until(&mut live, "published").await;
    assert_eq!(ids(&text).len(), 1);

    let res = app
        .client
        .get(app.url("/api/v1/events/tail?once=1"))
        .send()
        .await
        .expect("anon");
    assert_eq!(res.status(), 401);
}

/// A resume delivers everything after the given id, however long the backlog: 1 100 events and
/// `Last-Event-ID: 0` give ids 1…1 100 without a gap, on the collaboration tail and on the
/// orchestrator stream, and the live stream continues after them.
async fn a_resume_delivers_the_whole_backlog(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("moe", PW, Role::Moderator).await;
    let token = app.token("moe", PW).await;
    let task = uuid::Uuid::new_v4().to_string();
    for (i, stream) in std::iter::repeat_n(COLLAB, 1100)
        .chain(std::iter::repeat_n(ORCHESTRATOR, 1100))
        .enumerate()
    {
        app.state
            .events
            .publish(
                &app.state.db,
                app.clock_now(),
                NewEvent {
                    stream,
                    event: format!("e{i}"),
                    actor: None,
                    target: Some("doc".into()),
                    task_id: Some(task.clone()),
                    run_id: None,
                    owner_id: None,
                    payload: json!({"n": i}),
                },
            )
            .await
            .expect("publish");
    }
    for path in [
        "/api/v1/events/tail?once=1".to_owned(),
        format!("/api/v1/orchestrator/events/stream?once=1&task_id={task}"),
    ] {
        let res = app
            .client
            .get(app.url(&path))
            .bearer_auth(&token)
            .header("last-event-id", "0")
            .send()
            .await
            .expect("resume");
        assert_eq!(res.status(), 200);
        let got = ids(&res.text().await.expect("body"));
        assert_eq!(got.len(), 1100, "{path}: every event after 0");
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{path}: in order, no repeats"
        );
    }
    // Live after a long resume: the backlog, then what happens next.
    let mut live = app
        .client
        .get(app.url("/api/v1/events/tail"))
        .bearer_auth(&token)
        .header("last-event-id", "0")
        .send()
        .await
        .expect("live");
    post_event(&app, &token, "after-the-backlog").await;
    let text = read_until(&mut live, "after-the-backlog").await;
    assert_eq!(ids(&text).len(), 1101);
}

async fn job_events_are_recorded_and_visible_to_their_owner(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("own", PW, Role::User).await;
    app.create_user("oth", PW, Role::User).await;
    app.create_user("mod", PW, Role::Moderator).await;
    let (own, oth, m) = (
        app.token("own", PW).await,
        app.token("oth", PW).await,
        app.token("mod", PW).await,
    );
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&own)
        .json(&json!({"title": "watched"}))
        .send()
        .await
        .expect("job");
    let id = json(res).await["id"].as_str().expect("id").to_owned();
    let mut stream = app
        .client
        .get(app.url(&format!("/api/v1/orchestrator/events/stream?task_id={id}")))
        .bearer_auth(&own)
        .send()
        .await
        .expect("stream");
    read_until(&mut stream, "job_created").await;
    let res = app
        .client
        .put(app.url(&format!("/api/v1/jobs/{id}/status?status=running")))
        .bearer_auth(&own)
        .send()
        .await
        .expect("run");
    assert_eq!(res.status(), 200);
    let text = read_until(&mut stream, "job_status_updated").await;
    assert!(
        text.contains("\"old_status\":\"pending\"") && text.contains("\"new_status\":\"running\""),
        "{text}"
    );

    let list = |token: String| {
        let app = &app;
        let id = id.clone();
        async move {
            let res = app
                .client
                .get(app.url(&format!("/api/v1/orchestrator/events?task_id={id}")))
                .bearer_auth(token)
                .send()
                .await
                .expect("list");
            assert_eq!(res.status(), 200);
            json(res).await["events"]
                .as_array()
                .expect("events")
                .clone()
        }
    };
    let events = list(own.clone()).await;
    let names: Vec<_> = events.iter().map(|e| e["event"].clone()).collect();
    assert_eq!(names, [json!("job_created"), json!("job_status_updated")]);
    assert_eq!(events[0]["task_id"], json!(id));
    assert!(events[0]["timestamp"].is_string() && events[0]["id"].is_i64());
    assert!(
        list(oth).await.is_empty(),
        "another user sees nothing of it"
    );
    assert_eq!(list(m).await.len(), 2, "a moderator sees it");

    let res = app
        .client
        .get(app.url("/api/v1/orchestrator/events"))
        .bearer_auth(&own)
        .send()
        .await
        .expect("none");
    assert_eq!(res.status(), 400);
    assert_eq!(
        json(res).await["detail"],
        "Either task_id or run_id must be provided"
    );
}

async fn events_reach_streams_on_other_instances(backend: Backend) {
    if backend == Backend::Sqlite {
        // Without Redis every instance has its own live bus; PostgreSQL + Redis is the scale-out setup.
        return;
    }
    let Some(a) = TestApp::spawn(backend).await else {
        return;
    };
    let Some(b) = TestApp::builder(backend)
        .var("SECRET_KEY", a.secret())
        .var(
            "REDIS_KEY_PREFIX",
            a.vars.value("REDIS_KEY_PREFIX").unwrap_or("x:"),
        )
        .sharing_storage_with(&a)
        .start()
        .await
    else {
        return;
    };
    a.create_user("far", PW, Role::User).await;
    let token = a.token("far", PW).await;
    let mut on_b = b
        .client
        .get(b.url("/api/v1/events/tail"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream on b");
    assert_eq!(on_b.status(), 200);
    // Once b's stream delivers an event of its own, its backlog phase is over: what comes next
    // from instance a can only arrive through Redis.
    post_event(&b, &token, "warm-up").await;
    read_until(&mut on_b, "warm-up").await;
    post_event(&a, &token, "cross-instance").await;
    read_until(&mut on_b, "cross-instance").await;
}

async fn a_stream_ends_when_its_token_is_revoked(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("rev", PW, Role::User).await;
    let token = app.token("rev", PW).await;
    post_event(&app, &token, "before").await;
    let mut live = app
        .client
        .get(app.url("/api/v1/events/tail"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    read_until(&mut live, "before").await;
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match live.chunk().await {
                Ok(Some(_)) => continue,
                _ => return true,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream ends once the token is revoked");
}

backend_tests!(
    a_resume_delivers_the_whole_backlog,
    a_stream_ends_when_its_token_is_revoked,
    collaboration_events_replay_resume_and_stream_live,
    job_events_are_recorded_and_visible_to_their_owner,
    events_reach_streams_on_other_instances,
);

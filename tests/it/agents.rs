//! Agents run jobs: claim with a lease, heartbeat, complete or fail; leases expire; no job is ever
//! handed to two agents, on either engine.

use crate::common::{Backend, TestApp, json};
use chrono::Duration;
use kyros::model::Role;
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "agents test password";

async fn key(app: &TestApp, token: &str, name: &str, scopes: &[&str]) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({"name": name, "scopes": scopes}))
        .send()
        .await
        .expect("create key");
    assert_eq!(res.status(), 201);
    json(res).await["key"].as_str().expect("key").to_owned()
}

fn as_agent(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("x-api-key", key)
}

async fn submit(app: &TestApp, token: &str, title: &str, priority: i64) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(token)
        .json(&json!({"title": title, "priority": priority}))
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 201);
    json(res).await["id"].as_str().expect("id").to_owned()
}

async fn claim(app: &TestApp, key: &str) -> Option<Value> {
    let res = as_agent(app, Method::POST, "/api/v1/agents/claim", key)
        .send()
        .await
        .expect("claim");
    match res.status().as_u16() {
        200 => Some(json(res).await),
        204 => None,
        other => panic!("claim answered {other}"),
    }
}

async fn setup(backend: Backend, extra: &[(&str, &str)]) -> Option<(TestApp, String)> {
    let mut b = TestApp::builder(backend);
    for (k, v) in extra {
        b = b.var(k, *v);
    }
    let app = b.start().await?;
    app.create_user("ops", PW, Role::User).await;
    let token = app.token("ops", PW).await;
    Some((app, token))
}

async fn an_agent_claims_by_priority_then_age_and_completes(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    let low = submit(&app, &token, "low", 0).await;
    app.clock.advance(Duration::seconds(1));
    let high = submit(&app, &token, "high", 10).await;
    app.clock.advance(Duration::seconds(1));
    let low2 = submit(&app, &token, "low, later", 0).await;
    let agent = key(&app, &token, "runner-1", &["jobs:claim", "jobs:read"]).await;

    let first = claim(&app, &agent).await.expect("a job");
    assert_eq!(first["id"], high);
    assert_eq!(first["status"], "running");
    assert!(first["started_at"].is_string() && first["lease_expires_at"].is_string());
    let id = first["id"].as_str().expect("id");
    let lease = first["lease_token"]
        .as_str()
        .expect("lease token")
        .to_owned();

    app.clock.advance(Duration::seconds(50));
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/heartbeat"),
        &agent,
    )
    .json(&json!({"lease_token": lease}))
    .send()
    .await
    .expect("hb");
    assert_eq!(res.status(), 200);
    app.clock.advance(Duration::seconds(50));
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/complete"),
        &agent,
    )
    .json(&json!({"result": {"artifacts": 3}, "lease_token": lease}))
    .send()
    .await
    .expect("complete");
    assert_eq!(res.status(), 200, "the heartbeat kept the lease alive");
    let done = json(res).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"], json!({"artifacts": 3}));
    assert!(done["agent_id"].is_null());

    // The owner sees the outcome.
    let res = app
        .client
        .get(app.url(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(json(res).await["status"], "completed");

    assert_eq!(claim(&app, &agent).await.expect("next")["id"], low);
    let failing = claim(&app, &agent).await.expect("next");
    assert_eq!(failing["id"], low2);
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{low2}/fail"),
        &agent,
    )
    .json(&json!({"error": "out of memory", "lease_token": failing["lease_token"]}))
    .send()
    .await
    .expect("fail");
    assert_eq!(json(res).await["error"], "out of memory");
    assert!(
        claim(&app, &agent).await.is_none(),
        "204 when nothing is pending"
    );

    let res = app
        .client
        .get(app.url("/api/v1/agents/"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("agents");
    let list = json(res).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["page"], 1);
    assert_eq!(list["pageSize"], 20);
    assert_eq!(list["agents"][0]["name"], "runner-1");
    assert_eq!(
        list["agents"][0]["status"], "active",
        "it holds low's lease"
    );
}

async fn only_agents_with_the_claim_scope_run_jobs(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    submit(&app, &token, "job", 0).await;
    let res = app
        .client
        .post(app.url("/api/v1/agents/claim"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("user");
    assert_eq!(res.status(), 403);
    let reader = key(&app, &token, "reader", &["jobs:read"]).await;
    let res = as_agent(&app, Method::POST, "/api/v1/agents/claim", &reader)
        .send()
        .await
        .expect("reader");
    assert_eq!(res.status(), 403);
    let a = key(&app, &token, "a", &["jobs:claim"]).await;
    let b = key(&app, &token, "b", &["jobs:claim"]).await;
    let job = claim(&app, &a).await.expect("job");
    let id = job["id"].as_str().expect("id");
    // Even with the lease token (leaked to it), another agent cannot act on the job.
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/complete"),
        &b,
    )
    .json(&json!({"lease_token": job["lease_token"]}))
    .send()
    .await
    .expect("other");
    assert_eq!(
        res.status(),
        409,
        "another agent cannot complete a job it does not hold"
    );
}

async fn expired_leases_return_jobs_until_the_attempts_run_out(backend: Backend) {
    let Some((app, token)) = setup(
        backend,
        &[
            ("KYROS_JOB_LEASE_SECS", "30"),
            ("KYROS_JOB_MAX_ATTEMPTS", "2"),
        ],
    )
    .await
    else {
        return;
    };
    let id = submit(&app, &token, "flaky", 0).await;
    let a = key(&app, &token, "a", &["jobs:claim"]).await;
    let b = key(&app, &token, "b", &["jobs:claim"]).await;
    let first = claim(&app, &a).await.expect("job");
    assert_eq!(first["id"], id);
    app.clock.advance(Duration::seconds(31));
    let again = claim(&app, &b).await.expect("requeued");
    assert_eq!(again["id"], id);
    assert_eq!(again["attempts"], 1);
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/heartbeat"),
        &a,
    )
    .json(&json!({"lease_token": first["lease_token"]}))
    .send()
    .await
    .expect("late");
    assert_eq!(res.status(), 409, "the first agent lost its lease");
    app.clock.advance(Duration::seconds(31));
    assert!(claim(&app, &a).await.is_none(), "no attempts left");
    let res = app
        .client
        .get(app.url(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    let job = json(res).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["attempts"], 2);
    assert!(
        job["error"]
            .as_str()
            .expect("error")
            .contains("lease expired")
    );
}

async fn concurrent_agents_never_get_the_same_job(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    let mut submitted = Vec::new();
    for i in 0..24 {
        submitted.push(submit(&app, &token, &format!("job {i}"), i % 3).await);
    }
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(key(&app, &token, &format!("agent {i}"), &["jobs:claim"]).await);
    }
    let workers = keys.iter().map(|k| {
        let app = &app;
        async move {
            let mut mine = Vec::new();
            while let Some(job) = claim(app, k).await {
                mine.push(job["id"].as_str().expect("id").to_owned());
            }
            mine
        }
    });
    let claimed: Vec<String> = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut unique = claimed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(claimed.len(), 24, "every job claimed");
    assert_eq!(unique.len(), 24, "and each exactly once");
    submitted.sort();
    assert_eq!(unique, submitted);
}

/// Two workers share one agent key. The first one's lease expires, the job is claimed again (by
/// the second, with the same key), and the first one's late heartbeat, completion or failure
/// is refused: each claim has its own fencing token.
async fn a_stale_worker_cannot_act_on_a_reclaimed_job(backend: Backend) {
    let Some((app, token)) = setup(
        backend,
        &[
            ("KYROS_JOB_LEASE_SECS", "30"),
            ("KYROS_JOB_MAX_ATTEMPTS", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let id = submit(&app, &token, "shared key", 0).await;
    let shared = key(&app, &token, "pool", &["jobs:claim"]).await;
    let stale = claim(&app, &shared).await.expect("first run");
    app.clock.advance(Duration::seconds(31));
    let fresh = claim(&app, &shared).await.expect("second run");
    assert_eq!(fresh["id"], id);
    assert_ne!(stale["lease_token"], fresh["lease_token"]);
    for action in ["heartbeat", "complete", "fail"] {
        let res = as_agent(
            &app,
            Method::POST,
            &format!("/api/v1/agents/jobs/{id}/{action}"),
            &shared,
        )
        .json(&json!({"lease_token": stale["lease_token"], "result": {"stale": true}}))
        .send()
        .await
        .expect("stale");
        assert_eq!(res.status(), 409, "stale {action}");
        assert_eq!(
            json(res).await["detail"],
            "The lease token is not the job's current one: the lease was lost"
        );
    }
    // Without a token nothing is accepted either.
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/complete"),
        &shared,
    )
    .send()
    .await
    .expect("no token");
    assert_eq!(res.status(), 422);
    assert_eq!(
        json(res).await["detail"][0]["loc"],
        json!(["body", "lease_token"])
    );
    // The current holder completes; the stale result was never written.
    let res = as_agent(
        &app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/complete"),
        &shared,
    )
    .json(&json!({"lease_token": fresh["lease_token"], "result": {"run": 2}}))
    .send()
    .await
    .expect("complete");
    assert_eq!(res.status(), 200);
    let done = json(res).await;
    assert_eq!(done["result"], json!({"run": 2}));
    assert_eq!(done["attempts"], 1);
}

/// An agent works only what its owner may see: a `user`'s key claims that user's jobs and never
/// another's (an administrator's included), cannot heartbeat or complete them even with their
/// lease token, while an administrator's agent works the shared queue.
async fn a_users_agent_runs_only_that_users_jobs(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    app.create_user("root", PW, Role::Admin).await;
    let admin = app.token("root", PW).await;
    let admins_job = submit(&app, &admin, "the admin's job", 100).await;
    let mine = submit(&app, &token, "ops's own job", 0).await;
    let users_agent = key(&app, &token, "ops-runner", &["jobs:claim", "jobs:read"]).await;
    let admins_agent = key(&app, &admin, "root-runner", &["jobs:claim"]).await;

    // The higher-priority job is the admin's: the user's agent skips it.
    let claimed = claim(&app, &users_agent).await.expect("its own job");
    assert_eq!(claimed["id"], mine);
    assert!(
        claim(&app, &users_agent).await.is_none(),
        "nothing else it may run"
    );
    let theirs = claim(&app, &admins_agent).await.expect("the shared queue");
    assert_eq!(theirs["id"], admins_job);
    for action in ["heartbeat", "complete"] {
        let res = as_agent(
            &app,
            Method::POST,
            &format!("/api/v1/agents/jobs/{admins_job}/{action}"),
            &users_agent,
        )
        .json(&json!({"lease_token": theirs["lease_token"], "result": {"stolen": true}}))
        .send()
        .await
        .expect("foreign");
        assert_eq!(
            res.status(),
            404,
            "{action}: another user's job does not exist for it"
        );
    }
    let res = app
        .client
        .get(app.url(&format!("/api/v1/jobs/{admins_job}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get");
    let job = json(res).await;
    assert_eq!(job["status"], "running");
    assert!(job["result"].is_null(), "nothing was written");
}

/// Claims made all at once, more of them than the pool has connections, each get a job while
/// jobs are waiting: "no job" (204) only ever means the queue is empty, never that another
/// claimer was faster (SQLite answered 204 to about a third of the claims of `bench/scale.sh`
/// at 32 connections with 40 000 jobs waiting).
async fn a_claim_finds_a_job_whenever_one_is_waiting(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    const N: usize = 48;
    for i in 0..N {
        submit(&app, &token, &format!("job {i}"), (i % 3) as i64).await;
    }
    let agent = key(&app, &token, "agent", &["jobs:claim"]).await;
    let claims = (0..N).map(|_| claim(&app, &agent));
    let answers = futures_util::future::join_all(claims).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|job| {
            job.as_ref().expect("a job was waiting for every claim")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "each job handed out once");
    assert!(
        claim(&app, &agent).await.is_none(),
        "and now the queue is empty"
    );
}

/// POST as the agent `key` to `/api/v1/agents/jobs/{id}/{action}` with `body`.
async fn act(app: &TestApp, key: &str, id: &str, action: &str, body: Value) -> reqwest::Response {
    as_agent(
        app,
        Method::POST,
        &format!("/api/v1/agents/jobs/{id}/{action}"),
        key,
    )
    .json(&body)
    .send()
    .await
    .expect("agent call")
}

fn line(stream: &str, text: &str) -> Value {
    json!({"stream": stream, "line": text})
}

async fn output_is_stored_in_order_paged_bounded_and_private(backend: Backend) {
    let Some((app, token)) = setup(backend, &[("KYROS_JOB_OUTPUT_MAX_BYTES", "64")]).await else {
        return;
    };
    app.create_user("eve", PW, Role::User).await;
    let eve = app.token("eve", PW).await;
    let id = submit(&app, &token, "noisy", 0).await;
    let agent = key(&app, &token, "runner", &["jobs:claim"]).await;
    let job = claim(&app, &agent).await.expect("job");
    let lease = job["lease_token"].clone();

    let res = act(
        &app,
        &agent,
        &id,
        "output",
        json!({"lease_token": lease, "lines": [line("stdout", "one"), line("stderr", "two <b>"), line("stdout", "three")]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"accepted": 3, "dropped": 0, "truncated": false, "last_seq": 3})
    );
    let page = |q: &'static str| {
        let app = &app;
        let token = token.clone();
        let id = id.clone();
        async move {
            let res = app
                .get_with_token(&format!("/api/v1/jobs/{id}/output{q}"), &token)
                .await;
            assert_eq!(res.status(), 200);
            json(res).await
        }
    };
    let first = page("?limit=2").await;
    assert_eq!(first["total"], 3);
    assert_eq!(first["next_after"], 2);
    assert_eq!(first["lines"][0]["line"], "one");
    assert_eq!(first["lines"][1]["stream"], "stderr");
    assert_eq!(first["lines"][1]["line"], "two <b>");
    assert_eq!(first["lines"][1]["attempt"], 1);
    let rest = page("?after=2").await;
    assert_eq!(rest["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["lines"][0]["seq"], 3);
    assert_eq!(page("?after=3").await["next_after"], 3, "nothing new");
    for bad in ["?after=-1", "?limit=0", "?limit=5001"] {
        let res = app
            .get_with_token(&format!("/api/v1/jobs/{id}/output{bad}"), &token)
            .await;
        assert_eq!(res.status(), 422, "{bad}");
    }

    // Nobody else's business: another user gets the job's 404.
    let res = app
        .get_with_token(&format!("/api/v1/jobs/{id}/output"), &eve)
        .await;
    assert_eq!(res.status(), 404);

    // Malformed batches are refused whole.
    let many: Vec<Value> = (0..1001).map(|i| line("stdout", &i.to_string())).collect();
    let long = "x".repeat(16 * 1024 + 1);
    for body in [
        json!({"lease_token": lease, "lines": many}),
        json!({"lease_token": lease, "lines": [line("stdout", &long)]}),
        json!({"lease_token": lease, "lines": [line("console", "x")]}),
        json!({"lines": []}),
    ] {
        let res = act(&app, &agent, &id, "output", body).await;
        assert_eq!(res.status(), 422);
    }
    let res = act(
        &app,
        &agent,
        &id,
        "output",
        json!({"lease_token": "stale", "lines": [line("stdout", "x")]}),
    )
    .await;
    assert_eq!(res.status(), 409, "a stale token writes nothing");

    // The budget (64 bytes): what fits is kept, then one marker, then nothing.
    let res = act(
        &app,
        &agent,
        &id,
        "output",
        json!({"lease_token": lease, "lines": [line("stdout", &"a".repeat(30)), line("stdout", &"b".repeat(30)), line("stdout", "c")]}),
    )
    .await;
    let receipt = json(res).await;
    assert_eq!(receipt["truncated"], true);
    assert_eq!(receipt["accepted"], 2, "one line and the marker: {receipt}");
    assert_eq!(receipt["dropped"], 2);
    let res = act(
        &app,
        &agent,
        &id,
        "output",
        json!({"lease_token": lease, "lines": [line("stdout", "later")]}),
    )
    .await;
    assert_eq!(
        json(res).await,
        json!({"accepted": 0, "dropped": 1, "truncated": true, "last_seq": 0})
    );
    let all = page("").await;
    assert_eq!(all["truncated"], true);
    let lines = all["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4]["stream"], "system");
    assert!(
        lines[4]["line"]
            .as_str()
            .is_some_and(|l| l.contains("output truncated")),
        "{lines:?}"
    );

    // Deleting the job deletes its output.
    let done = act(
        &app,
        &agent,
        &id,
        "complete",
        json!({"lease_token": lease, "exit_code": 0}),
    )
    .await;
    assert_eq!(done.status(), 200);
    assert_eq!(json(done).await["exit_code"], 0);
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert!(res.status().is_success());
    let job_id = uuid::Uuid::parse_str(&id).expect("uuid");
    let left = kyros::store::output::after(&app.state.db, job_id, 0, 100)
        .await
        .expect("read");
    assert!(left.is_empty(), "{left:?}");
}

async fn progress_and_output_reach_the_owner_live_and_no_one_else(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    app.create_user("eve", PW, Role::User).await;
    let eve = app.token("eve", PW).await;
    let id = submit(&app, &token, "watched", 0).await;
    let agent = key(&app, &token, "runner", &["jobs:claim"]).await;
    let job = claim(&app, &agent).await.expect("job");
    let lease = job["lease_token"].clone();
    for (body, status) in [
        (json!({"lease_token": lease, "progress": 1.5}), 422),
        (json!({"lease_token": lease, "progress": -0.1}), 422),
        (
            json!({"lease_token": lease, "progress": 0.3, "message": "x".repeat(1025)}),
            422,
        ),
        (
            json!({"lease_token": lease, "progress": 0.25, "message": "copying"}),
            200,
        ),
    ] {
        let res = act(&app, &agent, &id, "heartbeat", body).await;
        assert_eq!(res.status(), status);
    }
    let res = app
        .get_with_token(&format!("/api/v1/jobs/{id}"), &token)
        .await;
    let seen = json(res).await;
    assert_eq!(seen["progress"], 0.25);
    assert_eq!(seen["progress_message"], "copying");
    assert_eq!(seen["attempt"], 1);
    let res = act(
        &app,
        &agent,
        &id,
        "output",
        json!({"lease_token": lease, "lines": [line("stdout", "secret build log")]}),
    )
    .await;
    assert_eq!(res.status(), 200);

    let events = |who: String| {
        let app = &app;
        let id = id.clone();
        async move {
            let res = app
                .get_with_token(&format!("/api/v1/orchestrator/events?task_id={id}"), &who)
                .await;
            assert_eq!(res.status(), 200);
            json(res).await
        }
    };
    let mine = events(token.clone()).await.to_string();
    assert!(
        mine.contains("job_progress") && mine.contains("secret build log"),
        "{mine}"
    );
    let res = app
        .get_with_token(
            &format!("/api/v1/orchestrator/events?task_id={id}&lifecycle=true"),
            &token,
        )
        .await;
    let history = json(res).await;
    let names: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names,
        ["job_created", "job_claimed"],
        "a job's history without its activity, oldest first"
    );
    let theirs = events(eve.clone()).await.to_string();
    assert!(
        !theirs.contains("job_progress") && !theirs.contains("secret build log"),
        "{theirs}"
    );
}

async fn a_released_job_goes_back_without_using_an_attempt(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    let id = submit(&app, &token, "handed back", 0).await;
    let a = key(&app, &token, "a", &["jobs:claim"]).await;
    let b = key(&app, &token, "b", &["jobs:claim"]).await;
    let job = claim(&app, &a).await.expect("job");
    let lease = job["lease_token"].clone();
    let res = act(&app, &b, &id, "release", json!({"lease_token": lease})).await;
    assert_eq!(res.status(), 409, "not b's lease");
    let res = act(&app, &a, &id, "release", json!({})).await;
    assert_eq!(res.status(), 422);
    let res = act(&app, &a, &id, "release", json!({"lease_token": lease})).await;
    assert_eq!(res.status(), 200);
    let released = json(res).await;
    assert_eq!(released["status"], "pending");
    assert_eq!(released["attempts"], 0);
    assert!(released["agent_id"].is_null() && released["lease_token"].is_null());
    let res = act(&app, &a, &id, "complete", json!({"lease_token": lease})).await;
    assert_eq!(res.status(), 409, "the released lease is gone");
    let again = claim(&app, &b).await.expect("b gets it");
    assert_eq!(again["id"], json!(id));
    assert_eq!(again["attempt"], 1);
}

async fn labels_are_checked_and_matched(backend: Backend) {
    let Some((app, token)) = setup(backend, &[]).await else {
        return;
    };
    for bad in [
        json!(["gp u"]),
        json!([""]),
        json!(["-x"]),
        json!((0..33).map(|i| format!("l{i}")).collect::<Vec<_>>()),
    ] {
        let res = app
            .client
            .post(app.url("/api/v1/jobs"))
            .bearer_auth(&token)
            .json(&json!({"title": "t", "requires": bad}))
            .send()
            .await
            .expect("submit");
        assert_eq!(res.status(), 422, "{bad}");
        assert_eq!(
            json(res).await["detail"][0]["loc"],
            json!(["body", "requires"])
        );
    }
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"title": "gpu and arm", "requires": ["ARM64", "gpu", "gpu"]}))
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 201);
    let both = json(res).await;
    assert_eq!(both["requires"], json!(["arm64", "gpu"]));
    let agent = key(&app, &token, "runner", &["jobs:claim"]).await;
    let claim_with = |labels: Value| {
        let app = &app;
        let agent = agent.clone();
        async move {
            as_agent(app, Method::POST, "/api/v1/agents/claim", &agent)
                .json(&json!({"name": "box", "labels": labels, "version": "1.0", "host": "h"}))
                .send()
                .await
                .expect("claim")
        }
    };
    assert_eq!(
        claim_with(json!(["gpu"])).await.status(),
        204,
        "arm64 is missing"
    );
    assert_eq!(claim_with(json!([])).await.status(), 204);
    assert_eq!(claim_with(json!(["bad label"])).await.status(), 422);
    let res = claim_with(json!(["gpu", "arm64", "linux"])).await;
    assert_eq!(res.status(), 200);
    let claimed = json(res).await;
    assert_eq!(claimed["id"], both["id"]);
    assert_eq!(claimed["agent_name"], "box");
    let res = app.get_with_token("/api/v1/agents", &token).await;
    let listed = json(res).await["agents"][0].clone();
    assert_eq!(listed["name"], "box");
    assert_eq!(listed["labels"], json!(["arm64", "gpu", "linux"]));
    assert_eq!(listed["version"], "1.0");
    assert_eq!(listed["host"], "h");
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["currentJobs"][0]["id"], both["id"]);
    assert_eq!(listed["currentJob"]["id"], both["id"]);
    assert!(listed["successRate"].is_null(), "no run finished yet");
}

backend_tests!(
    a_claim_finds_a_job_whenever_one_is_waiting,
    a_users_agent_runs_only_that_users_jobs,
    a_stale_worker_cannot_act_on_a_reclaimed_job,
    an_agent_claims_by_priority_then_age_and_completes,
    only_agents_with_the_claim_scope_run_jobs,
    expired_leases_return_jobs_until_the_attempts_run_out,
    concurrent_agents_never_get_the_same_job,
    output_is_stored_in_order_paged_bounded_and_private,
    progress_and_output_reach_the_owner_live_and_no_one_else,
    a_released_job_goes_back_without_using_an_attempt,
    labels_are_checked_and_matched,
);

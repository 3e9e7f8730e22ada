//! Jobs: the original contract, the state machine, ownership, ETags and conditional requests.

use crate::common::{Backend, TestApp, json, python_etag};
use kyros::model::Role;
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "jobs test password";

async fn setup(backend: Backend) -> Option<(TestApp, String, String, String)> {
    let app = TestApp::spawn(backend).await?;
    app.create_user("ann", PW, Role::User).await;
    app.create_user("bob", PW, Role::User).await;
    app.create_user("mod", PW, Role::Moderator).await;
    let (ann, bob, m) = (
        app.token("ann", PW).await,
        app.token("bob", PW).await,
        app.token("mod", PW).await,
    );
    Some((app, ann, bob, m))
}

fn req(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let res = req(app, Method::POST, "/api/v1/jobs", token)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let job = json(res).await;
    assert_eq!(
        etag,
        python_etag(&job),
        "the ETag equals CPython's canonical form"
    );
    assert_eq!(
        location,
        format!("/api/v1/jobs/{}", job["id"].as_str().expect("id"))
    );
    job
}

async fn status(app: &TestApp, token: &str, id: &str, to: &str) -> reqwest::Response {
    req(
        app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status?status={to}"),
        token,
    )
    .send()
    .await
    .expect("status")
}

async fn the_lifecycle_follows_the_state_machine(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let job = create(&app, &ann, json!({"title": "  Build the model  ", "description": "nightly", "priority": 5, "metadata": {"k": "v"}})).await;
    assert_eq!(job["name"], "Build the model");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["description"], "nightly");
    assert_eq!(job["priority"], 5);
    assert_eq!(job["metadata"], json!({"k": "v"}));
    assert!(job["started_at"].is_null() && job["completed_at"].is_null());
    let id = job["id"].as_str().expect("id");

    let res = status(&app, &ann, id, "completed").await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        json(res).await["detail"],
        "Invalid status transition from pending to completed"
    );
    let res = status(&app, &ann, id, "running").await;
    assert_eq!(res.status(), 200);
    let running = json(res).await;
    assert!(running["started_at"].is_string());
    app.clock.advance(chrono::Duration::seconds(5));
    // The JSON body form works as well.
    let res = req(
        &app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status"),
        &ann,
    )
    .json(&json!({"status": "failed"}))
    .send()
    .await
    .expect("s");
    assert_eq!(res.status(), 200);
    let failed = json(res).await;
    assert!(failed["completed_at"].is_string());
    assert_eq!(
        status(&app, &ann, id, "running").await.status(),
        409,
        "failed → running is not allowed"
    );
    let retried = json(status(&app, &ann, id, "pending").await).await;
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["attempts"], 1);
    assert!(retried["started_at"].is_null() && retried["completed_at"].is_null());
    assert_eq!(status(&app, &ann, id, "cancelled").await.status(), 200);
    assert_eq!(
        status(&app, &ann, id, "pending").await.status(),
        409,
        "cancelled is final"
    );
    let res = status(&app, &ann, id, "exploded").await;
    assert_eq!(res.status(), 422);

    let res = req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &ann)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"message": "Job deleted successfully"})
    );
    let res = req(&app, Method::GET, &format!("/api/v1/jobs/{id}"), &ann)
        .send()
        .await
        .expect("gone");
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["detail"], "Job not found");
}

async fn bad_input_gets_422_not_500(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    for (body, field) in [
        (json!({"title": "   "}), "title"),
        (json!({}), "title"),
        (json!({"title": "x".repeat(256)}), "title"),
        (json!({"title": "ok", "priority": 5000}), "priority"),
        (json!({"title": "ok", "metadata": [1]}), "metadata"),
    ] {
        let res = req(&app, Method::POST, "/api/v1/jobs/", &ann)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 422, "{body}");
        assert_eq!(json(res).await["detail"][0]["loc"][1], field);
    }
    let res = req(&app, Method::GET, "/api/v1/jobs?limit=5000", &ann)
        .send()
        .await
        .expect("cap");
    assert_eq!(res.status(), 422, "the limit is capped");
    let res = req(&app, Method::GET, "/api/v1/jobs?status=weird", &ann)
        .send()
        .await
        .expect("status");
    assert_eq!(res.status(), 422);
}

async fn users_see_their_own_jobs_and_moderators_all(backend: Backend) {
    let Some((app, ann, bob, m)) = setup(backend).await else {
        return;
    };
    let a = create(&app, &ann, json!({"title": "ann's"})).await;
    create(&app, &bob, json!({"title": "bob's"})).await;
    let id = a["id"].as_str().expect("id");
    let names = |v: Value| {
        v.as_array()
            .expect("array")
            .iter()
            .map(|j| j["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            json(
                req(&app, Method::GET, "/api/v1/jobs", &ann)
                    .send()
                    .await
                    .expect("l")
            )
            .await
        ),
        [json!("ann's")]
    );
    assert_eq!(
        names(
            json(
                req(&app, Method::GET, "/api/v1/jobs/", &m)
                    .send()
                    .await
                    .expect("l")
            )
            .await
        )
        .len(),
        2
    );
    assert_eq!(
        req(&app, Method::GET, &format!("/api/v1/jobs/{id}"), &bob)
            .send()
            .await
            .expect("g")
            .status(),
        404
    );
    assert_eq!(
        status(&app, &bob, id, "running").await.status(),
        404,
        "bob cannot change ann's job"
    );
    assert_eq!(
        req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &bob)
            .send()
            .await
            .expect("d")
            .status(),
        404
    );
    assert_eq!(
        status(&app, &m, id, "running").await.status(),
        200,
        "a moderator can"
    );
    assert_eq!(
        app.client
            .get(app.url("/api/v1/jobs"))
            .send()
            .await
            .expect("anon")
            .status(),
        401
    );
}

async fn lists_are_ordered_filtered_paged_and_conditional(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        app.clock.advance(chrono::Duration::seconds(1));
        ids.push(create(&app, &ann, json!({"title": format!("job {i}")})).await["id"].clone());
    }
    status(&app, &ann, ids[0].as_str().expect("id"), "running").await;
    let res = req(&app, Method::GET, "/api/v1/jobs?limit=2&skip=1", &ann)
        .send()
        .await
        .expect("page");
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let page = json(res).await;
    assert_eq!(etag, python_etag(&page));
    let page_ids: Vec<_> = page
        .as_array()
        .expect("array")
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(
        page_ids,
        [ids[3].clone(), ids[2].clone()],
        "newest first, stable pages"
    );
    let running = json(
        req(&app, Method::GET, "/api/v1/jobs?status=running", &ann)
            .send()
            .await
            .expect("f"),
    )
    .await;
    assert_eq!(running.as_array().expect("array").len(), 1);

    for inm in [
        etag.clone(),
        etag.trim_matches('"').to_owned(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".into(),
    ] {
        let res = req(&app, Method::GET, "/api/v1/jobs?limit=2&skip=1", &ann)
            .header("if-none-match", &inm)
            .send()
            .await
            .expect("304");
        assert_eq!(res.status(), 304, "{inm}");
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert!(res.headers().get("content-type").is_none());
        assert!(res.bytes().await.expect("body").is_empty());
    }
    let res = req(&app, Method::GET, "/api/v1/jobs?limit=2&skip=1", &ann)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .expect("200");
    assert_eq!(res.status(), 200);
}

async fn if_match_guards_updates(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let job = create(&app, &ann, json!({"title": "guarded"})).await;
    let id = job["id"].as_str().expect("id");
    let res = req(&app, Method::GET, &format!("/api/v1/jobs/{id}"), &ann)
        .send()
        .await
        .expect("get");
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let res = req(
        &app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status?status=running"),
        &ann,
    )
    .header("if-match", "\"stale\"")
    .send()
    .await
    .expect("stale");
    assert_eq!(res.status(), 412);
    let res = req(
        &app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status?status=running"),
        &ann,
    )
    .header("if-match", &etag)
    .send()
    .await
    .expect("fresh");
    assert_eq!(res.status(), 200);
    let new_etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    assert_ne!(new_etag, etag);
    let res = req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &ann)
        .header("if-match", &etag)
        .send()
        .await
        .expect("old");
    assert_eq!(res.status(), 412, "the old ETag no longer matches");
    let res = req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &ann)
        .header("if-match", &new_etag)
        .send()
        .await
        .expect("new");
    assert_eq!(res.status(), 200);
}

backend_tests!(
    the_lifecycle_follows_the_state_machine,
    bad_input_gets_422_not_500,
    users_see_their_own_jobs_and_moderators_all,
    lists_are_ordered_filtered_paged_and_conditional,
    if_match_guards_updates,
);

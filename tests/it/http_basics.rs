//! The public routes and the error envelope for unknown routes and methods.

use crate::common::{Backend, TestApp, json};
use serde_json::json;

async fn root_and_health_answer_as_before(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let res = app.client.get(app.url("/")).send().await.expect("root");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"message": "Orchestrator API is running"})
    );
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await, json!({"status": "healthy"}));
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(json(res).await, json!({"status": "ok"}));
}

async fn healthz_reports_a_dead_database_without_details(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.state.db.close().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 500);
    let body = json(res).await;
    assert_eq!(body["detail"], "DB unavailable");
    assert_eq!(body["error"]["message"], "DB unavailable");
    assert_eq!(body["error"]["code"], 500);
    let text = body.to_string().to_lowercase();
    for leak in ["pool", "sqlx", "sqlite", "postgres", "closed", "127.0.0.1"] {
        assert!(!text.contains(leak), "{leak} leaked in {text}");
    }
}

async fn unknown_routes_and_methods_get_the_envelope(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/no/such/route?x=1"))
        .send()
        .await
        .expect("404");
    assert_eq!(res.status(), 404);
    assert_eq!(
        json(res).await,
        json!({
            "error": {"type": "http_exception", "code": 404, "message": "Not Found", "path": "/no/such/route", "method": "GET"},
            "detail": "Not Found",
        })
    );
    let res = app
        .client
        .delete(app.url("/health"))
        .send()
        .await
        .expect("405");
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET,HEAD");
    let body = json(res).await;
    assert_eq!(body["detail"], "Method Not Allowed");
    assert_eq!(body["error"]["method"], "DELETE");
}

/// A value the service cannot read — in the query, the path or the body — gets the envelope with
/// a 422 and the field's `loc`, never a plain-text 400, and the value is not echoed.
async fn unreadable_values_get_the_envelope_with_their_location(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("ext", "extractor password", kyros::model::Role::User)
        .await;
    let token = app.token("ext", "extractor password").await;
    let get = |path: &str| app.client.get(app.url(path)).bearer_auth(&token).send();
    // Query.
    let res = get("/api/v1/jobs?limit=abc").await.expect("query");
    assert_eq!(res.status(), 422);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    let body = json(res).await;
    assert_eq!(body["error"]["type"], "validation_error", "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["query", "limit"]));
    assert_eq!(body["detail"][0]["type"], "int_parsing");
    assert!(!body.to_string().contains("abc"), "not echoed: {body}");
    let res = get("/api/v1/orchestrator/events?task_id=x&once=1&run_id=")
        .await
        .expect("query ok");
    assert_eq!(res.status(), 200);
    let res = get("/api/v1/monitoring/logs/recent?lines=many")
        .await
        .expect("lines");
    assert_eq!(res.status(), 422);
    assert_eq!(
        json(res).await["detail"][0]["loc"],
        json!(["query", "lines"])
    );
    // Path: a parameter that is not UTF-8 once decoded.
    let res = get("/api/v1/jobs/%FF%FE").await.expect("path");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(body["detail"][0]["loc"], json!(["path", "id"]), "{body}");
    // Body: not JSON at all, and a field of the wrong type.
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("body");
    assert!(matches!(res.status().as_u16(), 400 | 422));
    let body = json(res).await;
    assert_eq!(
        body["error"]["path"], "/api/v1/jobs",
        "the envelope: {body}"
    );
    assert!(!body["detail"].is_null(), "{body}");
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"title": 42}))
        .send()
        .await
        .expect("body");
    assert_eq!(res.status(), 422);
    assert_eq!(
        json(res).await["detail"][0]["loc"],
        json!(["body", "title"])
    );
}

backend_tests!(
    unreadable_values_get_the_envelope_with_their_location,
    root_and_health_answer_as_before,
    healthz_reports_a_dead_database_without_details,
    unknown_routes_and_methods_get_the_envelope,
);

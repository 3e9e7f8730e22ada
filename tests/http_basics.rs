//! The public routes and the error envelope for unknown routes and methods.

mod common;

use common::{Backend, TestApp, json};
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

backend_tests!(
    root_and_health_answer_as_before,
    healthz_reports_a_dead_database_without_details,
    unknown_routes_and_methods_get_the_envelope,
);

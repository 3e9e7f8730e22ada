//! Collaborative tasks: the original contract, working item routes, versions and ETags.

use crate::common::{Backend, TestApp, json, python_etag};
use kyros::model::Role;
use reqwest::Method;
use serde_json::json;

const PW: &str = "tasks test password";

fn req(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn tasks_round_trip_with_versions_and_etags(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("tia", PW, Role::User).await;
    app.create_user("uli", PW, Role::User).await;
    let (tia, uli) = (app.token("tia", PW).await, app.token("uli", PW).await);

    let res = req(&app, Method::POST, "/api/v1/collab/tasks", &tia)
        .json(&json!({"title": "  Draft plan ", "description": "d".repeat(2000)}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let task = json(res).await;
    assert_eq!(task["title"], "Draft plan");
    assert_eq!(task["version"], 1);
    assert_eq!(etag, python_etag(&task));
    let id = task["id"].as_str().expect("id").to_owned();
    assert_eq!(
        location,
        format!("/api/v1/collab/tasks/{id}"),
        "the Location carries the /api/v1 prefix"
    );

    // The item route takes the real id.
    let res = req(&app, Method::GET, &location, &uli)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"].to_str().expect("ascii"), etag);
    let res = req(&app, Method::GET, &location, &uli)
        .header("if-none-match", format!("W/{etag}"))
        .send()
        .await
        .expect("304");
    assert_eq!(res.status(), 304);

    // The list: ETag over the items, as the original computed it.
    let res = req(&app, Method::GET, "/api/v1/collab/state/tasks", &uli)
        .send()
        .await
        .expect("list");
    let list_etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let list = json(res).await;
    assert_eq!(list["kind"], "tasks");
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert_eq!(list_etag, python_etag(&list["items"]));
    for inm in [
        list_etag.clone(),
        format!("\"x\", {}", list_etag.trim_matches('"')),
        "*".to_owned(),
    ] {
        let res = req(&app, Method::GET, "/api/v1/collab/state/tasks", &uli)
            .header("if-none-match", &inm)
            .send()
            .await
            .expect("304");
        assert_eq!(res.status(), 304, "{inm}");
    }

    // Another collaborator edits with If-Match; a stale tag is refused.
    let res = req(&app, Method::PUT, &location, &uli)
        .header("if-match", &etag)
        .json(&json!({"title": "Final plan"}))
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 200);
    let updated = json(res).await;
    assert_eq!(
        (updated["version"].clone(), updated["title"].clone()),
        (json!(2), json!("Final plan"))
    );
    let res = req(&app, Method::PUT, &location, &tia)
        .header("if-match", &etag)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("stale");
    assert_eq!(res.status(), 412);

    // Only the creator (or a moderator) deletes; 204 with no body.
    assert_eq!(
        req(&app, Method::DELETE, &location, &uli)
            .send()
            .await
            .expect("uli")
            .status(),
        403
    );
    let res = req(&app, Method::DELETE, &location, &tia)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.expect("body").is_empty());
    let res = req(&app, Method::GET, &location, &tia)
        .send()
        .await
        .expect("gone");
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["detail"], "Task not found");
    // The original's integer ids are not ids: the path parameter is a UUID (422, with its loc).
    let res = req(&app, Method::GET, "/api/v1/collab/tasks/12", &tia)
        .send()
        .await
        .expect("int");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(body["detail"][0]["loc"], serde_json::json!(["path", "id"]));
    assert_eq!(body["detail"][0]["type"], "uuid_parsing");
}

async fn invalid_tasks_get_422(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("val", PW, Role::User).await;
    let token = app.token("val", PW).await;
    for body in [
        json!({"title": ""}),
        json!({"title": "   "}),
        json!({}),
        json!({"title": "ok", "owner": "me"}),
    ] {
        let res = req(&app, Method::POST, "/api/v1/collab/tasks", &token)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 422, "{body}");
    }
    let res = req(&app, Method::POST, "/api/v1/collab/tasks", &token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("malformed");
    assert_eq!(res.status(), 422);
}

backend_tests!(
    tasks_round_trip_with_versions_and_etags,
    invalid_tasks_get_422
);

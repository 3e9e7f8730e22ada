//! User administration and the audit log, for administrators.

use crate::common::{Backend, TestApp, json};
use kyros::model::Role;
use serde_json::{Value, json};

const PW: &str = "admin test password";

async fn setup(backend: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::spawn(backend).await?;
    app.create_user("root", PW, Role::Admin).await;
    app.create_user("una", PW, Role::User).await;
    let admin = app.token("root", PW).await;
    Some((app, admin))
}

fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn admins_manage_users_and_everyone_else_is_refused(backend: Backend) {
    let Some((app, admin)) = setup(backend).await else {
        return;
    };
    let una = app.token("una", PW).await;
    let res = send(&app, reqwest::Method::GET, "/api/v1/admin/users", &una)
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), 403);
    assert_eq!(
        json(res).await["detail"],
        "Access denied. Required role: admin, user role: user"
    );
    assert_eq!(
        app.client
            .get(app.url("/api/v1/admin/users"))
            .send()
            .await
            .expect("anon")
            .status(),
        401
    );

    let res = send(&app, reqwest::Method::GET, "/api/v1/admin/users", &admin)
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), 200);
    let names: Vec<Value> = json(res).await["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, [json!("root"), json!("una")]);

    let res = send(&app, reqwest::Method::POST, "/api/v1/admin/users", &admin)
        .json(&json!({"username": "vera", "email": "vera@example.org", "password": "vera's password", "role": "moderator"}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let vera = json(res).await;
    assert_eq!(vera["role"], "moderator");
    assert!(vera.get("password_hash").is_none());
    let res = send(&app, reqwest::Method::POST, "/api/v1/admin/users", &admin)
        .json(
            &json!({"username": "VERA", "email": "v2@example.org", "password": "another password"}),
        )
        .send()
        .await
        .expect("dup");
    assert_eq!(res.status(), 409);
    let res = send(&app, reqwest::Method::POST, "/api/v1/admin/users", &admin)
        .json(&json!({"username": "w", "email": "w@example.org", "password": "a password here", "role": "root"}))
        .send()
        .await
        .expect("bad role");
    assert_eq!(res.status(), 422);

    // A role change revokes the old tokens and is audited.
    let vera_token = app.token("vera", "vera's password").await;
    let path = format!("/api/v1/admin/users/{}", vera["id"].as_str().expect("id"));
    assert_eq!(vera["mfa_enabled"], false);
    let seen = vera["etag"].as_str().expect("etag").to_owned();
    let res = send(&app, reqwest::Method::PATCH, &path, &admin)
        .header("if-match", &seen)
        .json(&json!({"role": "user"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 200);
    let changed = json(res).await;
    assert_eq!(changed["role"], "user");
    assert_ne!(changed["etag"], json!(seen), "a new version");
    // A second administrator's edit based on what they saw before: 412, nothing overwritten.
    let res = send(&app, reqwest::Method::PATCH, &path, &admin)
        .header("if-match", &seen)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .expect("stale patch");
    assert_eq!(res.status(), 412);
    let res = send(&app, reqwest::Method::GET, "/api/v1/admin/users", &admin)
        .send()
        .await
        .expect("list");
    let listed = json(res).await;
    let listed_vera = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|u| u["username"] == "vera")
        .expect("vera")
        .clone();
    assert_eq!(
        listed_vera["role"], "user",
        "the stale edit changed nothing"
    );
    assert_eq!(
        listed_vera["etag"], changed["etag"],
        "the list tells the same version"
    );
    assert_eq!(
        app.get_with_token("/auth/user", &vera_token).await.status(),
        401
    );
    let res = send(&app, reqwest::Method::PATCH, &path, &admin)
        .json(&json!({"active": false}))
        .send()
        .await
        .expect("disable");
    assert_eq!(json(res).await["active"], false);
    assert_eq!(app.login("vera", "vera's password").await.status(), 401);
    let rows = app.audit_rows("user.role_changed").await;
    assert_eq!(rows[0].details.0["from"], "moderator");
    assert_eq!(rows[0].details.0["to"], "user");
    assert_eq!(app.audit_rows("user.disabled").await.len(), 1);

    // No administrator locks themselves out.
    let root = app.state_user("root").await;
    let res = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/admin/users/{}", root.id),
        &admin,
    )
    .json(&json!({"role": "user"}))
    .send()
    .await
    .expect("self");
    assert_eq!(res.status(), 409);

    let una_user = app.state_user("una").await;
    let res = send(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/admin/users/{}/revoke-tokens", una_user.id),
        &admin,
    )
    .send()
    .await
    .expect("revoke");
    assert_eq!(res.status(), 204);
    assert_eq!(app.get_with_token("/auth/user", &una).await.status(), 401);
}

async fn the_audit_log_is_queryable_and_append_only(backend: Backend) {
    let Some((app, admin)) = setup(backend).await else {
        return;
    };
    for i in 0..3 {
        app.login("una", &format!("wrong {i}")).await;
    }
    app.state.audit.flush().await;
    let get = |query: &str| {
        let app = &app;
        let admin = admin.clone();
        let query = query.to_owned();
        async move {
            let res = send(
                app,
                reqwest::Method::GET,
                &format!("/api/v1/admin/audit{query}"),
                &admin,
            )
            .send()
            .await
            .expect("audit");
            assert_eq!(res.status(), 200, "{query}");
            json(res).await
        }
    };
    let failures = get("?event=auth.login&outcome=failure").await;
    let items = failures["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|i| i["actor"] == "una" && i["client_ip"] == "127.0.0.1")
    );
    assert!(
        items[0]["id"].as_i64() > items[1]["id"].as_i64(),
        "newest first"
    );

    let page1 = get("?event=auth.login&limit=2").await;
    assert_eq!(page1["items"].as_array().expect("items").len(), 2);
    let before = page1["next_before"].as_i64().expect("next page");
    let page2 = get(&format!("?event=auth.login&limit=2&before={before}")).await;
    let ids: Vec<i64> = page2["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect();
    assert!(!ids.is_empty() && ids.iter().all(|id| *id < before));

    let una = app.state_user("una").await;
    let by_actor = get(&format!("?actor_id={}", una.id)).await;
    assert!(
        by_actor["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["actor_id"] == json!(una.id))
    );
    let future = get("?since=2999-01-01T00:00:00Z").await;
    assert!(future["items"].as_array().expect("items").is_empty());
    let res = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/admin/audit?since=yesterday",
        &admin,
    )
    .send()
    .await
    .expect("bad");
    assert_eq!(res.status(), 422);
    let una_token = app.token("una", PW).await;
    let res = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/admin/audit",
        &una_token,
    )
    .send()
    .await
    .expect("user");
    assert_eq!(res.status(), 403);

    // Rows cannot be changed, whoever asks.
    let tampered = kyros::on_pool!(&app.state.db, pool => sqlx::query("UPDATE audit_log SET outcome = 'success'").execute(pool).await.map(|_| ()));
    assert!(tampered.is_err(), "the audit log refuses updates");
}

/// The audit log's event names come from the service's one list, and cover what it writes.
async fn the_audit_event_names_are_listed(backend: Backend) {
    let Some((app, admin)) = setup(backend).await else {
        return;
    };
    let res = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/admin/audit/events",
        &admin,
    )
    .send()
    .await
    .expect("events");
    assert_eq!(res.status(), 200);
    let names: Vec<String> = json(res).await["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e.as_str().expect("name").to_owned())
        .collect();
    for expected in [
        "auth.login",
        "auth.oidc.login",
        "settings.reload",
        "user.role_changed",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Every event written so far (logins, the admin's creation) is among them.
    app.state.audit.flush().await;
    for row in kyros::store::audit::recent(&app.state.db, None, 1000)
        .await
        .expect("rows")
    {
        assert!(names.contains(&row.event), "{} is not listed", row.event);
    }
    app.create_user("plain", "a plain password", kyros::model::Role::User)
        .await;
    let plain = app.token("plain", "a plain password").await;
    let res = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/admin/audit/events",
        &plain,
    )
    .send()
    .await
    .expect("events");
    assert_eq!(res.status(), 403);
}

backend_tests!(
    the_audit_event_names_are_listed,
    admins_manage_users_and_everyone_else_is_refused,
    the_audit_log_is_queryable_and_append_only
);

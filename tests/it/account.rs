//! `POST /auth/password`: changing one's own password with the current one, by bearer token and
//! by browser session (CSRF-protected), ending every other credential of the account.

use crate::common::{Backend, TestApp, find_cookie, json, set_cookies};
use kyros::model::Role;
use reqwest::Method;
use serde_json::json;

const OLD: &str = "the first password of pat";
const NEW: &str = "a second, longer password";
const PATH: &str = "/auth/password";

async fn change_by_bearer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("pat", OLD, Role::User).await;
    let token = app.token("pat", OLD).await;
    let post = |body: serde_json::Value| {
        app.client
            .post(app.url(PATH))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // Missing fields: 422 naming both, nothing echoed.
    let res = post(json!({})).await.expect("request");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    let text = body.to_string();
    assert!(
        text.contains("current_password") && text.contains("new_password"),
        "{text}"
    );

    // Wrong current password: 403 with the envelope, audited, password unchanged.
    let res = post(json!({"current_password": "not it at all", "new_password": NEW}))
        .await
        .expect("request");
    assert_eq!(res.status(), 403);
    let body = json(res).await;
    assert_eq!(body["detail"], "The current password is incorrect");
    assert_eq!(body["error"]["path"], PATH);
    let failures = app.audit_rows("auth.password_change").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].outcome, "failure");
    assert_eq!(
        app.state_user("pat").await.failed_logins,
        1,
        "counts towards the lockout"
    );

    // Too short, or the same: 422 on new_password.
    let res = post(json!({"current_password": OLD, "new_password": "short"}))
        .await
        .expect("request");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "new_password"]),
        "{body}"
    );
    let res = post(json!({"current_password": OLD, "new_password": OLD}))
        .await
        .expect("request");
    assert_eq!(res.status(), 422);
    assert!(json(res).await.to_string().contains("must differ"));

    // Accepted: the old token ends, the old password no longer works, the new one does.
    let res = post(json!({"current_password": OLD, "new_password": NEW}))
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or("")),
        Some("no-store")
    );
    assert!(
        set_cookies(&res).is_empty(),
        "a bearer client gets no cookie"
    );
    assert!(
        json(res).await["detail"]
            .as_str()
            .unwrap_or("")
            .contains("log in again")
    );
    let res = app.get_with_token("/auth/user", &token).await;
    assert_eq!(res.status(), 401, "the token in use has ended");
    assert_eq!(app.login("pat", OLD).await.status(), 401);
    assert_eq!(app.login("pat", NEW).await.status(), 200);
    let done = app.audit_rows("auth.password_changed").await;
    assert_eq!(done.len(), 1);
    let rows = format!("{:?}", app.audit_rows("auth.password_change").await) + &format!("{done:?}");
    assert!(
        !rows.contains(OLD) && !rows.contains(NEW),
        "no password in the audit log"
    );
    app.stop().await;
}

async fn change_by_session(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("sam", OLD, Role::User).await;
    let browser = app.session("sam", OLD).await;
    let elsewhere = app.session("sam", OLD).await;
    let body = json!({"current_password": OLD, "new_password": NEW});

    // The session cookie alone is not enough: CSRF applies.
    let res = app
        .with_session(Method::POST, PATH, &browser)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403);
    assert_eq!(app.login("sam", NEW).await.status(), 401, "unchanged");

    let res = app
        .with_csrf(Method::POST, PATH, &browser)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let cookies = set_cookies(&res);
    let fresh = find_cookie(&cookies, "kyros_session").expect("a new session cookie");
    assert_ne!(fresh.value(), browser.token);
    assert!(fresh.http_only().unwrap_or(false));
    assert!(
        find_cookie(&cookies, "csrf_token").is_some(),
        "a CSRF token for the new session"
    );
    let body = json(res).await;
    assert_eq!(body["user"]["username"], "sam");

    // Both old sessions have ended; the new one works.
    for old in [&browser, &elsewhere] {
        let res = app
            .with_session(Method::GET, "/auth/user", old)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 401);
    }
    let res = app
        .client
        .get(app.url("/auth/user"))
        .header("cookie", format!("kyros_session={}", fresh.value()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["username"], "sam");
    app.stop().await;
}

async fn api_keys_cannot_change_passwords(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("kim", OLD, Role::User).await;
    let token = app.token("kim", OLD).await;
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "k", "scopes": ["jobs:read"]}))
        .send()
        .await
        .expect("key");
    let key = json(res).await["key"].as_str().expect("key").to_owned();
    let res = app
        .client
        .post(app.url(PATH))
        .header("x-api-key", key)
        .json(&json!({"current_password": OLD, "new_password": NEW}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403);
    assert_eq!(app.login("kim", OLD).await.status(), 200, "unchanged");
    app.stop().await;
}

backend_tests!(
    change_by_bearer,
    change_by_session,
    api_keys_cannot_change_passwords,
);

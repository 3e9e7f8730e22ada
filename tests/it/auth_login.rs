//! Password login and the profile endpoint, as a client sees them.

use crate::common::{Backend, TestApp, json};
use kyros::clock::Clock;
use kyros::model::Role;
use kyros::store::users::{self, NewUser};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

async fn login_returns_a_bearer_token_that_opens_the_profile(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let user = app.create_user("alice", PASSWORD, Role::Moderator).await;

    let res = app.login("alice", PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = json(res).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3);

    let res = app.get_with_token("/auth/user", token).await;
    assert_eq!(res.status(), 200);
    let profile = json(res).await;
    assert_eq!(profile["id"], user.id.to_string());
    assert_eq!(profile["username"], "alice");
    assert_eq!(profile["email"], "alice@example.org");
    assert_eq!(profile["role"], "moderator");
    assert_eq!(profile["active"], true);
    assert!(
        profile["created_at"]
            .as_str()
            .expect("created_at")
            .ends_with('Z')
    );
}

async fn wrong_password_unknown_and_inactive_users_get_the_same_401(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("bob", PASSWORD, Role::User).await;
    let carol = app.create_user("carol", PASSWORD, Role::User).await;
    users::set_active(&app.state.db, carol.id, false, app.clock.now())
        .await
        .expect("disable");

    let mut bodies = Vec::new();
    for (username, password) in [
        ("bob", "wrong password"),
        ("nobody", PASSWORD),
        ("carol", PASSWORD),
    ] {
        let res = app.login(username, password).await;
        assert_eq!(res.status(), 401, "{username}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        bodies.push(json(res).await);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
    assert_eq!(bodies[0]["detail"], "Incorrect username or password");
    assert_eq!(bodies[0]["error"]["type"], "http_exception");
    assert_eq!(bodies[0]["error"]["code"], 401);
    assert_eq!(bodies[0]["error"]["path"], "/auth/login");
    assert_eq!(bodies[0]["error"]["method"], "POST");
}

async fn bcrypt_hash_from_the_old_service_logs_in_and_is_rehashed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let legacy = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    assert!(legacy.starts_with("$2b$"));
    let user = users::create(
        &app.state.db,
        NewUser {
            username: "legacy".into(),
            username_key: "legacy".into(),
            email: "legacy@example.org".into(),
            password_hash: legacy.clone(),
            role: Role::User,
            active: true,
        },
        app.clock.now(),
    )
    .await
    .expect("insert legacy user");

    assert_eq!(app.login("legacy", "not the password").await.status(), 401);
    let stored = users::find_by_id(&app.state.db, user.id)
        .await
        .expect("read")
        .expect("user");
    assert_eq!(
        stored.password_hash, legacy,
        "a failed login must not touch the hash"
    );

    app.token("legacy", PASSWORD).await;
    let stored = users::find_by_id(&app.state.db, user.id)
        .await
        .expect("read")
        .expect("user");
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "rehashed to Argon2id, got {}",
        &stored.password_hash[..20]
    );
    // The new hash works, the old one is gone.
    app.token("legacy", PASSWORD).await;
    assert_eq!(app.login("legacy", "not the password").await.status(), 401);
}

async fn long_passwords_are_not_truncated_and_overlong_ones_get_422(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let long: String = "p".repeat(299) + "X";
    app.create_user("longpw", &long, Role::User).await;
    app.token("longpw", &long).await;
    // Same first 299 bytes (well past bcrypt's 72), different last byte.
    let almost: String = "p".repeat(299) + "Y";
    assert_eq!(app.login("longpw", &almost).await.status(), 401);

    let overlong = "x".repeat(1025);
    let res = app.login("longpw", &overlong).await;
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
    assert_eq!(body["detail"][0]["type"], "string_too_long");
    assert_eq!(body["error"]["code"], 422);
    assert!(
        !body.to_string().contains(&overlong),
        "the password is not echoed"
    );
    // The limit is in bytes: 513 two-byte characters are too long too.
    let wide = "é".repeat(513);
    let res = app.login("longpw", &wide).await;
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
    assert_eq!(body["detail"][0]["type"], "string_too_long");
}

async fn malformed_login_bodies_get_422_with_field_errors(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let res = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "a@example.org", "password": 5}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(
        body["detail"],
        json!([
            {"type": "missing", "loc": ["body", "username"], "msg": "Field required"},
            {"type": "string_type", "loc": ["body", "password"], "msg": "Input should be a valid string"},
        ])
    );

    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=a&password=b")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 422);
    assert_eq!(
        json(res).await["detail"][0]["type"],
        "model_attributes_type"
    );

    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 422);
    assert_eq!(json(res).await["detail"][0]["type"], "json_invalid");
}

async fn profile_without_or_with_a_broken_token_is_401(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/auth/user"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let body = json(res).await;
    assert_eq!(body["detail"], "Could not validate credentials");
    assert_eq!(body["error"]["path"], "/auth/user");

    let res = app
        .client
        .get(app.url("/auth/user"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    assert_eq!(
        app.get_with_token("/auth/user", "not.a.jwt").await.status(),
        401
    );
}

async fn disabling_a_user_stops_their_token(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let dave = app.create_user("dave", PASSWORD, Role::User).await;
    let token = app.token("dave", PASSWORD).await;
    assert_eq!(app.get_with_token("/auth/user", &token).await.status(), 200);
    kyros::auth::accounts::set_active(&app.state, &dave, false, kyros::audit::Actor::System)
        .await
        .expect("disable");
    assert_eq!(app.get_with_token("/auth/user", &token).await.status(), 401);
}

async fn a_deleted_users_token_is_rejected(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let erin = app.create_user("erin", PASSWORD, Role::User).await;
    let token = app.token("erin", PASSWORD).await;
    users::delete(&app.state.db, erin.id).await.expect("delete");
    app.state.user_cache.forget(erin.id);
    let res = app.get_with_token("/auth/user", &token).await;
    assert_eq!(res.status(), 401);
    assert_eq!(json(res).await["detail"], "Could not validate credentials");
}

async fn first_superuser_is_created_on_start(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("FIRST_SUPERUSER", "root@example.org")
        .var("FIRST_SUPERUSER_PASSWORD", "a first admin password")
        .start()
        .await
    else {
        return;
    };
    let token = app
        .token("root@example.org", "a first admin password")
        .await;
    let profile = json(app.get_with_token("/auth/user", &token).await).await;
    assert_eq!(profile["role"], "admin");
    assert_eq!(profile["email"], "root@example.org");
}

backend_tests!(
    login_returns_a_bearer_token_that_opens_the_profile,
    wrong_password_unknown_and_inactive_users_get_the_same_401,
    bcrypt_hash_from_the_old_service_logs_in_and_is_rehashed,
    long_passwords_are_not_truncated_and_overlong_ones_get_422,
    malformed_login_bodies_get_422_with_field_errors,
    profile_without_or_with_a_broken_token_is_401,
    disabling_a_user_stops_their_token,
    a_deleted_users_token_is_rejected,
    first_superuser_is_created_on_start,
);

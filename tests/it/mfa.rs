//! TOTP multi-factor authentication: enrolment, two-step login for tokens and sessions, the
//! replay guard, recovery codes, disabling and admin reset.

use crate::common::{Backend, TestApp, find_cookie, json, set_cookies};
use chrono::Duration;
use kyros::auth::mfa::code_at;
use kyros::model::Role;
use serde_json::{Value, json};

const PW: &str = "mfa user password";

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Enrols `name` and returns (secret, recovery codes); the clock is then moved to a fresh step.
async fn enrolled(app: &TestApp, name: &str) -> (String, Vec<String>) {
    let token = app.token(name, PW).await;
    let res = post(app, "/auth/mfa/enroll", &token, json!({})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let e = json(res).await;
    let secret = e["secret"].as_str().expect("secret").to_owned();
    assert_eq!(secret.len(), 32, "160-bit secret in base32");
    let uri = e["otpauth_uri"].as_str().expect("uri");
    assert!(
        uri.starts_with(&format!("otpauth://totp/Kyros:{name}?")),
        "{uri}"
    );
    assert!(
        uri.contains(&format!("secret={secret}")) && uri.contains("issuer=Kyros"),
        "{uri}"
    );
    let svg = e["qr_svg"].as_str().expect("svg");
    assert!(svg.contains("<svg") && svg.contains("</svg>"));

    let res = post(app, "/auth/mfa/confirm", &token, json!({"code": "000000"})).await;
    assert_eq!(res.status(), 400, "a wrong first code does not enable MFA");
    assert_eq!(json(res).await["detail"], "Invalid verification code");
    let code = code_at(&secret, app.clock_now()).expect("code");
    let res = post(app, "/auth/mfa/confirm", &token, json!({"code": code})).await;
    assert_eq!(res.status(), 200);
    let codes: Vec<String> = json(res).await["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let status = json(app.get_with_token("/auth/mfa", &token).await).await;
    assert_eq!(status, json!({"enabled": true, "recovery_codes_left": 10}));
    app.clock.advance(Duration::seconds(30));
    (secret, codes)
}

async fn challenge(app: &TestApp, name: &str) -> String {
    let res = app.login(name, PW).await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["mfa_required"], true);
    assert!(
        body.get("access_token").is_none(),
        "no token before the second factor"
    );
    assert_eq!(body["expires_in"], 300);
    body["mfa_token"].as_str().expect("mfa_token").to_owned()
}

async fn verify(app: &TestApp, mfa_token: &str, body: Value) -> reqwest::Response {
    let mut body = body;
    body["mfa_token"] = json!(mfa_token);
    app.client
        .post(app.url("/auth/mfa/verify"))
        .json(&body)
        .send()
        .await
        .expect("verify")
}

async fn two_step_login_and_the_replay_guard(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("mia", PW, Role::User).await;
    let (secret, codes) = enrolled(&app, "mia").await;

    let first = challenge(&app, "mia").await;
    let code = code_at(&secret, app.clock_now()).expect("code");
    let res = verify(&app, &first, json!({"code": code})).await;
    assert_eq!(res.status(), 200);
    let tokens = json(res).await;
    assert!(tokens["refresh_token"].is_string());
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(
        json(app.get_with_token("/auth/user", access).await).await["username"],
        "mia"
    );

    // The same code again — even with a fresh challenge — is refused.
    let second = challenge(&app, "mia").await;
    let res = verify(&app, &second, json!({"code": code})).await;
    assert_eq!(res.status(), 401);
    assert_eq!(json(res).await["detail"], "Invalid verification code");
    // So is the code of an earlier step, once a later one was used.
    let earlier = code_at(&secret, app.clock_now() - Duration::seconds(30)).expect("earlier");
    assert_eq!(
        verify(&app, &second, json!({"code": earlier}))
            .await
            .status(),
        401
    );
    app.clock.advance(Duration::seconds(30));
    let next = code_at(&secret, app.clock_now()).expect("next");
    assert_eq!(
        verify(&app, &second, json!({"code": next})).await.status(),
        200
    );

    // A recovery code works exactly once.
    let third = challenge(&app, "mia").await;
    assert_eq!(
        verify(&app, &third, json!({"recovery_code": codes[0]}))
            .await
            .status(),
        200
    );
    assert_eq!(
        verify(&app, &third, json!({"recovery_code": codes[0]}))
            .await
            .status(),
        401
    );
    let token = app.token_after_mfa("mia", PW, &secret).await;
    assert_eq!(
        json(app.get_with_token("/auth/mfa", &token).await).await["recovery_codes_left"],
        9
    );

    // Challenges expire and cannot be forged.
    let stale = challenge(&app, "mia").await;
    app.clock.advance(Duration::seconds(301));
    let code = code_at(&secret, app.clock_now()).expect("code");
    let res = verify(&app, &stale, json!({"code": code})).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await["detail"],
        "Invalid or expired MFA challenge"
    );
    let mut forged = stale.into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(
        verify(&app, &forged, json!({"code": code})).await.status(),
        401
    );
}

async fn cookie_sessions_use_the_second_step_too(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("sid", PW, Role::User).await;
    let (secret, _) = enrolled(&app, "sid").await;
    let res = app.session_login_response("sid", PW).await;
    assert_eq!(res.status(), 200);
    assert!(
        set_cookies(&res).is_empty(),
        "no session before the second factor"
    );
    let body = json(res).await;
    let mfa_token = body["mfa_token"].as_str().expect("token");
    let res = verify(
        &app,
        mfa_token,
        json!({"code": code_at(&secret, app.clock_now()).expect("code")}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let cookie = find_cookie(&set_cookies(&res), "kyros_session").expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert!(json(res).await["csrf_token"].is_string());
    let res = app
        .client
        .get(app.url("/auth/user"))
        .header("cookie", format!("kyros_session={}", cookie.value()))
        .send()
        .await
        .expect("profile");
    assert_eq!(res.status(), 200);
}

async fn wrong_codes_lock_the_account_like_wrong_passwords(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("KYROS_LOCKOUT_THRESHOLD", "3")
        .start()
        .await
    else {
        return;
    };
    app.create_user("lee", PW, Role::User).await;
    let (secret, _) = enrolled(&app, "lee").await;
    let mfa_token = challenge(&app, "lee").await;
    for guess in ["111111", "222222", "333333"] {
        assert_eq!(
            verify(&app, &mfa_token, json!({"code": guess}))
                .await
                .status(),
            401
        );
    }
    let code = code_at(&secret, app.clock_now()).expect("code");
    assert_eq!(
        verify(&app, &mfa_token, json!({"code": code}))
            .await
            .status(),
        401,
        "locked"
    );
    assert_eq!(app.audit_rows("auth.lockout").await.len(), 1);
}

/// Every failed factor of an account adds up until a complete login: a correct password in
/// between does not clear the count of wrong codes (threshold 5, three rounds of four codes).
async fn wrong_codes_add_up_across_challenges(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("KYROS_LOCKOUT_THRESHOLD", "5")
        .var("AUTH_RATE_LIMIT_REQUESTS", "1000")
        .var("RATE_LIMIT_REQUESTS", "1000")
        .start()
        .await
    else {
        return;
    };
    app.create_user("ray", PW, Role::User).await;
    let (secret, _) = enrolled(&app, "ray").await;
    for round in 0..3 {
        let res = app.login("ray", PW).await;
        if res.status() == 401 {
            // Locked: the password is not even checked any more.
            assert!(round > 0, "the first password is accepted");
            continue;
        }
        let mfa_token = json(res).await["mfa_token"]
            .as_str()
            .expect("mfa_token")
            .to_owned();
        for guess in ["111111", "222222", "333333", "444444"] {
            assert_eq!(
                verify(&app, &mfa_token, json!({"code": guess}))
                    .await
                    .status(),
                401
            );
        }
    }
    let user = app.state_user("ray").await;
    assert!(
        user.locked_at(app.clock_now()),
        "12 wrong codes against a threshold of 5 lock the account ({} failures)",
        user.failed_logins
    );
    assert!(!app.audit_rows("auth.lockout").await.is_empty());
    // The real password and the real code are refused while the lock lasts.
    assert_eq!(app.login("ray", PW).await.status(), 401);
    // After the lock, a complete login works and clears the count.
    app.clock.advance(Duration::seconds(3601));
    app.token_after_mfa("ray", PW, &secret).await;
    assert_eq!(app.state_user("ray").await.failed_logins, 0);
}

/// Codes sent at once against one challenge: once the threshold is reached no further code is
/// checked (the right one sent with them is refused too unless it came in first).
async fn concurrent_codes_cannot_pass_the_threshold(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("KYROS_LOCKOUT_THRESHOLD", "3")
        .var("AUTH_RATE_LIMIT_REQUESTS", "1000")
        .var("RATE_LIMIT_REQUESTS", "1000")
        .start()
        .await
    else {
        return;
    };
    app.create_user("cas", PW, Role::User).await;
    let (secret, _) = enrolled(&app, "cas").await;
    let mfa_token = challenge(&app, "cas").await;
    let guesses: Vec<String> = (0..12).map(|i| format!("{:06}", 100_000 + i)).collect();
    let sends = guesses
        .iter()
        .map(|g| verify(&app, &mfa_token, json!({"code": g})));
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // Only threshold-many codes were checked; the other nine met the lock.
    assert_eq!(
        app.audit_reasons("mfa.verify").await,
        [("invalid code".to_owned(), 3), ("locked".to_owned(), 9)]
    );
    let code = code_at(&secret, app.clock_now()).expect("code");
    assert_eq!(
        verify(&app, &mfa_token, json!({"code": code}))
            .await
            .status(),
        401,
        "locked"
    );
}

/// A challenge is single-use and ends with the credentials that created it.
async fn a_challenge_ends_with_its_password_and_is_single_use(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("pia", PW, Role::User).await;
    let (secret, _) = enrolled(&app, "pia").await;
    // Single use: a completed challenge cannot log in again (with another valid code).
    let mfa_token = challenge(&app, "pia").await;
    let code = code_at(&secret, app.clock_now()).expect("code");
    assert_eq!(
        verify(&app, &mfa_token, json!({"code": code}))
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::seconds(30));
    let code = code_at(&secret, app.clock_now()).expect("code");
    let res = verify(&app, &mfa_token, json!({"code": code})).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await["detail"],
        "Invalid or expired MFA challenge"
    );

    // The owner changes the password: a challenge obtained with the old one is dead.
    app.clock.advance(Duration::seconds(30));
    let stale = challenge(&app, "pia").await;
    let token = app.token_after_mfa("pia", PW, &secret).await;
    let res = post(
        &app,
        "/auth/password",
        &token,
        json!({"current_password": PW, "new_password": "a brand new password"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    app.clock.advance(Duration::seconds(30));
    let code = code_at(&secret, app.clock_now()).expect("code");
    let res = verify(&app, &stale, json!({"code": code})).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await["detail"],
        "Invalid or expired MFA challenge"
    );

    // "Log out everywhere" ends pending challenges too.
    let pending = {
        let res = app.login("pia", "a brand new password").await;
        json(res).await["mfa_token"]
            .as_str()
            .expect("mfa_token")
            .to_owned()
    };
    let token = app
        .token_after_mfa("pia", "a brand new password", &secret)
        .await;
    assert_eq!(
        post(&app, "/auth/logout-all", &token, json!({}))
            .await
            .status(),
        200
    );
    app.clock.advance(Duration::seconds(30));
    let code = code_at(&secret, app.clock_now()).expect("code");
    assert_eq!(
        verify(&app, &pending, json!({"code": code})).await.status(),
        401
    );
}

async fn disabling_needs_password_and_code_and_admins_can_reset(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("dan", PW, Role::User).await;
    app.create_user("adm", PW, Role::Admin).await;
    let (secret, codes) = enrolled(&app, "dan").await;
    let token = app.token_after_mfa("dan", PW, &secret).await;
    app.clock.advance(Duration::seconds(30));
    let code = code_at(&secret, app.clock_now()).expect("code");
    let res = post(
        &app,
        "/auth/mfa/disable",
        &token,
        json!({"password": "wrong", "code": code}),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post(
        &app,
        "/auth/mfa/disable",
        &token,
        json!({"password": PW, "code": code}),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert!(app.login("dan", PW).await.status() == 200);
    assert!(
        json(app.login("dan", PW).await).await["access_token"].is_string(),
        "one step again"
    );

    // Enrol again; an administrator resets it.
    let (secret, _) = enrolled(&app, "dan").await;
    let _ = challenge(&app, "dan").await;
    let admin = app.token("adm", PW).await;
    let dan = app.state_user("dan").await;
    let res = post(
        &app,
        &format!("/api/v1/admin/users/{}/reset-mfa", dan.id),
        &admin,
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert!(json(app.login("dan", PW).await).await["access_token"].is_string());
    assert_eq!(app.audit_rows("mfa.reset").await.len(), 1);
    // Nothing left to reset: refused, not a success that changed nothing.
    let res = post(
        &app,
        &format!("/api/v1/admin/users/{}/reset-mfa", dan.id),
        &admin,
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        json(res).await["detail"],
        "Two-step verification is not enabled for this user"
    );
    assert_eq!(
        app.audit_rows("mfa.reset").await.len(),
        1,
        "no audit row for a refusal"
    );

    // No secret, code or recovery code ever reaches the audit log.
    app.state.audit.flush().await;
    let rows = kyros::store::audit::recent(&app.state.db, None, 10_000)
        .await
        .expect("rows");
    let text = format!("{rows:?}");
    assert!(!text.contains(&secret));
    for c in &codes {
        assert!(!text.contains(c.as_str()));
    }
    assert!(!text.contains(PW));
}

async fn api_keys_cannot_touch_account_security(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("kim", PW, Role::User).await;
    let token = app.token("kim", PW).await;
    let res = post(
        &app,
        "/api/v1/api-keys",
        &token,
        json!({"name": "ci", "scopes": ["jobs:read"]}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let key = json(res).await["key"].as_str().expect("key").to_owned();
    for path in ["/auth/mfa/enroll", "/auth/logout-all", "/auth/logout"] {
        let res = app
            .client
            .post(app.url(path))
            .header("x-api-key", &key)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 403, "{path}");
    }
    assert_eq!(
        app.get_with_token("/auth/user", &token).await.status(),
        200,
        "the owner is still logged in"
    );
}

backend_tests!(
    wrong_codes_add_up_across_challenges,
    concurrent_codes_cannot_pass_the_threshold,
    a_challenge_ends_with_its_password_and_is_single_use,
    api_keys_cannot_touch_account_security,
    two_step_login_and_the_replay_guard,
    cookie_sessions_use_the_second_step_too,
    wrong_codes_lock_the_account_like_wrong_passwords,
    disabling_needs_password_and_code_and_admins_can_reset,
);

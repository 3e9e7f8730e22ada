//! Sign-in with an identity provider (issue 18), against a real OpenID Provider: the certified
//! `oidc-provider` package started from `tests/browser/oidc-op.mjs` on loopback (its own login
//! page, keys generated at start), driven by an HTTP client with a cookie jar as a browser would
//! be; GitHub's plain OAuth2 against a local stand-in of its endpoints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Duration;
use kyros::model::Role;
use serde_json::{Value, json};
use sha2::Digest;

use crate::common::{Backend, TestApp, in_ci, json};

const REDIRECT: &str = "http://127.0.0.1:9/console/login";
const CLIENT_ID: &str = "kyros-test";
const PW: &str = "correct horse battery staple";

/// The OpenID Provider process; killed when dropped.
struct Op {
    issuer: String,
    client_secret: String,
    child: Child,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The people of the provider: id (= login = sub), password, e-mail, verified, amr.
fn people() -> Value {
    json!([
        {"id": "alice", "password": "alice-pw", "email": "alice@corp.example", "email_verified": true, "username": "alice"},
        {"id": "bob", "password": "bob-pw", "email": "bob@corp.example", "email_verified": false, "username": "bob"},
        {"id": "carol", "password": "carol-pw", "email": "carol@other.example", "email_verified": true, "username": "carol"},
        {"id": "dave", "password": "dave-pw", "email": "dave@corp.example", "email_verified": true, "username": "dave", "amr": ["pwd", "otp", "mfa"]},
        {"id": "frank", "password": "frank-pw", "email": "frank@corp.example", "email_verified": true, "username": "frank", "amr": ["otp"]},
        {"id": "erin", "password": "erin-pw", "email": "erin@corp.example", "email_verified": true, "username": "erin"},
    ])
}

impl Op {
    /// `None` outside CI when node or the test provider's packages are missing.
    fn start() -> Option<Op> {
        let script = repo().join("tests/browser/oidc-op.mjs");
        let installed = repo().join("tests/browser/node_modules/oidc-provider");
        if !installed.exists() {
            if in_ci() {
                panic!("tests/browser/node_modules is missing: run npm ci in tests/browser");
            }
            eprintln!("SKIPPED: oidc-provider is not installed (npm ci in tests/browser)");
            return None;
        }
        let client_secret = crate::common::random_secret();
        let config = json!({
            "clients": [{"client_id": CLIENT_ID, "client_secret": client_secret, "redirect_uris": [REDIRECT]}],
            "users": people(),
        });
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_OP_CONFIG", config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("provider prints its issuer");
        // Keep reading what it prints (the package logs to stdout): a closed pipe would kill it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let issuer = serde_json::from_str::<Value>(&line).expect("issuer line")["issuer"]
            .as_str()
            .expect("issuer")
            .to_owned();
        Some(Op {
            issuer,
            client_secret,
            child,
        })
    }

    async fn set_mode(&self, mode: &str) {
        let res = reqwest::Client::new()
            .post(format!("{}/__test/mode", self.issuer))
            .json(&json!({"mode": mode}))
            .send()
            .await
            .expect("mode");
        assert_eq!(res.status(), 204);
    }
}

/// The service with provider `corp` (the OP) configured; `extra` adds variables.
async fn app_with(backend: Backend, op: &Op, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut b = TestApp::builder(backend)
        .var("OIDC_PROVIDERS", "corp")
        .var("OIDC_CORP_ISSUER", op.issuer.clone())
        .var("OIDC_CORP_CLIENT_ID", CLIENT_ID)
        .var("OIDC_CORP_CLIENT_SECRET", op.client_secret.clone())
        .var("OIDC_CORP_AUTO_CREATE", "true")
        .var("OAUTH2_REDIRECT_URIS", REDIRECT);
    for (k, v) in extra {
        b = b.var(k, *v);
    }
    b.start().await
}

/// The provider and the service configured for it (`app_with`); `None` when either cannot run
/// here (outside CI). Keep the provider bound for the whole test: dropping it stops it.
async fn setup(backend: Backend, extra: &[(&str, &str)]) -> Option<(Op, TestApp)> {
    let op = Op::start()?;
    let app = app_with(backend, &op, extra).await?;
    Some((op, app))
}

/// A browser: a cookie jar, no automatic redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET /auth/oauth2/corp` from `b`: (authorization_url, state).
async fn begin(app: &TestApp, b: &reqwest::Client, mode: &str) -> (String, String) {
    let res = b
        .get(app.url(&format!(
            "/auth/oauth2/corp?redirect_uri={}&mode={mode}",
            urlencode(REDIRECT)
        )))
        .send()
        .await
        .expect("begin");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = json(res).await;
    (
        body["authorization_url"].as_str().expect("url").to_owned(),
        body["state"].as_str().expect("state").to_owned(),
    )
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).expect("url");
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows the provider's pages from `authorization_url` as a browser, signs in as
/// `login`/`password` on its login page, and returns the `code` it redirects back with.
async fn sign_in_at_provider(
    b: &reqwest::Client,
    authorization_url: &str,
    login: &str,
    password: &str,
) -> String {
    let mut url = reqwest::Url::parse(authorization_url).expect("authorization url");
    for _ in 0..12 {
        let res = b.get(url.clone()).send().await.expect("provider page");
        let res = if res.status() == 200 {
            let page = res.text().await.expect("page");
            assert!(
                page.contains("op-login"),
                "the provider's login page: {page}"
            );
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("form action");
            b.post(url.join(action).expect("action url"))
                .form(&[("login", login), ("password", password)])
                .send()
                .await
                .expect("login post")
        } else {
            res
        };
        assert!(
            res.status().is_redirection(),
            "the provider redirects: {}",
            res.status()
        );
        let location = res.headers()["location"].to_str().expect("location");
        let next = url.join(location).expect("next url");
        if next.as_str().starts_with(REDIRECT) {
            assert!(
                query_param(next.as_str(), "error").is_none(),
                "the provider refused: {next}"
            );
            return query_param(next.as_str(), "code").expect("code");
        }
        url = next;
    }
    panic!("the provider never redirected back");
}

/// `POST /auth/oauth2/corp/callback?code=…&state=…` (the original service's form).
async fn callback(
    app: &TestApp,
    b: &reqwest::Client,
    code: &str,
    state: &str,
) -> reqwest::Response {
    b.post(app.url(&format!(
        "/auth/oauth2/corp/callback?code={}&state={}&redirect_uri={}",
        urlencode(code),
        urlencode(state),
        urlencode(REDIRECT)
    )))
    .send()
    .await
    .expect("callback")
}

/// A whole sign-in of `login` from a fresh browser; the callback's response.
async fn sign_in(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    let b = browser();
    let (url, state) = begin(app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, login, password).await;
    callback(app, &b, &code, &state).await
}

async fn user_count(app: &TestApp) -> usize {
    kyros::auth::accounts::list_users(&app.state)
        .await
        .expect("users")
        .len()
}

async fn a_new_person_signs_in_and_a_linked_one_signs_in_again(backend: Backend) {
    let Some((op, app)) = setup(backend, &[]).await else {
        return;
    };
    let b = browser();
    let (url, state) = begin(&app, &b, "bearer").await;
    // What goes to the provider: PKCE S256, a nonce, the state; the verifier stays here.
    assert!(url.starts_with(&format!("{}/auth?", op.issuer)), "{url}");
    assert_eq!(query_param(&url, "state").as_deref(), Some(state.as_str()));
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&url, "code_challenge").is_some_and(|c| c.len() >= 43));
    assert!(query_param(&url, "nonce").is_some_and(|n| n.len() >= 32));
    assert_eq!(query_param(&url, "redirect_uri").as_deref(), Some(REDIRECT));
    assert!(!state.contains(':'), "no verifier inside the state");

    let users_before = user_count(&app).await;
    let code = sign_in_at_provider(&b, &url, "alice", "alice-pw").await;
    let res = callback(&app, &b, &code, &state).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = json(res).await;
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0));
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["email"], "alice@corp.example");
    assert_eq!(body["user"]["role"], "user");
    let token = body["access_token"].as_str().expect("token");
    let me = json(app.get_with_token("/auth/user", token).await).await;
    assert_eq!(me["email"], "alice@corp.example");
    assert_eq!(user_count(&app).await, users_before + 1);
    // The account has no password: a password login is refused.
    assert_eq!(app.login("alice", "alice-pw").await.status(), 401);

    // The identity is listed on the account.
    let ids = json(app.get_with_token("/auth/identities", token).await).await;
    assert_eq!(ids["has_password"], false);
    assert_eq!(ids["identities"][0]["provider"], "corp");
    assert_eq!(ids["identities"][0]["subject"], "alice");
    assert_eq!(ids["identities"][0]["issuer"], op.issuer.as_str());

    // Again: the same account, no new one.
    let res = sign_in(&app, "alice", "alice-pw").await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["user"]["id"], body["user"]["id"]);
    assert_eq!(user_count(&app).await, users_before + 1);
    let rows = app.audit_rows("auth.oidc.login").await;
    assert_eq!(
        rows.iter().filter(|r| r.outcome == "success").count(),
        2,
        "{rows:?}"
    );
    assert_eq!(
        app.audit_rows("user.created").await[0].details.0["via_provider"],
        "corp"
    );
}

async fn a_state_is_single_use_fresh_and_bound_to_its_browser(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[]).await else {
        return;
    };
    // Replay: the second callback with the same code and state.
    let b = browser();
    let (url, state) = begin(&app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, "alice", "alice-pw").await;
    assert_eq!(callback(&app, &b, &code, &state).await.status(), 200);
    let res = callback(&app, &b, &code, &state).await;
    assert_eq!(res.status(), 400);
    assert_eq!(json(res).await["detail"], "Invalid or expired state");

    // Another browser brings back a state it did not start (login CSRF / a stolen link).
    let users = user_count(&app).await;
    let victim = browser();
    let (url, state) = begin(&app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, "erin", "erin-pw").await;
    let res = callback(&app, &victim, &code, &state).await;
    assert_eq!(res.status(), 400);
    assert_eq!(json(res).await["detail"], "Invalid or expired state");
    // The state was used up by the attempt: the right browser cannot finish it either.
    assert_eq!(callback(&app, &b, &code, &state).await.status(), 400);
    assert_eq!(user_count(&app).await, users, "nothing created");

    // Expired: more than 10 minutes between the start and the callback.
    let (url, state) = begin(&app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, "erin", "erin-pw").await;
    app.clock.advance(Duration::minutes(11));
    let res = callback(&app, &b, &code, &state).await;
    assert_eq!(res.status(), 400);
    assert_eq!(user_count(&app).await, users, "nothing created");

    // An unknown state.
    let res = callback(&app, &b, "some-code", "no-such-state").await;
    assert_eq!(res.status(), 400);
    let reasons = app.audit_reasons("auth.oidc.login").await;
    for reason in [
        "state from another browser",
        "expired state",
        "unknown or used state",
    ] {
        assert!(
            reasons.iter().any(|(r, _)| r == reason),
            "{reason} in {reasons:?}"
        );
    }
}

async fn a_redirect_uri_must_be_on_the_allow_list(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[]).await else {
        return;
    };
    let b = browser();
    for uri in [
        "https://evil.example/console/login",
        "http://127.0.0.1:9/console/login/",
        "http://127.0.0.1:9/console/login?x=1",
        "http://127.0.0.1:9/CONSOLE/login",
    ] {
        let res = b
            .get(app.url(&format!(
                "/auth/oauth2/corp?redirect_uri={}",
                urlencode(uri)
            )))
            .send()
            .await
            .expect("begin");
        assert_eq!(res.status(), 400, "{uri}");
        assert_eq!(json(res).await["detail"], "redirect_uri is not allowed");
    }
    // Missing: 422 as the original service answered.
    let res = b
        .get(app.url("/auth/oauth2/corp"))
        .send()
        .await
        .expect("begin");
    assert_eq!(res.status(), 422);
    // Unknown provider: the original service's 404.
    let res = b
        .get(app.url(&format!(
            "/auth/oauth2/nosuch?redirect_uri={}",
            urlencode(REDIRECT)
        )))
        .send()
        .await
        .expect("begin");
    assert_eq!(res.status(), 404);
    assert_eq!(
        json(res).await["detail"],
        "OAuth2 provider 'nosuch' not found or inactive"
    );
    // A callback whose `iss` (RFC 9207) names another issuer: a mix-up.
    let (url, state) = begin(&app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, "alice", "alice-pw").await;
    let res = b
        .post(app.url("/auth/oauth2/callback"))
        .json(&json!({"code": code, "state": state, "iss": "https://evil.example"}))
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status(), 400);
    // A callback naming another redirect_uri than its start.
    let (url, state) = begin(&app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, "alice", "alice-pw").await;
    let res = b
        .post(app.url(&format!(
            "/auth/oauth2/corp/callback?code={}&state={}&redirect_uri={}",
            urlencode(&code),
            urlencode(&state),
            urlencode("https://evil.example/")
        )))
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status(), 400);
}

async fn a_forged_or_altered_id_token_is_refused(backend: Backend) {
    let Some((op, app)) = setup(backend, &[]).await else {
        return;
    };
    let users = user_count(&app).await;
    for (mode, reason) in [
        ("wrong-nonce", "id_token nonce"),
        ("unknown-key", "id_token signed with an unknown key"),
        ("alg-none", "id_token"),
        ("hs256", "id_token algorithm not allowed"),
        ("wrong-iss", "id_token issuer"),
        ("wrong-aud", "id_token audience"),
        ("expired", "id_token expired"),
    ] {
        op.set_mode(mode).await;
        let res = sign_in(&app, "alice", "alice-pw").await;
        assert_eq!(res.status(), 400, "{mode}");
        let body = json(res).await;
        assert_eq!(
            body["detail"], "Sign-in with the identity provider failed",
            "{mode}"
        );
        let rows = app.audit_rows("auth.oidc.login").await;
        let got = rows[0].details.0["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(got.starts_with(reason), "{mode}: {got}");
    }
    assert_eq!(user_count(&app).await, users, "nothing created");
    // As issued, it works.
    op.set_mode("").await;
    assert_eq!(sign_in(&app, "alice", "alice-pw").await.status(), 200);
}

async fn unverified_emails_other_domains_and_unknown_people_get_no_account(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[("OIDC_CORP_ALLOWED_DOMAINS", "corp.example")]).await
    else {
        return;
    };
    let users = user_count(&app).await;
    let res = sign_in(&app, "bob", "bob-pw").await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        json(res).await["detail"],
        "The identity provider has not verified this e-mail address"
    );
    let res = sign_in(&app, "carol", "carol-pw").await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        json(res).await["detail"],
        "This e-mail domain may not sign in here"
    );
    assert_eq!(user_count(&app).await, users, "nothing created");

    // Without AUTO_CREATE an unknown identity gets nothing.
    let Some(op2) = Op::start() else { return };
    let Some(app2) = app_with(backend, &op2, &[("OIDC_CORP_AUTO_CREATE", "false")]).await else {
        return;
    };
    let users = user_count(&app2).await;
    let res = sign_in(&app2, "alice", "alice-pw").await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        json(res).await["detail"],
        "No account is linked to this identity"
    );
    assert_eq!(user_count(&app2).await, users);
}

async fn an_existing_account_is_never_attached_by_email_only_linked_when_signed_in(
    backend: Backend,
) {
    let Some((_op, app)) = setup(backend, &[]).await else {
        return;
    };
    // A password account with the provider's e-mail address of "erin".
    let owner = app.create_user("erin-local", PW, Role::User).await;
    sqlx_set_email(&app, owner.id, "erin@corp.example").await;
    let res = sign_in(&app, "erin", "erin-pw").await;
    assert_eq!(res.status(), 409);
    assert!(
        json(res).await["detail"]
            .as_str()
            .is_some_and(|d| d.contains("sign in to it and link"))
    );
    // Signed in, the owner links the identity, proving the password again.
    let token = app.token("erin-local", PW).await;
    let b = browser();
    let link = |body: Value| {
        b.post(app.url("/auth/oauth2/corp/link"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let res = link(json!({"redirect_uri": REDIRECT})).await.expect("link");
    assert_eq!(res.status(), 422, "the password is required");
    let res = link(json!({"redirect_uri": REDIRECT, "password": "not it"}))
        .await
        .expect("link");
    assert_eq!(res.status(), 403);
    assert!(
        app.audit_reasons("auth.oidc.link")
            .await
            .iter()
            .any(|(r, _)| r == "wrong current password")
    );
    let res = link(json!({"redirect_uri": REDIRECT, "password": PW}))
        .await
        .expect("link");
    assert_eq!(res.status(), 200);
    let start = json(res).await;
    // The provider is asked to authenticate again (no linking of another person's session).
    assert_eq!(
        query_param(start["authorization_url"].as_str().expect("url"), "prompt").as_deref(),
        Some("login")
    );
    let code = sign_in_at_provider(
        &b,
        start["authorization_url"].as_str().expect("url"),
        "erin",
        "erin-pw",
    )
    .await;
    // Only the account that began the link completes it: the same browser without the
    // account's credential is refused (and the state is used up).
    let res = callback(&app, &b, &code, start["state"].as_str().expect("state")).await;
    assert_eq!(res.status(), 400);
    let res = link(json!({"redirect_uri": REDIRECT, "password": PW}))
        .await
        .expect("link");
    let start = json(res).await;
    let code = sign_in_at_provider(
        &b,
        start["authorization_url"].as_str().expect("url"),
        "erin",
        "erin-pw",
    )
    .await;
    let res = b
        .post(app.url(&format!(
            "/auth/oauth2/corp/callback?code={}&state={}",
            urlencode(&code),
            urlencode(start["state"].as_str().expect("state"))
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status(), 200);
    let linked = json(res).await;
    assert_eq!(linked["linked"], true);
    assert_eq!(linked["identity"]["subject"], "erin");
    // Now the provider signs in to that account.
    let res = sign_in(&app, "erin", "erin-pw").await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["user"]["id"], owner.id.to_string());
    assert!(!app.audit_rows("auth.oidc.link").await.is_empty());

    // The identity cannot be linked to a second account.
    let other = app.create_user("someone", PW, Role::User).await;
    let admin = app.create_user("root", PW, Role::Admin).await;
    let admin_token = app.token(&admin.username, PW).await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/admin/users/{}/identities", other.id)))
        .bearer_auth(&admin_token)
        .json(&json!({"provider": "corp", "subject": "erin"}))
        .send()
        .await
        .expect("admin link");
    assert_eq!(res.status(), 409);

    // Unlink: a password account may drop its identity; then the provider no longer signs in.
    let ids = json(app.get_with_token("/auth/identities", &token).await).await;
    assert_eq!(ids["has_password"], true);
    let id = ids["identities"][0]["id"].as_str().expect("id").to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/auth/identities/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("unlink");
    assert_eq!(res.status(), 204);
    assert_eq!(sign_in(&app, "erin", "erin-pw").await.status(), 409);
}

async fn sqlx_set_email(app: &TestApp, id: uuid::Uuid, email: &str) {
    match &app.state.db {
        kyros::store::Db::Sqlite(s) => {
            sqlx::query("UPDATE users SET email = ?1 WHERE id = ?2")
                .bind(email)
                .bind(id)
                .execute(&s.pool)
                .await
                .expect("email");
        }
        kyros::store::Db::Postgres(pool) => {
            sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
                .bind(email)
                .bind(id)
                .execute(pool)
                .await
                .expect("email");
        }
    }
}

async fn the_last_identity_of_an_account_without_password_stays(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[]).await else {
        return;
    };
    let body = json(sign_in(&app, "alice", "alice-pw").await).await;
    let token = body["access_token"].as_str().expect("token");
    // Password guesses against an account without a password lock nothing: the provider still
    // signs its owner in.
    for _ in 0..12 {
        assert_eq!(app.login("alice", "guess").await.status(), 401);
    }
    assert_eq!(sign_in(&app, "alice", "alice-pw").await.status(), 200);
    let ids = json(app.get_with_token("/auth/identities", token).await).await;
    let id = ids["identities"][0]["id"].as_str().expect("id");
    let res = app
        .client
        .delete(app.url(&format!("/auth/identities/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("unlink");
    assert_eq!(res.status(), 409);
    assert_eq!(
        json(res).await["detail"],
        "This identity is the account's only way to sign in"
    );
    let res = app
        .client
        .delete(app.url(&format!("/auth/identities/{}", uuid::Uuid::new_v4())))
        .bearer_auth(token)
        .send()
        .await
        .expect("unlink");
    assert_eq!(res.status(), 404);

    // With two identities, two concurrent unlinks: one goes, the last one stays.
    let alice = app.state_user("alice").await;
    kyros::auth::oidc::admin_link(&app.state, None, &alice, &alice, "corp", "alice-second")
        .await
        .expect("second identity");
    let ids = json(app.get_with_token("/auth/identities", token).await).await;
    let ids: Vec<String> = ids["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let unlink = |id: &str| {
        app.client
            .delete(app.url(&format!("/auth/identities/{id}")))
            .bearer_auth(token)
            .send()
    };
    let (first, second) = tokio::join!(unlink(&ids[0]), unlink(&ids[1]));
    let mut statuses = [
        first.expect("unlink").status().as_u16(),
        second.expect("unlink").status().as_u16(),
    ];
    statuses.sort();
    assert_eq!(statuses, [204, 409]);
    let left = json(app.get_with_token("/auth/identities", token).await).await;
    assert_eq!(left["identities"].as_array().map(Vec::len), Some(1));
}

/// Enrols TOTP for the password account `username` through the API; its secret.
async fn enrol_totp(app: &TestApp, username: &str) -> String {
    let token = app.token(username, PW).await;
    let enrol = json(
        app.client
            .post(app.url("/auth/mfa/enroll"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .expect("enroll"),
    )
    .await;
    let secret = enrol["secret"].as_str().expect("secret").to_owned();
    let code = kyros::auth::mfa::code_at(&secret, app.clock_now()).expect("code");
    let res = app
        .client
        .post(app.url("/auth/mfa/confirm"))
        .bearer_auth(&token)
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(res.status(), 200, "TOTP enabled for {username}");
    secret
}

async fn disabled_and_locked_accounts_and_totp_still_apply(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[]).await else {
        return;
    };
    // A disabled account.
    let body = json(sign_in(&app, "alice", "alice-pw").await).await;
    let alice = app.state_user("alice").await;
    kyros::auth::accounts::set_active(&app.state, &alice, false, kyros::audit::Actor::Cli)
        .await
        .expect("disable");
    let res = sign_in(&app, "alice", "alice-pw").await;
    assert_eq!(res.status(), 403);
    assert_eq!(json(res).await["detail"], "This account cannot sign in");
    assert!(
        app.audit_reasons("auth.oidc.login")
            .await
            .iter()
            .any(|(r, _)| r == "inactive")
    );
    let _ = body;

    // A password account with TOTP, linked by an administrator: the provider's sign-in leads to
    // the second-factor step, which completes it.
    let dave = app.create_user("dave-local", PW, Role::User).await;
    let secret = enrol_totp(&app, "dave-local").await;
    let admin = app.create_user("root", PW, Role::Admin).await;
    let admin_token = app.token(&admin.username, PW).await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/admin/users/{}/identities", dave.id)))
        .bearer_auth(&admin_token)
        .json(&json!({"provider": "corp", "subject": "dave"}))
        .send()
        .await
        .expect("admin link");
    assert_eq!(res.status(), 201);
    let res = sign_in(&app, "dave", "dave-pw").await;
    assert_eq!(res.status(), 200);
    let challenge = json(res).await;
    assert_eq!(challenge["mfa_required"], true, "{challenge}");
    assert!(challenge.get("access_token").is_none());
    app.clock.advance(Duration::seconds(30));
    let code = kyros::auth::mfa::code_at(&secret, app.clock_now()).expect("code");
    let res = app
        .client
        .post(app.url("/auth/mfa/verify"))
        .json(&json!({"mfa_token": challenge["mfa_token"], "code": code}))
        .send()
        .await
        .expect("verify");
    assert_eq!(res.status(), 200);
    assert!(json(res).await["access_token"].is_string());

    // The same account locked by wrong passwords: the provider does not get around the lock.
    for _ in 0..10 {
        app.login("dave-local", "wrong password").await;
    }
    let res = sign_in(&app, "dave", "dave-pw").await;
    assert_eq!(res.status(), 403);
    assert!(
        app.audit_reasons("auth.oidc.login")
            .await
            .iter()
            .any(|(r, _)| r == "locked")
    );
}

async fn a_trusted_provider_mfa_assertion_replaces_the_totp_step(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[("OIDC_CORP_TRUST_MFA", "true")]).await else {
        return;
    };
    // dave's provider login says pwd + otp + mfa; frank's only otp (one factor); alice's pwd.
    for (login, amr_mfa) in [("dave", true), ("frank", false), ("alice", false)] {
        let local = format!("{login}-local");
        let user = app.create_user(&local, PW, Role::User).await;
        enrol_totp(&app, &local).await;
        kyros::auth::oidc::admin_link(&app.state, None, &user, &user, "corp", login)
            .await
            .expect("link");
        let body = json(sign_in(&app, login, &format!("{login}-pw")).await).await;
        assert_eq!(body["access_token"].is_string(), amr_mfa, "{login}: {body}");
        assert_eq!(body["mfa_required"] == true, !amr_mfa, "{login}: {body}");
    }
}

async fn a_provider_that_fails_gets_a_502_and_nothing_is_created(backend: Backend) {
    let Some((op, app)) = setup(backend, &[]).await else {
        return;
    };
    let users = user_count(&app).await;
    // The token endpoint answers an error page with internal text.
    op.set_mode("token-error").await;
    let res = sign_in(&app, "alice", "alice-pw").await;
    assert_eq!(res.status(), 502);
    let text = res.text().await.expect("body");
    assert!(
        text.contains("The identity provider could not be reached"),
        "{text}"
    );
    assert!(
        !text.contains("stack trace") && !text.contains("TokenEndpoint"),
        "{text}"
    );
    op.set_mode("").await;

    // The provider goes away between the start and the callback.
    let b = browser();
    let (url, state) = begin(&app, &b, "bearer").await;
    let code = sign_in_at_provider(&b, &url, "alice", "alice-pw").await;
    drop(op);
    let res = callback(&app, &b, &code, &state).await;
    assert_eq!(res.status(), 502);
    assert_eq!(
        json(res).await["detail"],
        "The identity provider could not be reached"
    );
    assert_eq!(user_count(&app).await, users, "nothing created");
}

async fn a_browser_sign_in_answers_a_session(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[]).await else {
        return;
    };
    let b = browser();
    let (url, state) = begin(&app, &b, "session").await;
    let code = sign_in_at_provider(&b, &url, "alice", "alice-pw").await;
    // JSON body this time, on the route that takes the provider from the state (the console's).
    let res = b
        .post(app.url("/auth/oauth2/callback"))
        .json(&json!({"code": code, "state": state}))
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status(), 200);
    let cookies = crate::common::set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.name() == "kyros_session" && c.http_only() == Some(true))
    );
    let body = json(res).await;
    assert!(body["csrf_token"].is_string());
    assert_eq!(body["user"]["username"], "alice");
    // The session works (the jar holds the cookie).
    let me = b.get(app.url("/auth/user")).send().await.expect("me");
    assert_eq!(me.status(), 200);
}

async fn providers_are_listed_for_the_console(backend: Backend) {
    let Some((_op, app)) = setup(backend, &[("OIDC_CORP_DISPLAY_NAME", "Corp SSO")]).await else {
        return;
    };
    let body = json(
        app.client
            .get(app.url("/auth/providers"))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(
        body,
        json!({"providers": [{"name": "corp", "display_name": "Corp SSO", "protocol": "oidc"}]})
    );
}

backend_tests!(
    a_new_person_signs_in_and_a_linked_one_signs_in_again,
    a_state_is_single_use_fresh_and_bound_to_its_browser,
    a_redirect_uri_must_be_on_the_allow_list,
    a_forged_or_altered_id_token_is_refused,
    unverified_emails_other_domains_and_unknown_people_get_no_account,
    an_existing_account_is_never_attached_by_email_only_linked_when_signed_in,
    the_last_identity_of_an_account_without_password_stays,
    disabled_and_locked_accounts_and_totp_still_apply,
    a_trusted_provider_mfa_assertion_replaces_the_totp_step,
    a_provider_that_fails_gets_a_502_and_nothing_is_created,
    a_browser_sign_in_answers_a_session,
    providers_are_listed_for_the_console,
    github_sign_in_uses_the_account_and_its_verified_primary_email,
);

// ----- GitHub (plain OAuth2 + its user API), against a local stand-in ----------------------------

#[derive(Default)]
struct GitHubStandIn {
    /// code → (code_challenge, redirect_uri)
    codes: std::sync::Mutex<std::collections::HashMap<String, String>>,
    client_secret: String,
    verified: bool,
}

#[derive(serde::Deserialize)]
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
}

async fn gh_authorize(
    State(gh): State<Arc<GitHubStandIn>>,
    Query(p): Query<AuthorizeParams>,
) -> impl IntoResponse {
    assert_eq!(p.client_id, "gh-client");
    assert_eq!(p.code_challenge_method, "S256");
    let code = uuid::Uuid::new_v4().simple().to_string();
    gh.codes
        .lock()
        .expect("lock")
        .insert(code.clone(), p.code_challenge);
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        p.redirect_uri,
        urlencode(&p.state)
    ))
}

async fn gh_token(
    State(gh): State<Arc<GitHubStandIn>>,
    headers: HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("gh-client:{}", gh.client_secret));
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {basic}"));
    let challenge = gh
        .codes
        .lock()
        .expect("lock")
        .remove(form.get("code").map(String::as_str).unwrap_or(""));
    let verifier_ok = challenge.is_some_and(|c| {
        let digest = sha2::Sha256::digest(form.get("code_verifier").cloned().unwrap_or_default());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) == c
    });
    if !authorized || !verifier_ok {
        return (
            StatusCode::OK,
            axum::Json(json!({"error": "bad_verification_code"})),
        );
    }
    (
        StatusCode::OK,
        axum::Json(
            json!({"access_token": "gho_standin", "token_type": "bearer", "scope": "read:user,user:email"}),
        ),
    )
}

async fn gh_user(headers: HeaderMap) -> impl IntoResponse {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer gho_standin") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        );
    }
    (
        StatusCode::OK,
        axum::Json(json!({"id": 4242, "login": "octocat"})),
    )
}

async fn gh_emails(State(gh): State<Arc<GitHubStandIn>>, headers: HeaderMap) -> impl IntoResponse {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer gho_standin") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        );
    }
    (
        StatusCode::OK,
        axum::Json(json!([
            {"email": "octo@elsewhere.example", "primary": false, "verified": true},
            {"email": "octocat@github.example", "primary": true, "verified": gh.verified},
        ])),
    )
}

// A stand-in of another service's API, not one of ours: plain axum routes.
#[allow(clippy::disallowed_methods)]
async fn github_stand_in(verified: bool) -> (String, Arc<GitHubStandIn>) {
    let gh = Arc::new(GitHubStandIn {
        client_secret: crate::common::random_secret(),
        verified,
        ..Default::default()
    });
    let router = axum::Router::new()
        .route("/login/oauth/authorize", get(gh_authorize))
        .route("/login/oauth/access_token", post(gh_token))
        .route("/api/user", get(gh_user))
        .route("/api/user/emails", get(gh_emails))
        .with_state(Arc::clone(&gh));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (base, gh)
}

async fn github_sign_in_uses_the_account_and_its_verified_primary_email(backend: Backend) {
    for verified in [true, false] {
        let (base, gh) = github_stand_in(verified).await;
        let Some(app) = TestApp::builder(backend)
            .var("GITHUB_CLIENT_ID", "gh-client")
            .var("GITHUB_CLIENT_SECRET", gh.client_secret.clone())
            .var("GITHUB_URL", base.clone())
            .var("GITHUB_API_URL", format!("{base}/api"))
            .var("OIDC_GITHUB_AUTO_CREATE", "true")
            .var("OAUTH2_REDIRECT_URIS", REDIRECT)
            .start()
            .await
        else {
            return;
        };
        let b = browser();
        let res = b
            .get(app.url(&format!(
                "/auth/oauth2/github?redirect_uri={}",
                urlencode(REDIRECT)
            )))
            .send()
            .await
            .expect("begin");
        assert_eq!(res.status(), 200);
        let start = json(res).await;
        let url = start["authorization_url"].as_str().expect("url");
        assert!(
            url.starts_with(&format!("{base}/login/oauth/authorize?")),
            "{url}"
        );
        let res = b.get(url).send().await.expect("authorize");
        let location = res.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let code = query_param(&location, "code").expect("code");
        let state = query_param(&location, "state").expect("state");
        assert_eq!(state, start["state"].as_str().expect("state"));
        let res = b
            .post(app.url(&format!(
                "/auth/oauth2/github/callback?code={code}&state={}",
                urlencode(&state)
            )))
            .send()
            .await
            .expect("callback");
        if verified {
            assert_eq!(res.status(), 200);
            let body = json(res).await;
            assert_eq!(body["user"]["username"], "octocat");
            assert_eq!(body["user"]["email"], "octocat@github.example");
            let ids = json(
                app.get_with_token(
                    "/auth/identities",
                    body["access_token"].as_str().expect("token"),
                )
                .await,
            )
            .await;
            assert_eq!(ids["identities"][0]["subject"], "4242");
            assert_eq!(ids["identities"][0]["issuer"], base.as_str());
        } else {
            assert_eq!(
                res.status(),
                403,
                "an unverified primary e-mail creates nothing"
            );
        }
    }
}

//! API keys of agents and services, over HTTP and the command line, on both backends: creation
//! (shown once), use in `X-API-Key` and as a bearer token, scopes limited by the owner's role,
//! refusals, their own rate-limit budget, legacy `API_KEYS`, and audit rows free of secrets.

use crate::common::{Backend, Cli, TestApp, json, random_secret, stderr, stdout};
use chrono::Duration;
use kyros::model::Role;
use reqwest::{Method, Response};
use serde_json::{Value, json};

const PW: &str = "api key test password";
const KEYS: &str = "/api/v1/api-keys";

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

/// `POST /api/v1/api-keys` with a bearer token.
async fn post_key(app: &TestApp, token: &str, body: Value) -> Response {
    app.client
        .post(app.url(KEYS))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// A new key of the token's user; returns (id, key).
async fn new_key(app: &TestApp, token: &str, scopes: &[&str]) -> (String, String) {
    let res = post_key(app, token, json!({"name": "agent", "scopes": scopes})).await;
    assert_eq!(res.status(), 201);
    let body = json(res).await;
    (
        body["id"].as_str().expect("id").to_owned(),
        body["key"].as_str().expect("key").to_owned(),
    )
}

async fn with_x_api_key(app: &TestApp, method: Method, path: &str, key: &str) -> Response {
    app.client
        .request(method, app.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request")
}

async fn with_bearer(app: &TestApp, method: Method, path: &str, key: &str) -> Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
}

async fn profile_status(app: &TestApp, key: &str) -> u16 {
    with_x_api_key(app, Method::GET, "/auth/user", key)
        .await
        .status()
        .as_u16()
}

async fn list_keys(app: &TestApp, token: &str, query: &str) -> Response {
    app.get_with_token(&format!("{KEYS}{query}"), token).await
}

/// The secret part of a `kyr_` key.
fn secret_of(key: &str) -> &str {
    &key[21..]
}

/// A key with one character of its secret changed (to another valid base64url character).
fn tampered(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let i = 30;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

/// No audit row, in any field, contains any of `secrets`.
async fn assert_no_secret_in_audit(app: &TestApp, secrets: &[String]) {
    app.state.audit.flush().await;
    let rows = kyros::store::audit::recent(&app.state.db, None, 100_000)
        .await
        .expect("audit rows");
    assert!(!rows.is_empty());
    for row in &rows {
        let text = format!("{row:?}");
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "audit row {} ({}) contains a secret",
                row.id,
                row.event
            );
        }
    }
}

async fn reasons(app: &TestApp) -> Vec<String> {
    app.audit_rows("apikey.rejected")
        .await
        .iter()
        .map(|r| {
            r.details.0["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn created_shown_once_listed_without_secret_and_usable(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let owner = app.create_user("agent-owner", PW, Role::User).await;
    let token = app.token("agent-owner", PW).await;

    let res = post_key(
        &app,
        &token,
        json!({"name": " ci runner ", "scopes": ["jobs:write", "jobs:read", "jobs:read"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let body = json(res).await;
    let key = body["key"].as_str().expect("key").to_owned();
    let lookup = body["lookup_id"].as_str().expect("lookup_id").to_owned();
    assert_eq!(key.len(), 64);
    assert!(key.starts_with(&format!("kyr_{lookup}_")), "{body}");
    assert!(
        lookup
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(lookup.len(), 16);
    assert_eq!(body["name"], "ci runner");
    assert_eq!(body["scopes"], json!(["jobs:read", "jobs:write"]));
    assert_eq!(body["owner_id"], json!(owner.id));
    let expected_expiry = app.clock_now() + Duration::days(30);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["expires_at"].clone()).expect("expires_at");
    assert!((expires - expected_expiry).num_seconds().abs() <= 1);
    let id = body["id"].as_str().expect("id").to_owned();

    // The listing describes the key but never shows it.
    let res = list_keys(&app, &token, "").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    assert!(!text.contains(&key) && !text.contains(secret_of(&key)));
    let listing: Value = serde_json::from_str(&text).expect("json");
    let items = listing["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["lookup_id"], lookup.as_str());
    assert_eq!(items[0]["status"], "active");
    assert_eq!(items[0]["last_used_at"], Value::Null);
    assert!(items[0].get("key").is_none() && items[0].get("secret_hash").is_none());

    // In X-API-Key and as a bearer token, the key is its owner.
    for res in [
        with_x_api_key(&app, Method::GET, "/auth/user", &key).await,
        with_bearer(&app, Method::GET, "/auth/user", &key).await,
    ] {
        assert_eq!(res.status(), 200);
        let profile = json(res).await;
        assert_eq!(profile["id"], json!(owner.id));
        assert_eq!(profile["username"], "agent-owner");
    }

    // The first use is audited once; last_used_at moves at most once a minute.
    let first = app.audit_rows("apikey.first_used").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].actor_id, Some(owner.id));
    assert_eq!(first[0].details.0["key_id"], id.as_str());
    let last_used = |listing: Value| listing["items"][0]["last_used_at"].clone();
    let used = last_used(json(list_keys(&app, &token, "").await).await);
    assert!(used.is_string());
    app.clock.advance(Duration::seconds(30));
    assert_eq!(profile_status(&app, &key).await, 200);
    assert_eq!(
        last_used(json(list_keys(&app, &token, "").await).await),
        used
    );
    app.clock.advance(Duration::seconds(31));
    assert_eq!(profile_status(&app, &key).await, 200);
    assert_ne!(
        last_used(json(list_keys(&app, &token, "").await).await),
        used
    );
    assert_eq!(app.audit_rows("apikey.first_used").await.len(), 1);

    let created = app.audit_rows("apikey.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor_id, Some(owner.id));
    assert_eq!(created[0].details.0["key_id"], id.as_str());
    assert_eq!(created[0].details.0["name"], "ci runner");
    assert_eq!(
        created[0].details.0["scopes"],
        json!(["jobs:read", "jobs:write"])
    );
    assert_no_secret_in_audit(&app, &[key.clone(), secret_of(&key).to_owned()]).await;
}

async fn invalid_requests_are_422_and_unauthenticated_401(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("validator", PW, Role::Admin).await;
    let token = app.token("validator", PW).await;
    let cases = [
        (
            json!({"name": "x", "scopes": ["jobs:read", "jobs:delete"]}),
            json!(["body", "scopes", 1]),
        ),
        (
            json!({"name": "x", "scopes": ["Admin"]}),
            json!(["body", "scopes", 0]),
        ),
        (
            json!({"name": "x", "scopes": []}),
            json!(["body", "scopes"]),
        ),
        (
            json!({"name": "x", "scopes": "jobs:read"}),
            json!(["body", "scopes"]),
        ),
        (json!({"name": "x"}), json!(["body", "scopes"])),
        (json!({"scopes": ["jobs:read"]}), json!(["body", "name"])),
        (
            json!({"name": "   ", "scopes": ["jobs:read"]}),
            json!(["body", "name"]),
        ),
        (
            json!({"name": "x".repeat(101), "scopes": ["jobs:read"]}),
            json!(["body", "name"]),
        ),
        (
            json!({"name": "tab\there", "scopes": ["jobs:read"]}),
            json!(["body", "name"]),
        ),
        (
            json!({"name": "x", "scopes": ["jobs:read"], "expires_in_days": 0}),
            json!(["body", "expires_in_days"]),
        ),
        (
            json!({"name": "x", "scopes": ["jobs:read"], "expires_in_days": 3651}),
            json!(["body", "expires_in_days"]),
        ),
        (
            json!({"name": "x", "scopes": ["jobs:read"], "expires_in_days": "7"}),
            json!(["body", "expires_in_days"]),
        ),
        (
            json!({"name": "x", "scopes": ["jobs:read"], "expires_in_days": 1.5}),
            json!(["body", "expires_in_days"]),
        ),
    ];
    for (body, loc) in cases {
        let res = post_key(&app, &token, body.clone()).await;
        assert_eq!(res.status(), 422, "{body}");
        let err = json(res).await;
        assert_eq!(err["error"]["code"], 422);
        let detail = err["detail"].as_array().expect("field errors");
        assert!(detail.iter().any(|d| d["loc"] == loc), "{body} -> {err}");
    }
    let res = post_key(
        &app,
        &token,
        json!({"name": "x", "scopes": ["jobs:read"], "expires_in_days": 3650}),
    )
    .await;
    assert_eq!(res.status(), 201);

    // Without credentials: 401 with the bearer challenge.
    for res in [
        app.client
            .post(app.url(KEYS))
            .json(&json!({"name": "x", "scopes": ["jobs:read"]}))
            .send()
            .await
            .expect("request"),
        app.client.get(app.url(KEYS)).send().await.expect("request"),
    ] {
        assert_eq!(res.status(), 401);
        assert_eq!(header(&res, "www-authenticate"), "Bearer");
    }
    let res = list_keys(&app, &token, "?owner_id=nope").await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        json(res).await["detail"][0]["loc"],
        json!(["query", "owner_id"])
    );
}

async fn scopes_and_the_owners_role_limit_a_key(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = app.create_user("key-admin", PW, Role::Admin).await;
    let target = app.create_user("locked-out", PW, Role::User).await;
    let token = app.token("key-admin", PW).await;
    let unlock = format!("/api/v1/admin/users/{}/unlock", target.id);

    let (jobs_key_id, jobs_key) = new_key(&app, &token, &["jobs:read", "jobs:write"]).await;
    let res = with_x_api_key(&app, Method::POST, &unlock, &jobs_key).await;
    assert_eq!(res.status(), 403);
    assert!(
        json(res).await["detail"]
            .as_str()
            .expect("message")
            .contains("admin scope")
    );

    let (_, admin_key) = new_key(&app, &token, &["admin"]).await;
    assert_eq!(
        with_x_api_key(&app, Method::POST, &unlock, &admin_key)
            .await
            .status(),
        204
    );
    assert_eq!(
        with_bearer(&app, Method::POST, &unlock, &admin_key)
            .await
            .status(),
        204
    );

    // Demoted, the owner's `admin` key is worth nothing more than the owner.
    kyros::auth::accounts::set_role(&app.state, &admin, Role::User, kyros::audit::Actor::System)
        .await
        .expect("demote");
    assert_eq!(
        with_x_api_key(&app, Method::POST, &unlock, &admin_key)
            .await
            .status(),
        403
    );
    assert_eq!(profile_status(&app, &admin_key).await, 200);
    // Both refusals are audited: the missing scope, then the missing role.
    let denied = app.audit_rows("rbac.denied").await;
    assert!(denied.iter().any(|r| r.actor_id == Some(admin.id)
        && r.details.0["required_scope"] == "admin"
        && r.details.0["api_key_id"] == jobs_key_id.as_str()));
    assert!(
        denied
            .iter()
            .any(|r| r.actor_id == Some(admin.id) && r.details.0["required"] == "admin")
    );
    kyros::auth::accounts::set_role(&app.state, &admin, Role::Admin, kyros::audit::Actor::System)
        .await
        .expect("promote");
    assert_eq!(
        with_x_api_key(&app, Method::POST, &unlock, &admin_key)
            .await
            .status(),
        204
    );
}

async fn refused_keys_get_401(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let owner = app.create_user("refused-owner", PW, Role::User).await;
    let token = app.token("refused-owner", PW).await;
    let mut secrets = Vec::new();

    // Unknown lookup id, tampered secret, malformed keys.
    let (_, key) = new_key(&app, &token, &["jobs:read"]).await;
    let unknown = format!("kyr_{}_{}", "0123456789abcdef", secret_of(&key));
    let bad = tampered(&key);
    for candidate in [&unknown, &bad] {
        let res = with_x_api_key(&app, Method::GET, "/auth/user", candidate).await;
        assert_eq!(res.status(), 401);
        assert_eq!(header(&res, "www-authenticate"), "Bearer");
        assert_eq!(json(res).await["detail"], "Could not validate credentials");
        assert_eq!(
            with_bearer(&app, Method::GET, "/auth/user", candidate)
                .await
                .status(),
            401
        );
    }
    let truncated = key[..63].to_owned();
    assert_eq!(profile_status(&app, &truncated).await, 401);
    assert_eq!(
        with_bearer(&app, Method::GET, "/auth/user", &truncated)
            .await
            .status(),
        401
    );
    assert_eq!(profile_status(&app, &"k".repeat(300)).await, 401);
    assert_eq!(profile_status(&app, &key).await, 200);
    secrets.extend([key.clone(), unknown, bad, truncated]);

    // A refused key does not fall back to the session cookie beside it.
    let session = app.session("refused-owner", PW).await;
    let res = app
        .with_session(Method::GET, "/auth/user", &session)
        .header("x-api-key", tampered(&key))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);

    // Revoked.
    let (revoked_id, revoked) = new_key(&app, &token, &["jobs:read"]).await;
    assert_eq!(profile_status(&app, &revoked).await, 200);
    let res = app
        .client
        .delete(app.url(&format!("{KEYS}/{revoked_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 204);
    assert_eq!(profile_status(&app, &revoked).await, 401);
    assert_eq!(
        with_bearer(&app, Method::GET, "/auth/user", &revoked)
            .await
            .status(),
        401
    );
    let res = app
        .client
        .delete(app.url(&format!("{KEYS}/{revoked_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("revoke again");
    assert_eq!(res.status(), 404);
    let listing = json(list_keys(&app, &token, "").await).await;
    let item = listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == revoked_id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(item["status"], "revoked");
    assert!(item["revoked_at"].is_string());
    let revoked_rows = app.audit_rows("apikey.revoked").await;
    assert_eq!(revoked_rows.len(), 1);
    assert_eq!(revoked_rows[0].details.0["key_id"], revoked_id.as_str());
    assert_eq!(revoked_rows[0].actor_id, Some(owner.id));
    secrets.push(revoked);

    // Expired, on the service clock.
    let res = post_key(
        &app,
        &token,
        json!({"name": "short-lived", "scopes": ["jobs:read"], "expires_in_days": 1}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let expiring = json(res).await["key"].as_str().expect("key").to_owned();
    app.clock.advance(Duration::days(1) - Duration::seconds(1));
    assert_eq!(profile_status(&app, &expiring).await, 200);
    app.clock.advance(Duration::seconds(2));
    assert_eq!(profile_status(&app, &expiring).await, 401);
    assert_eq!(profile_status(&app, &key).await, 200, "no expiry");
    secrets.push(expiring);

    // The owner disabled: every key of theirs is refused; enabled again, they work again.
    kyros::auth::accounts::set_active(&app.state, &owner, false, kyros::audit::Actor::System)
        .await
        .expect("disable");
    assert_eq!(profile_status(&app, &key).await, 401);
    kyros::auth::accounts::set_active(&app.state, &owner, true, kyros::audit::Actor::System)
        .await
        .expect("enable");
    assert_eq!(profile_status(&app, &key).await, 200);

    let seen = reasons(&app).await;
    for reason in [
        "unknown",
        "bad_secret",
        "malformed",
        "revoked",
        "expired",
        "owner_inactive",
    ] {
        assert!(seen.iter().any(|r| r == reason), "{reason} in {seen:?}");
    }
    let secret_parts: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() > 21)
        .map(|s| secret_of(s).to_owned())
        .collect();
    secrets.extend(secret_parts);
    assert_no_secret_in_audit(&app, &secrets).await;
}

async fn a_key_has_its_own_rate_limit_budget(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("RATE_LIMIT_REQUESTS", "5")
        .var("RATE_LIMIT_WINDOW", "60")
        .start()
        .await
    else {
        return;
    };
    app.create_user("budgeted", PW, Role::User).await;
    let token = app.token("budgeted", PW).await;
    let res = post_key(&app, &token, json!({"name": "n", "scopes": ["jobs:read"]})).await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "ratelimit-remaining"), "4", "owner's budget");
    let key = json(res).await["key"].as_str().expect("key").to_owned();

    for i in 0..5 {
        let res = with_x_api_key(&app, Method::GET, "/auth/user", &key).await;
        assert_eq!(res.status(), 200, "key request {i}");
        assert_eq!(header(&res, "ratelimit-limit"), "5");
        assert_eq!(header(&res, "ratelimit-remaining"), (4 - i).to_string());
    }
    let res = with_bearer(&app, Method::GET, "/auth/user", &key).await;
    assert_eq!(res.status(), 429, "the key's budget is spent");
    assert_eq!(header(&res, "ratelimit-remaining"), "0");

    // The owner's own budget is untouched by the key's requests.
    let res = app.get_with_token("/auth/user", &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "ratelimit-limit"), "5");
    assert_eq!(header(&res, "ratelimit-remaining"), "3");

    let limited = app.audit_rows("ratelimit.exceeded").await;
    assert!(limited.iter().any(|r| r.details.0["key_kind"] == "key"));
}

async fn keys_cannot_manage_keys_or_sessions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("manager", PW, Role::Admin).await;
    let token = app.token("manager", PW).await;
    let (id, key) = new_key(&app, &token, &["admin", "jobs:read"]).await;
    let create = app
        .client
        .post(app.url(KEYS))
        .header("x-api-key", &key)
        .json(&json!({"name": "child", "scopes": ["jobs:read"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(create.status(), 403);
    assert!(
        json(create).await["detail"]
            .as_str()
            .expect("message")
            .contains("not an API key")
    );
    assert_eq!(
        with_x_api_key(&app, Method::GET, KEYS, &key).await.status(),
        403
    );
    assert_eq!(
        with_bearer(&app, Method::DELETE, &format!("{KEYS}/{id}"), &key)
            .await
            .status(),
        403
    );
    assert_eq!(
        with_x_api_key(&app, Method::GET, "/auth/sessions", &key)
            .await
            .status(),
        403
    );
    // Still exactly one key, still usable.
    let listing = json(list_keys(&app, &token, "").await).await;
    assert_eq!(listing["items"].as_array().expect("items").len(), 1);
    assert_eq!(profile_status(&app, &key).await, 200);
}

async fn only_admins_grant_admin_and_see_others_keys(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.create_user("alice", PW, Role::User).await;
    app.create_user("mod", PW, Role::Moderator).await;
    app.create_user("boss", PW, Role::Admin).await;
    let alice_token = app.token("alice", PW).await;
    let mod_token = app.token("mod", PW).await;
    let boss_token = app.token("boss", PW).await;

    for token in [&alice_token, &mod_token] {
        let res = post_key(
            &app,
            token,
            json!({"name": "x", "scopes": ["jobs:read", "admin"]}),
        )
        .await;
        assert_eq!(res.status(), 403);
        assert!(
            json(res).await["detail"]
                .as_str()
                .expect("message")
                .contains("admin scope")
        );
    }
    let (alice_key_id, alice_key) = new_key(
        &app,
        &alice_token,
        &["jobs:read", "jobs:claim", "events:read"],
    )
    .await;
    let (boss_key_id, _) = new_key(&app, &boss_token, &["admin"]).await;

    // Others' keys are invisible to non-admins.
    let res = app
        .client
        .delete(app.url(&format!("{KEYS}/{boss_key_id}")))
        .bearer_auth(&alice_token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 404);
    assert_eq!(
        list_keys(&app, &alice_token, "?all=true").await.status(),
        403
    );
    let boss = app.state_user("boss").await;
    assert_eq!(
        list_keys(&app, &alice_token, &format!("?owner_id={}", boss.id))
            .await
            .status(),
        403
    );
    let own = json(list_keys(&app, &alice_token, &format!("?owner_id={}", alice.id)).await).await;
    assert_eq!(own["items"].as_array().expect("items").len(), 1);

    // Administrators see and revoke anyone's keys.
    let all = json(list_keys(&app, &boss_token, "?all=true").await).await;
    assert_eq!(all["items"].as_array().expect("items").len(), 2);
    let alices = json(list_keys(&app, &boss_token, &format!("?owner_id={}", alice.id)).await).await;
    assert_eq!(alices["items"][0]["id"], alice_key_id.as_str());
    assert_eq!(
        alices["items"][0]["scopes"],
        json!(["jobs:read", "jobs:claim", "events:read"])
    );
    let res = app
        .client
        .delete(app.url(&format!("{KEYS}/{alice_key_id}")))
        .bearer_auth(&boss_token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 204);
    assert_eq!(profile_status(&app, &alice_key).await, 401);
    let res = app
        .client
        .delete(app.url(&format!("{KEYS}/not-a-uuid")))
        .bearer_auth(&boss_token)
        .send()
        .await
        .expect("request");
    // The id is a UUID by contract: anything else is a validation error, not an unknown key.
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(body["detail"][0]["type"], "uuid_parsing", "{body}");
    assert_eq!(body["detail"][0]["loc"][0], "path", "{body}");
}

async fn a_session_creates_keys_with_its_csrf_token(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("browser", PW, Role::User).await;
    let session = app.session("browser", PW).await;
    let body = json!({"name": "from the browser", "scopes": ["events:read"]});
    let res = app
        .with_session(Method::POST, KEYS, &session)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403, "no CSRF token");
    let res = app
        .with_csrf(Method::POST, KEYS, &session)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 201);
    let key = json(res).await["key"].as_str().expect("key").to_owned();
    // The key itself needs no CSRF token: it is no ambient credential.
    let res = app
        .client
        .delete(app.url(&format!("{KEYS}/00000000-0000-0000-0000-000000000000")))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403, "refused as an API key, not for CSRF");
    assert!(
        json(res).await["detail"]
            .as_str()
            .expect("message")
            .contains("not an API key")
    );
}

async fn legacy_keys_are_imported_once_and_work(backend: Backend) {
    let legacy_a = format!("legacy-{}", random_secret());
    let legacy_b = format!("ci-{}", &random_secret()[..24]);
    let builder = |b: crate::common::AppBuilder| {
        b.var("FIRST_SUPERUSER", "root@example.org")
            .var("FIRST_SUPERUSER_PASSWORD", PW)
            .var("API_KEYS", format!("{legacy_a}, {legacy_b}"))
    };
    let Some(app) = builder(TestApp::builder(backend)).start().await else {
        return;
    };
    for res in [
        with_x_api_key(&app, Method::GET, "/auth/user", &legacy_a).await,
        with_bearer(&app, Method::GET, "/auth/user", &legacy_b).await,
    ] {
        assert_eq!(res.status(), 200);
        assert_eq!(json(res).await["username"], "root@example.org");
    }
    // Default scopes: jobs:read, jobs:write; not admin even though the owner is.
    let root = app.state_user("root@example.org").await;
    let unlock = format!("/api/v1/admin/users/{}/unlock", root.id);
    assert_eq!(
        with_x_api_key(&app, Method::POST, &unlock, &legacy_a)
            .await
            .status(),
        403
    );
    // A value that is no key: X-API-Key refuses it; as a bearer it is an invalid token.
    assert_eq!(profile_status(&app, "not-a-key").await, 401);
    assert_eq!(
        with_bearer(&app, Method::GET, "/auth/user", "not-a-key")
            .await
            .status(),
        401
    );
    assert!(
        app.audit_rows("auth.token_rejected").await.len() == 1,
        "judged as a token"
    );

    let token = app.token("root@example.org", PW).await;
    let listing = json(list_keys(&app, &token, "").await).await;
    let items = listing["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(item["scopes"], json!(["jobs:read", "jobs:write"]));
        assert!(item["name"].as_str().expect("name").starts_with("legacy-"));
        assert_eq!(item["owner_id"], json!(root.id));
    }
    assert_eq!(app.audit_rows("apikey.created").await.len(), 2);
    assert_no_secret_in_audit(&app, &[legacy_a.clone(), legacy_b.clone()]).await;

    // A restart imports nothing new and the keys keep working.
    let again = builder(TestApp::builder(backend))
        .var("SECRET_KEY", app.secret())
        .sharing_storage_with(&app);
    app.stop().await;
    let app = again.start().await.expect("restarted");
    assert_eq!(profile_status(&app, &legacy_a).await, 200);
    let token = app.token("root@example.org", PW).await;
    let relisted = json(list_keys(&app, &token, "").await).await;
    let mut ids: Vec<_> = relisted["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    let mut before: Vec<_> = items.iter().map(|i| i["id"].clone()).collect();
    ids.sort_by_key(|v| v.to_string());
    before.sort_by_key(|v| v.to_string());
    assert_eq!(ids, before);
    assert_eq!(app.audit_rows("apikey.created").await.len(), 2);
    assert_no_secret_in_audit(&app, &[legacy_a, legacy_b]).await;
}

async fn legacy_keys_with_an_owner_and_scopes_or_without_owner(backend: Backend) {
    let legacy = format!("svc-{}", random_secret());
    // No owner exists: nothing is imported, the service starts anyway.
    let Some(app) = TestApp::builder(backend)
        .var("API_KEYS", legacy.clone())
        .var("API_KEYS_OWNER", "svc-owner")
        .var("API_KEYS_SCOPES", "events:read,admin")
        .start()
        .await
    else {
        return;
    };
    assert_eq!(profile_status(&app, &legacy).await, 401);
    assert!(app.audit_rows("apikey.created").await.is_empty());

    // Once the owner exists, the next start imports the key with the configured scopes.
    let owner = app.create_user("svc-owner", PW, Role::Admin).await;
    let again = TestApp::builder(backend)
        .var("SECRET_KEY", app.secret())
        .var("API_KEYS", legacy.clone())
        .var("API_KEYS_OWNER", "svc-owner")
        .var("API_KEYS_SCOPES", "events:read,admin")
        .sharing_storage_with(&app);
    app.stop().await;
    let app = again.start().await.expect("restarted");
    let res = with_x_api_key(&app, Method::GET, "/auth/user", &legacy).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["id"], json!(owner.id));
    let unlock = format!("/api/v1/admin/users/{}/unlock", owner.id);
    assert_eq!(
        with_x_api_key(&app, Method::POST, &unlock, &legacy)
            .await
            .status(),
        204
    );
    assert_no_secret_in_audit(&app, &[legacy]).await;
}

async fn api_keys_from_the_command_line(backend: Backend) {
    let Some(cli) = Cli::new(backend).await else {
        return;
    };
    let out = cli.run(
        &[
            "user",
            "create",
            "--username",
            "robot-owner",
            "--email",
            "robot@example.org",
            "--password-stdin",
        ],
        Some("robot owner password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = cli.run(
        &[
            "apikey",
            "create",
            "--owner",
            "robot-owner",
            "--name",
            "nightly build",
            "--scopes",
            "jobs:read,events:read",
            "--expires-in-days",
            "90",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let key = printed.strip_suffix('\n').expect("one line").to_owned();
    assert_eq!(key.len(), 64, "only the key on stdout: {printed:?}");
    assert!(key.starts_with("kyr_") && !key.contains('\n'));
    assert!(!stderr(&out).contains(secret_of(&key)));

    // Refusals: exit code 1, a message on stderr, nothing on stdout.
    for args in [
        &[
            "apikey",
            "create",
            "--owner",
            "robot-owner",
            "--name",
            "x",
            "--scopes",
            "jobs:read,jobs:nope",
        ][..],
        &[
            "apikey",
            "create",
            "--owner",
            "ghost",
            "--name",
            "x",
            "--scopes",
            "jobs:read",
        ][..],
        &[
            "apikey",
            "create",
            "--owner",
            "robot-owner",
            "--name",
            "x",
            "--scopes",
            "admin",
        ][..],
        &[
            "apikey",
            "create",
            "--owner",
            "robot-owner",
            "--name",
            "x",
            "--scopes",
            "jobs:read",
            "--expires-in-days",
            "0",
        ][..],
        &["apikey", "revoke", "--id", "not-a-uuid"][..],
        &[
            "apikey",
            "revoke",
            "--id",
            "00000000-0000-0000-0000-000000000000",
        ][..],
        &["apikey", "list", "--owner", "ghost"][..],
    ] {
        let out = cli.run(args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
        assert!(stderr(&out).starts_with("kyros: "), "{args:?}");
    }

    let out = cli.run(&["apikey", "list", "--owner", "robot-owner"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(!listing.contains(secret_of(&key)));
    let lines: Vec<Vec<&str>> = listing.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert_eq!(
        lines[0],
        [
            "id",
            "lookup_id",
            "name",
            "owner",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked"
        ]
    );
    let row = &lines[1];
    assert_eq!(row[1], &key[4..20]);
    assert_eq!(row[2], "nightly build");
    assert_eq!(row[3], "robot-owner");
    assert_eq!(row[4], "jobs:read,events:read");
    assert_ne!(row[6], "-");
    assert_eq!(row[7], "-");
    assert_eq!(row[8], "false");
    let id = row[0].to_owned();

    let app = cli.app(backend).await;
    let res = with_x_api_key(&app, Method::GET, "/auth/user", &key).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["username"], "robot-owner");

    let out = cli.run(&["apikey", "revoke", "--id", &id], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"));
    // The CLI is another process: the service learns of the revocation as it learns of one made
    // on another instance (Redis pub/sub, or the half-second poll of the revocation table), and
    // refuses the key within a second (the bound of `auth::credential_cache`).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let status = profile_status(&app, &key).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key still works a second after the CLI revoked it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = cli.run(&["apikey", "revoke", "--id", &id], None);
    assert!(out.status.success(), "idempotent: {}", stderr(&out));
    assert!(stdout(&out).contains("already revoked"));

    let out = cli.run(&["apikey", "list"], None);
    assert!(out.status.success());
    let listing = stdout(&out);
    let row: Vec<&str> = listing.lines().nth(1).expect("row").split('\t').collect();
    assert_eq!(row[0], id);
    assert_ne!(row[7], "-", "last used by the request above");
    assert_eq!(row[8], "true");

    let created = app.audit_rows("apikey.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].details.0["via"], "cli");
    let revoked = app.audit_rows("apikey.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].details.0["key_id"], id.as_str());
    assert_eq!(app.audit_rows("apikey.first_used").await.len(), 1);
    assert_no_secret_in_audit(&app, &[key.clone(), secret_of(&key).to_owned()]).await;
}

#[test]
fn legacy_key_settings_are_validated() {
    use kyros::config::{Settings, Vars};
    let base = || {
        let mut vars = Vars::new();
        vars.set("SECRET_KEY", random_secret());
        vars.set("KYROS_DATA_DIR", "/nonexistent-kyros-test");
        vars
    };
    let settings = Settings::from_vars(&base()).expect("defaults");
    assert!(settings.api_keys.is_empty());
    assert_eq!(settings.api_keys_scopes.to_db(), "jobs:read,jobs:write");
    assert_eq!(settings.api_keys_owner, None);

    let mut vars = base();
    vars.set("API_KEYS", "ci-key,test-key");
    let settings = Settings::from_vars(&vars).expect("legacy keys");
    assert_eq!(settings.api_keys.len(), 2);
    assert!(!format!("{settings:?}").contains("ci-key"), "redacted");
    assert!(
        settings
            .warnings
            .iter()
            .any(|w| w.contains("API_KEYS entry 1"))
    );

    let mut vars = base();
    vars.set("API_KEYS_SCOPES", "jobs:read,jobs:everything");
    let e = Settings::from_vars(&vars).expect_err("unknown scope");
    assert!(e.0.starts_with("API_KEYS_SCOPES"), "{}", e.0);
    assert!(!e.0.contains("everything"));

    let mut vars = base();
    vars.set("API_KEYS", "good-legacy-key-value,kyr_not_a_real_key");
    let e = Settings::from_vars(&vars).expect_err("malformed kyr_ entry");
    assert!(e.0.contains("API_KEYS entry 2"), "{}", e.0);
    assert!(!e.0.contains("kyr_not_a_real_key"));
}

backend_tests!(
    created_shown_once_listed_without_secret_and_usable,
    invalid_requests_are_422_and_unauthenticated_401,
    scopes_and_the_owners_role_limit_a_key,
    refused_keys_get_401,
    a_key_has_its_own_rate_limit_budget,
    keys_cannot_manage_keys_or_sessions,
    only_admins_grant_admin_and_see_others_keys,
    a_session_creates_keys_with_its_csrf_token,
    legacy_keys_are_imported_once_and_work,
    legacy_keys_with_an_owner_and_scopes_or_without_owner,
    api_keys_from_the_command_line,
);

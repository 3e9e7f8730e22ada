//! Browser sessions: cookie login, logout, the session list, revocation, timeouts.

use crate::common::{Backend, TestApp, find_cookie, json, set_cookies};
use chrono::Duration;
use cookie::SameSite;
use kyros::model::Role;
use reqwest::Method;

const PW: &str = "session test password";

async fn app_with_users(backend: Backend) -> Option<TestApp> {
    let app = TestApp::spawn(backend).await?;
    app.create_user("sam", PW, Role::User).await;
    app.create_user("pat", PW, Role::User).await;
    app.create_user("root", PW, Role::Admin).await;
    Some(app)
}

async fn cookie_login_sets_hardened_cookies_and_authenticates(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let res = app.session_login_response("sam", PW).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let header_token = res.headers()["x-csrf-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let cookies = set_cookies(&res);
    let session = find_cookie(&cookies, "kyros_session").expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(SameSite::Strict));
    assert_eq!(session.path(), Some("/"));
    assert_eq!(
        session.secure(),
        None,
        "not Secure in local over plain HTTP"
    );
    assert_eq!(session.max_age(), Some(cookie::time::Duration::hours(12)));
    assert!(session.value().len() >= 43, "256-bit value");
    let csrf = find_cookie(&cookies, "csrf_token").expect("csrf cookie");
    assert_eq!(csrf.http_only(), None, "readable by scripts");
    assert_eq!(csrf.same_site(), Some(SameSite::Strict));
    let body = json(res).await;
    assert_eq!(body["csrf_token"], header_token);
    assert_eq!(csrf.value(), header_token);
    assert_eq!(body["user"]["username"], "sam");
    assert_eq!(body["idle_timeout_seconds"], 1800);

    let res = app
        .client
        .get(app.url("/auth/user"))
        .header("cookie", format!("kyros_session={}", session.value()))
        .send()
        .await
        .expect("profile");
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["username"], "sam");

    // The stored row holds a hash, never the cookie value.
    let rows = kyros::store::sessions::list(&app.state.db, None)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let audit = app.audit_rows("session.created").await;
    assert_eq!(audit.len(), 1);
    assert!(!format!("{:?}", audit[0]).contains(session.value()));
}

async fn wrong_password_gives_the_login_401_and_no_cookie(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let res = app.session_login_response("sam", "wrong").await;
    assert_eq!(res.status(), 401);
    assert!(set_cookies(&res).is_empty());
    let body = json(res).await;
    assert_eq!(body["detail"], "Incorrect username or password");
}

async fn logout_revokes_the_session_and_clears_cookies(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let s = app.session("sam", PW).await;
    let res = app
        .with_csrf(Method::DELETE, "/auth/session", &s)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 204);
    let cookies = set_cookies(&res);
    for name in ["kyros_session", "csrf_token"] {
        let c = find_cookie(&cookies, name).expect(name);
        assert_eq!(c.value(), "");
        assert_eq!(c.max_age(), Some(cookie::time::Duration::ZERO));
    }
    let res = app
        .with_session(Method::GET, "/auth/user", &s)
        .send()
        .await
        .expect("profile");
    assert_eq!(res.status(), 401);
}

async fn sessions_are_listed_and_revoked_by_their_owner(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let first = app.session("sam", PW).await;
    let second = app.session("sam", PW).await;
    let pats = app.session("pat", PW).await;

    let res = app
        .with_session(Method::GET, "/auth/sessions", &first)
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), 200);
    let list = json(res).await;
    let sessions = list["sessions"].as_array().expect("array");
    assert_eq!(sessions.len(), 2, "only sam's own sessions: {list}");
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], first.id);
    assert_eq!(current[0]["ip"], "127.0.0.1");

    // Someone else's session is not found for a user.
    let res = app
        .with_csrf(
            Method::DELETE,
            &format!("/auth/sessions/{}", pats.id),
            &first,
        )
        .send()
        .await
        .expect("revoke other");
    assert_eq!(res.status(), 404);
    assert_eq!(
        app.with_session(Method::GET, "/auth/user", &pats)
            .send()
            .await
            .expect("p")
            .status(),
        200
    );

    let res = app
        .with_csrf(
            Method::DELETE,
            &format!("/auth/sessions/{}", second.id),
            &first,
        )
        .send()
        .await
        .expect("revoke own");
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.with_session(Method::GET, "/auth/user", &second)
            .send()
            .await
            .expect("s")
            .status(),
        401
    );
    assert_eq!(
        app.with_session(Method::GET, "/auth/user", &first)
            .send()
            .await
            .expect("f")
            .status(),
        200
    );
    let res = app
        .with_csrf(
            Method::DELETE,
            &format!("/auth/sessions/{}", second.id),
            &first,
        )
        .send()
        .await
        .expect("again");
    assert_eq!(res.status(), 404, "already revoked");

    let res = app
        .with_session(
            Method::GET,
            &format!("/auth/sessions?user_id={}", users_id(&app, "pat").await),
            &first,
        )
        .send()
        .await
        .expect("list other");
    assert_eq!(res.status(), 403);
}

async fn users_id(app: &TestApp, name: &str) -> uuid::Uuid {
    kyros::auth::accounts::find_user(&app.state.db, name)
        .await
        .expect("q")
        .expect("user")
        .id
}

async fn admins_list_and_revoke_anyones_sessions(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let pats = app.session("pat", PW).await;
    app.session("sam", PW).await;
    let admin_token = app.token("root", PW).await;

    let res = app
        .client
        .get(app.url("/auth/sessions?all=true"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("all");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await["sessions"].as_array().expect("array").len(),
        2
    );
    let pat_id = users_id(&app, "pat").await;
    let res = app
        .client
        .get(app.url(&format!("/auth/sessions?user_id={pat_id}")))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("pat's");
    let list = json(res).await;
    assert_eq!(list["sessions"][0]["id"], pats.id);
    assert_eq!(list["sessions"][0]["current"], false);

    // A bearer request needs no CSRF token.
    let res = app
        .client
        .delete(app.url(&format!("/auth/sessions/{}", pats.id)))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("admin revoke");
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.with_session(Method::GET, "/auth/user", &pats)
            .send()
            .await
            .expect("p")
            .status(),
        401
    );
    let audit = app.audit_rows("session.revoked").await;
    assert_eq!(audit[0].actor.as_deref(), Some("root"));
    assert_eq!(audit[0].details.0["owner_id"], pat_id.to_string());

    let sam = app.session("sam", PW).await;
    let res = app
        .with_session(Method::GET, "/auth/sessions?all=true", &sam)
        .send()
        .await
        .expect("not admin");
    assert_eq!(res.status(), 403);
}

async fn idle_and_absolute_timeouts_follow_the_clock(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let s = app.session("sam", PW).await;
    let status = |s: crate::common::Session| {
        let app = &app;
        async move {
            app.with_session(Method::GET, "/auth/user", &s)
                .send()
                .await
                .expect("req")
                .status()
                .as_u16()
        }
    };
    // Activity keeps it alive past the idle timeout…
    for _ in 0..3 {
        app.clock.advance(Duration::minutes(20));
        assert_eq!(status(s.clone()).await, 200);
    }
    // …idleness ends it.
    app.clock.advance(Duration::minutes(31));
    assert_eq!(status(s.clone()).await, 401);

    let s = app.session("sam", PW).await;
    for _ in 0..35 {
        app.clock.advance(Duration::minutes(20));
        assert_eq!(status(s.clone()).await, 200, "still inside 12 hours");
    }
    app.clock.advance(Duration::minutes(20));
    assert_eq!(
        status(s.clone()).await,
        401,
        "12 hours is the absolute limit"
    );
}

async fn login_rotates_the_session_and_disabling_ends_it(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let old = app.session("sam", PW).await;
    let res = app
        .client
        .post(app.url("/auth/session"))
        .header("cookie", old.cookie_header())
        .json(&serde_json::json!({"username": "sam", "password": PW}))
        .send()
        .await
        .expect("relogin");
    assert_eq!(res.status(), 200);
    let new_token = find_cookie(&set_cookies(&res), "kyros_session")
        .expect("cookie")
        .value()
        .to_owned();
    assert_ne!(new_token, old.token);
    assert_eq!(
        app.with_session(Method::GET, "/auth/user", &old)
            .send()
            .await
            .expect("old")
            .status(),
        401
    );

    let sam = app.state_user("sam").await;
    kyros::auth::accounts::set_active(&app.state, &sam, false, kyros::audit::Actor::System)
        .await
        .expect("disable");
    let res = app
        .client
        .get(app.url("/auth/user"))
        .header("cookie", format!("kyros_session={new_token}"))
        .send()
        .await
        .expect("disabled");
    assert_eq!(res.status(), 401);
}

/// A session accepted a moment ago (its row is then kept for a second, `auth::credential_cache`)
/// ends at once when its user is logged out everywhere — a password or role change does that —
/// and the other credentials of the user with it.
async fn a_session_in_use_ends_at_once_when_its_user_is_logged_out_everywhere(backend: Backend) {
    let Some(app) = app_with_users(backend).await else {
        return;
    };
    let s = app.session("sam", PW).await;
    for _ in 0..3 {
        let res = app
            .with_session(Method::GET, "/auth/user", &s)
            .send()
            .await
            .expect("in use");
        assert_eq!(res.status(), 200);
    }
    let sam = app.state_user("sam").await;
    kyros::auth::accounts::revoke_everything(&app.state, &sam)
        .await
        .expect("log out everywhere");
    let res = app
        .with_session(Method::GET, "/auth/user", &s)
        .send()
        .await
        .expect("after");
    assert_eq!(res.status(), 401);
}

async fn production_cookies_are_secure(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .start()
        .await
    else {
        return;
    };
    app.create_user("sam", PW, Role::User).await;
    let res = app
        .client
        .post(app.url("/auth/session"))
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({"username": "sam", "password": PW}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200);
    let cookies = set_cookies(&res);
    assert_eq!(
        find_cookie(&cookies, "kyros_session").expect("s").secure(),
        Some(true)
    );
    assert_eq!(
        find_cookie(&cookies, "csrf_token").expect("c").secure(),
        Some(true)
    );
}

backend_tests!(
    cookie_login_sets_hardened_cookies_and_authenticates,
    wrong_password_gives_the_login_401_and_no_cookie,
    logout_revokes_the_session_and_clears_cookies,
    sessions_are_listed_and_revoked_by_their_owner,
    admins_list_and_revoke_anyones_sessions,
    idle_and_absolute_timeouts_follow_the_clock,
    login_rotates_the_session_and_disabling_ends_it,
    a_session_in_use_ends_at_once_when_its_user_is_logged_out_everywhere,
    production_cookies_are_secure,
);

//! CSRF: cookie-authenticated state-changing requests need the signed double-submit token.

use crate::common::{Backend, Session, TestApp, find_cookie, json, set_cookies};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use kyros::clock::Clock;
use kyros::model::Role;
use reqwest::{Method, RequestBuilder};

const PW: &str = "csrf test password";

/// A second session of the same user is the state-changing target: revoking it is a real write.
async fn setup(backend: Backend, env: &str) -> Option<(TestApp, Session, Session)> {
    let app = TestApp::builder(backend)
        .var("ENVIRONMENT", env)
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .var("KYROS_SESSION_IDLE_MINUTES", "240")
        .start()
        .await?;
    app.create_user("cara", PW, Role::User).await;
    let login = |app: &TestApp| {
        app.client
            .post(app.url("/auth/session"))
            .header("x-forwarded-proto", "https")
            .json(&serde_json::json!({"username": "cara", "password": PW}))
    };
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let res = login(&app).send().await.expect("login");
        assert_eq!(res.status(), 200);
        let cookies = set_cookies(&res);
        let body = json(res).await;
        sessions.push(Session {
            id: body["session_id"].as_str().expect("id").to_owned(),
            token: find_cookie(&cookies, "kyros_session")
                .expect("cookie")
                .value()
                .to_owned(),
            csrf: body["csrf_token"].as_str().expect("token").to_owned(),
        });
    }
    let second = sessions.pop().expect("second");
    let first = sessions.pop().expect("first");
    Some((app, first, second))
}

fn revoke(app: &TestApp, _actor: &Session, target: &Session) -> RequestBuilder {
    app.client
        .delete(app.url(&format!("/auth/sessions/{}", target.id)))
        .header("x-forwarded-proto", "https")
}

async fn expect_403(req: RequestBuilder, case: &str) {
    let res = req.send().await.expect(case);
    assert_eq!(res.status(), 403, "{case}");
    assert_eq!(json(res).await["detail"], "Invalid CSRF token", "{case}");
}

async fn forged_or_missing_tokens_are_refused_in_every_environment(backend: Backend) {
    for env in ["local", "production"] {
        let Some((app, me, other)) = setup(backend, env).await else {
            return;
        };
        let cookies = |csrf: &str| format!("kyros_session={}; csrf_token={csrf}", me.token);

        expect_403(
            revoke(&app, &me, &other).header("cookie", format!("kyros_session={}", me.token)),
            "no header, no cookie",
        )
        .await;
        expect_403(
            revoke(&app, &me, &other).header("cookie", cookies(&me.csrf)),
            "cookie only",
        )
        .await;
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", format!("kyros_session={}", me.token))
                .header("x-csrf-token", &me.csrf),
            "header without cookie",
        )
        .await;
        let fresh = app
            .state
            .live()
            .csrf
            .issue(me.id.parse().expect("uuid"), app.clock.now());
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", cookies(&me.csrf))
                .header("x-csrf-token", &fresh),
            "header and cookie differ",
        )
        .await;
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", cookies(&other.csrf))
                .header("x-csrf-token", &other.csrf),
            "token of another session",
        )
        .await;
        let mut raw = URL_SAFE_NO_PAD.decode(&me.csrf).expect("b64");
        raw[3] ^= 0x40;
        let tampered = URL_SAFE_NO_PAD.encode(&raw);
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", cookies(&tampered))
                .header("x-csrf-token", &tampered),
            "tampered token",
        )
        .await;
        let future = app.state.live().csrf.issue(
            me.id.parse().expect("uuid"),
            app.clock.now() + Duration::hours(1),
        );
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", cookies(&future))
                .header("x-csrf-token", &future),
            "future-dated token",
        )
        .await;
        let garbage = "a|b|c|d";
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", cookies(garbage))
                .header("x-csrf-token", garbage),
            "old-format garbage",
        )
        .await;

        // Nothing above changed anything: the target session still works.
        let res = app
            .client
            .get(app.url("/auth/user"))
            .header("x-forwarded-proto", "https")
            .header("cookie", other.cookie_header())
            .send()
            .await
            .expect("other alive");
        assert_eq!(res.status(), 200, "{env}");

        let rows = app.audit_rows("csrf.rejected").await;
        assert_eq!(rows.len(), 8, "{env}: one audit row per refusal");
        assert!(
            rows.iter()
                .all(|r| r.actor.as_deref() == Some("cara") && r.outcome == "denied")
        );
        for row in &rows {
            let text = format!("{row:?}");
            assert!(
                !text.contains(&me.token) && !text.contains(&me.csrf),
                "no secrets in audit rows"
            );
        }

        // The genuine double submit works.
        let res = revoke(&app, &me, &other)
            .header("cookie", cookies(&me.csrf))
            .header("x-csrf-token", &me.csrf)
            .send()
            .await
            .expect("valid");
        assert_eq!(res.status(), 204, "{env}");
    }
}

async fn an_expired_token_is_refused_and_a_fresh_one_is_handed_out(backend: Backend) {
    let Some((app, me, other)) = setup(backend, "local").await else {
        return;
    };
    app.clock.advance(Duration::seconds(3601));
    let res = revoke(&app, &me, &other)
        .header("cookie", me.cookie_header())
        .header("x-csrf-token", &me.csrf)
        .send()
        .await
        .expect("expired");
    assert_eq!(res.status(), 403);

    // Any request of the session renews the stale token cookie, and GET /auth/csrf hands one out.
    let res = app
        .with_session(Method::GET, "/auth/user", &me)
        .send()
        .await
        .expect("renew");
    assert_eq!(res.status(), 200);
    let renewed = find_cookie(&set_cookies(&res), "csrf_token").expect("renewed cookie");
    assert_eq!(res.headers()["x-csrf-token"], renewed.value());
    let res = app
        .with_session(Method::GET, "/auth/csrf", &me)
        .send()
        .await
        .expect("csrf");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let token = json(res).await["csrf_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let res = revoke(&app, &me, &other)
        .header(
            "cookie",
            format!("kyros_session={}; csrf_token={token}", me.token),
        )
        .header("x-csrf-token", &token)
        .send()
        .await
        .expect("fresh");
    assert_eq!(res.status(), 204);
}

async fn cross_site_requests_are_refused_even_with_a_token(backend: Backend) {
    let Some((app, me, other)) = setup(backend, "production").await else {
        return;
    };
    for (site, origin) in [
        ("cross-site", "https://evil.example"),
        ("same-site", "https://other.localhost"),
    ] {
        expect_403(
            revoke(&app, &me, &other)
                .header("cookie", me.cookie_header())
                .header("x-csrf-token", &me.csrf)
                .header("sec-fetch-site", site)
                .header("origin", origin),
            site,
        )
        .await;
    }
    expect_403(
        revoke(&app, &me, &other)
            .header("cookie", me.cookie_header())
            .header("x-csrf-token", &me.csrf)
            .header("origin", "https://evil.example"),
        "foreign Origin without fetch metadata",
    )
    .await;
    // Login CSRF: a foreign page cannot log the browser into an account.
    expect_403(
        app.client
            .post(app.url("/auth/session"))
            .header("x-forwarded-proto", "https")
            .header("sec-fetch-site", "cross-site")
            .json(&serde_json::json!({"username": "cara", "password": PW})),
        "login from a foreign page",
    )
    .await;
    // The configured frontend origin is allowed.
    let res = revoke(&app, &me, &other)
        .header("cookie", me.cookie_header())
        .header("x-csrf-token", &me.csrf)
        .header("sec-fetch-site", "same-site")
        .header("origin", "http://localhost:3001")
        .send()
        .await
        .expect("allowed origin");
    assert_eq!(res.status(), 204);
}

async fn bearer_requests_and_unknown_routes_are_not_csrf_checked(backend: Backend) {
    let Some((app, me, other)) = setup(backend, "production").await else {
        return;
    };
    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({"username": "cara", "password": PW}))
        .send()
        .await
        .expect("login");
    let token = json(res).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    // The browser's cookie is present too, but the request is authenticated by the bearer token.
    let res = revoke(&app, &me, &other)
        .bearer_auth(&token)
        .header("cookie", format!("kyros_session={}", me.token))
        .send()
        .await
        .expect("bearer");
    assert_eq!(res.status(), 204);
    let res = app
        .client
        .post(app.url("/no/such/route"))
        .header("x-forwarded-proto", "https")
        .header("cookie", me.cookie_header())
        .send()
        .await
        .expect("unknown");
    assert_eq!(res.status(), 404, "unknown routes are 404, not 403");
}

backend_tests!(
    forged_or_missing_tokens_are_refused_in_every_environment,
    an_expired_token_is_refused_and_a_fresh_one_is_handed_out,
    cross_site_requests_are_refused_even_with_a_token,
    bearer_requests_and_unknown_routes_are_not_csrf_checked,
);

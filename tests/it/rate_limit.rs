//! Rate limiting as clients see it, on the in-memory store (SQLite backend) and on Redis
//! (PostgreSQL backend). Time is moved on the service clock, never slept.

use crate::common::{Backend, TestApp, json};
use chrono::Duration;
use kyros::model::Role;
use reqwest::{Method, Response};

const PW: &str = "rate limit password";

async fn limited_app(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut b = TestApp::builder(backend)
        .var("RATE_LIMIT_REQUESTS", "5")
        .var("RATE_LIMIT_WINDOW", "60");
    for (k, v) in extra {
        b = b.var(k, *v);
    }
    b.start().await
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

async fn get(app: &TestApp, xff: Option<&str>) -> Response {
    let mut req = app.client.get(app.url("/"));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("request")
}

async fn budget_then_429_with_headers_then_refill(backend: Backend) {
    let Some(app) = limited_app(backend, &[]).await else {
        return;
    };
    for i in 0..5 {
        let res = get(&app, None).await;
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(header(&res, "ratelimit-limit"), "5");
        assert_eq!(header(&res, "ratelimit-remaining"), (4 - i).to_string());
        assert_eq!(header(&res, "x-ratelimit-limit"), "5");
        assert_eq!(header(&res, "x-ratelimit-remaining"), (4 - i).to_string());
        assert_eq!(
            header(&res, "ratelimit-reset"),
            ((i + 1) * 12).to_string(),
            "seconds until full"
        );
        assert!(res.headers().get("retry-after").is_none());
    }
    let res = get(&app, None).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "12");
    assert_eq!(header(&res, "ratelimit-remaining"), "0");
    assert_eq!(header(&res, "x-ratelimit-reset"), "60");
    assert_eq!(
        header(&res, "x-content-type-options"),
        "nosniff",
        "security headers on a 429"
    );
    let body = json(res).await;
    assert_eq!(body["detail"], "Rate limit exceeded");
    assert_eq!(body["error"]["code"], 429);

    // One request comes back every 12 s; the whole budget after the window.
    app.clock.advance(Duration::seconds(11));
    assert_eq!(get(&app, None).await.status(), 429);
    app.clock.advance(Duration::seconds(1));
    assert_eq!(get(&app, None).await.status(), 200);
    assert_eq!(get(&app, None).await.status(), 429);
    app.clock.advance(Duration::seconds(60));
    for _ in 0..5 {
        assert_eq!(get(&app, None).await.status(), 200);
    }
    assert_eq!(get(&app, None).await.status(), 429);
    let rows = app.audit_rows("ratelimit.exceeded").await;
    assert_eq!(rows.len(), 4, "every 429 is audited");
    assert_eq!(rows[0].details.0["key_kind"], "ip");
}

async fn a_burst_adds_capacity(backend: Backend) {
    let Some(app) = limited_app(backend, &[("RATE_LIMIT_BURST", "3")]).await else {
        return;
    };
    for i in 0..8 {
        let res = get(&app, None).await;
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(header(&res, "ratelimit-limit"), "8");
    }
    assert_eq!(get(&app, None).await.status(), 429);
}

async fn users_and_addresses_have_their_own_budgets(backend: Backend) {
    let Some(app) = limited_app(
        backend,
        &[
            ("KYROS_ANON_RATE_LIMIT_REQUESTS", "2"),
            ("KYROS_ANON_RATE_LIMIT_WINDOW", "60"),
        ],
    )
    .await
    else {
        return;
    };
    app.create_user("ann", PW, Role::User).await;
    app.create_user("ben", PW, Role::User).await;
    let ann = app
        .state
        .live()
        .tokens
        .issue(&app.state_user("ann").await, app.clock_now())
        .expect("t")
        .token;
    let ben = app
        .state
        .live()
        .tokens
        .issue(&app.state_user("ben").await, app.clock_now())
        .expect("t")
        .token;
    // Anonymous addresses have the separately configured budget of 2.
    assert_eq!(header(&get(&app, None).await, "ratelimit-limit"), "2");
    assert_eq!(get(&app, None).await.status(), 200);
    assert_eq!(get(&app, None).await.status(), 429);
    // Each user has the general budget of 5, from the same address.
    for token in [&ann, &ben] {
        for _ in 0..5 {
            let res = app.get_with_token("/auth/user", token).await;
            assert_eq!(res.status(), 200);
            assert_eq!(header(&res, "ratelimit-limit"), "5");
        }
        assert_eq!(app.get_with_token("/auth/user", token).await.status(), 429);
    }
}

async fn spoofed_forwarded_for_cannot_reset_a_budget(backend: Backend) {
    let Some(app) = limited_app(backend, &[]).await else {
        return;
    };
    for _ in 0..5 {
        assert_eq!(get(&app, None).await.status(), 200);
    }
    for i in 0..5 {
        let fake = format!("198.51.100.{i}");
        assert_eq!(
            get(&app, Some(&fake)).await.status(),
            429,
            "an untrusted peer's X-Forwarded-For is ignored"
        );
    }
}

async fn a_trusted_proxys_forwarded_address_is_the_key(backend: Backend) {
    let Some(app) = limited_app(backend, &[("TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    for _ in 0..5 {
        assert_eq!(get(&app, Some("203.0.113.1")).await.status(), 200);
    }
    assert_eq!(get(&app, Some("203.0.113.1")).await.status(), 429);
    assert_eq!(
        get(&app, Some("203.0.113.2")).await.status(),
        200,
        "another client behind the proxy"
    );
    // IPv6 clients are grouped by /64.
    for i in 0..5 {
        assert_eq!(
            get(&app, Some(&format!("2001:db8:1:2::{i}")))
                .await
                .status(),
            200
        );
    }
    assert_eq!(get(&app, Some("2001:db8:1:2::ff")).await.status(), 429);
}

async fn get_with(app: &TestApp, headers: &[(&str, String)]) -> Response {
    let mut req = app.client.get(app.url("/"));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    req.send().await.expect("request")
}

/// The proxy appends `X-Forwarded-For`; a client-written `Forwarded` (or, behind a proxy that
/// writes `Forwarded`, a client-written `X-Forwarded-For`) must not give it a fresh budget.
async fn a_client_cannot_add_the_other_forwarding_header(backend: Backend) {
    let Some(app) = limited_app(
        backend,
        &[
            ("KYROS_ANON_RATE_LIMIT_REQUESTS", "3"),
            ("KYROS_ANON_RATE_LIMIT_WINDOW", "60"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await
    else {
        return;
    };
    let proxy = ("x-forwarded-for", "203.0.113.7".to_owned());
    for _ in 0..3 {
        assert_eq!(
            get_with(&app, std::slice::from_ref(&proxy)).await.status(),
            200
        );
    }
    for i in 0..5 {
        let spoof = ("forwarded", format!("for=198.51.100.{i}"));
        assert_eq!(
            get_with(&app, &[spoof, proxy.clone()]).await.status(),
            429,
            "a client-written Forwarded header is not read"
        );
    }

    let Some(app) = limited_app(
        backend,
        &[
            ("KYROS_ANON_RATE_LIMIT_REQUESTS", "3"),
            ("KYROS_ANON_RATE_LIMIT_WINDOW", "60"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("TRUSTED_PROXY_HEADERS", "forwarded"),
        ],
    )
    .await
    else {
        return;
    };
    let proxy = ("forwarded", "for=203.0.113.7;proto=http".to_owned());
    for _ in 0..3 {
        assert_eq!(
            get_with(&app, std::slice::from_ref(&proxy)).await.status(),
            200
        );
    }
    for i in 0..5 {
        let spoof = ("x-forwarded-for", format!("198.51.100.{i}"));
        assert_eq!(
            get_with(&app, &[spoof, proxy.clone()]).await.status(),
            429,
            "behind a Forwarded proxy, X-Forwarded-For is not read"
        );
    }
    assert_eq!(
        get_with(&app, &[("forwarded", "for=203.0.113.8".to_owned())])
            .await
            .status(),
        200,
        "another client behind the proxy"
    );
}

/// The scheme is taken from the configured family only: a client's `Forwarded: proto=https`
/// in front of the proxy's `X-Forwarded-Proto: http` does not pass HTTPS enforcement.
async fn a_client_cannot_claim_https_with_the_other_header(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .start()
        .await
    else {
        return;
    };
    let res = app
        .client
        .get(app.url("/api/v1/security/health"))
        .header("forwarded", "for=203.0.113.7;proto=https")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    assert_eq!(json(res).await["detail"], "HTTPS required");
    let res = app
        .client
        .get(app.url("/api/v1/security/health"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

async fn preflights_are_not_counted(backend: Backend) {
    let Some(app) = limited_app(backend, &[]).await else {
        return;
    };
    for _ in 0..20 {
        let res = app
            .client
            .request(Method::OPTIONS, app.url("/auth/login"))
            .header("origin", "http://localhost:3001")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .expect("preflight");
        assert!(res.status().is_success());
    }
    assert_eq!(header(&get(&app, None).await, "ratelimit-remaining"), "4");
}

async fn login_endpoints_have_a_stricter_budget_by_address_and_by_account(backend: Backend) {
    let Some(app) = limited_app(
        backend,
        &[
            ("RATE_LIMIT_REQUESTS", "1000"),
            ("AUTH_RATE_LIMIT_REQUESTS", "3"),
            ("AUTH_RATE_LIMIT_WINDOW", "60"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await
    else {
        return;
    };
    app.create_user("lou", PW, Role::User).await;
    let login = |ip: &str, user: &str| {
        app.client
            .post(app.url("/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&serde_json::json!({"username": user, "password": PW}))
            .send()
    };
    // By address: three logins of different accounts, then 429 — even for a correct password.
    for user in ["x1", "x2", "lou"] {
        login("192.0.2.1", user).await.expect("login");
    }
    let res = login("192.0.2.1", "lou").await.expect("limited");
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "ratelimit-limit"), "3");
    assert_eq!(header(&res, "retry-after"), "20");
    // By account: the same name from many addresses.
    for i in 0..2 {
        assert_eq!(
            login(&format!("192.0.2.{}", 10 + i), "lou")
                .await
                .expect("ok")
                .status(),
            200
        );
    }
    let res = login("192.0.2.20", "LOU").await.expect("account limited");
    assert_eq!(
        res.status(),
        429,
        "account names are counted case-insensitively"
    );
    // Other endpoints are not affected by the stricter budget.
    assert_eq!(get(&app, Some("192.0.2.1")).await.status(), 200);
}

async fn repeated_failures_shrink_the_budget_for_a_cooling_period(backend: Backend) {
    let Some(app) = limited_app(
        backend,
        &[
            ("RATE_LIMIT_REQUESTS", "40"),
            ("KYROS_PENALTY_STRIKES", "3"),
            ("KYROS_PENALTY_WINDOW", "600"),
            ("KYROS_PENALTY_COOLING", "900"),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(header(&get(&app, None).await, "ratelimit-remaining"), "39");
    // Four 401s: three fit the strike budget, the fourth starts the penalty.
    for _ in 0..4 {
        let res = app
            .client
            .get(app.url("/auth/user"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .expect("401");
        assert_eq!(res.status(), 401);
    }
    // Penalized, a request costs four units: the budget, told in requests at that cost, is a
    // quarter (40 units, 5 spent: 31 left after this request = 7 requests of four).
    let res = get(&app, None).await;
    assert_eq!(header(&res, "ratelimit-limit"), "10", "a quarter of 40");
    assert_eq!(header(&res, "ratelimit-remaining"), "7");
    let res = get(&app, None).await;
    assert_eq!(header(&res, "ratelimit-remaining"), "6");
    let rows = app.audit_rows("ratelimit.penalized").await;
    assert_eq!(rows.len(), 1);
    // After the cooling period requests cost one again.
    app.clock.advance(Duration::seconds(901));
    assert_eq!(header(&get(&app, None).await, "ratelimit-limit"), "40");
    let a: i64 = header(&get(&app, None).await, "ratelimit-remaining")
        .parse()
        .expect("n");
    let b: i64 = header(&get(&app, None).await, "ratelimit-remaining")
        .parse()
        .expect("n");
    assert_eq!(a - b, 1);
}

/// A client that waits `Retry-After` seconds and sends nothing meanwhile is served, also when
/// the refusal itself starts the adaptive penalty (requests then cost four).
async fn retry_after_is_true_under_the_penalty(backend: Backend) {
    let Some(app) = limited_app(
        backend,
        &[
            ("RATE_LIMIT_REQUESTS", "1000"),
            ("AUTH_RATE_LIMIT_REQUESTS", "10"),
            ("AUTH_RATE_LIMIT_WINDOW", "30"),
            ("KYROS_PENALTY_STRIKES", "10"),
        ],
    )
    .await
    else {
        return;
    };
    app.create_user("ria", PW, Role::User).await;
    let login = |password: &str| {
        app.client
            .post(app.url("/auth/login"))
            .json(&serde_json::json!({"username": "ria", "password": password}))
            .send()
    };
    // Ten wrong logins (of names that do not exist, so no account locks) from one address.
    for i in 0..10 {
        let res = app
            .client
            .post(app.url("/auth/login"))
            .json(&serde_json::json!({"username": format!("nobody-{i}"), "password": "wrong"}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), 401);
    }
    let res = login(PW).await.expect("limited");
    assert_eq!(res.status(), 429);
    let wait: i64 = header(&res, "retry-after").parse().expect("seconds");
    // 10 strikes allowed, the 11th (this 429) penalizes: the next request costs 4 units of 3 s.
    assert_eq!(wait, 12);
    assert_eq!(
        header(&res, "ratelimit-limit"),
        "2",
        "a quarter of 10, rounded down"
    );
    assert_eq!(app.audit_rows("ratelimit.penalized").await.len(), 1);
    // One second short is still too early; the told time is enough.
    app.clock.advance(Duration::seconds(wait - 1));
    let res = login(PW).await.expect("early");
    assert_eq!(res.status(), 429);
    let wait: i64 = header(&res, "retry-after").parse().expect("seconds");
    assert_eq!(wait, 1, "the rest of the time, at the penalized cost");
    app.clock.advance(Duration::seconds(wait));
    let res = login(PW).await.expect("served");
    assert_eq!(res.status(), 200, "waiting Retry-After is enough");
    assert_eq!(header(&res, "ratelimit-limit"), "2");
}

async fn console_sessions_have_their_own_budget_and_assets_are_free(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("RATE_LIMIT_REQUESTS", "100")
        .var("RATE_LIMIT_WINDOW", "900")
        .without("PRODUCTION_RATE_LIMIT_REQUESTS")
        .var("KYROS_ANON_RATE_LIMIT_REQUESTS", "2")
        .var("KYROS_ANON_RATE_LIMIT_WINDOW", "60")
        .start()
        .await
    else {
        return;
    };
    app.create_user("cleo", PW, Role::User).await;
    let session = app.session("cleo", PW).await;
    let token = app.token("cleo", PW).await;
    // The defaults: 1 200 per 5 minutes (4 a second) for the browser, 100 per 15 min for tokens.
    let res = app
        .with_session(Method::GET, "/auth/user", &session)
        .send()
        .await
        .expect("session");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "ratelimit-limit"), "1200");
    let res = app.get_with_token("/auth/user", &token).await;
    assert_eq!(header(&res, "ratelimit-limit"), "100");

    // An hour of clicking, on the service clock: a page view every 4 seconds, each a burst of
    // twelve calls (3 a second on average, under the 4 a second the budget refills): never
    // refused, and the budget left stays near full.
    let mut lowest = u64::MAX;
    for _ in 0..900 {
        app.clock.advance(Duration::seconds(4));
        for _ in 0..12 {
            let res = app
                .with_session(Method::GET, "/auth/user", &session)
                .send()
                .await
                .expect("session");
            assert_eq!(res.status(), 200);
            lowest = lowest.min(header(&res, "ratelimit-remaining").parse().expect("number"));
        }
    }
    assert!(
        lowest >= 1180,
        "ordinary use does not eat the budget: {lowest} left at worst"
    );
    // The bearer token of the same user has its own, smaller budget.
    let mut refused = false;
    for _ in 0..101 {
        refused |= app.get_with_token("/auth/user", &token).await.status() == 429;
    }
    assert!(refused, "a token's budget is the general one");

    // A script flooding with the browser's cookie is still stopped.
    let mut served = 0;
    loop {
        let res = app
            .with_session(Method::GET, "/auth/user", &session)
            .send()
            .await
            .expect("session");
        if res.status() == 429 {
            assert!(!header(&res, "retry-after").is_empty());
            break;
        }
        served += 1;
        assert!(served <= 1200, "a flood must meet the limiter");
    }
    assert!(served >= 1180, "{served}");

    // Immutable assets are not counted, even for an anonymous address with a budget of 2.
    let page = app
        .client
        .get(app.url("/console/"))
        .send()
        .await
        .expect("console")
        .text()
        .await
        .expect("html");
    let asset = page
        .split('"')
        .find(|s| s.starts_with("/console/assets/") && s.ends_with(".js"))
        .expect("a script asset")
        .to_owned();
    for _ in 0..20 {
        let res = app.client.get(app.url(&asset)).send().await.expect("asset");
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("ratelimit-limit").is_none());
    }
}

backend_tests!(
    console_sessions_have_their_own_budget_and_assets_are_free,
    retry_after_is_true_under_the_penalty,
    budget_then_429_with_headers_then_refill,
    a_burst_adds_capacity,
    users_and_addresses_have_their_own_budgets,
    spoofed_forwarded_for_cannot_reset_a_budget,
    a_trusted_proxys_forwarded_address_is_the_key,
    a_client_cannot_add_the_other_forwarding_header,
    a_client_cannot_claim_https_with_the_other_header,
    preflights_are_not_counted,
    login_endpoints_have_a_stricter_budget_by_address_and_by_account,
    repeated_failures_shrink_the_budget_for_a_cooling_period,
);

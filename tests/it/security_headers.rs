//! Security headers, HTTPS enforcement, TLS termination and CORS, per environment.

use crate::common::{Backend, TestApp, json};
use kyros::model::Role;
use reqwest::Method;

const PW: &str = "headers test password";

const LOCAL_CSP: &str = "default-src 'self'; img-src 'self' data: https:; font-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; object-src 'none'; report-uri /api/v1/security/csp-report; report-to csp-endpoint";
const STRICT_CSP: &str = "default-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; script-src 'self'; style-src 'self'; object-src 'none'; upgrade-insecure-requests; report-uri /api/v1/security/csp-report; report-to csp-endpoint";

fn assert_security_headers(res: &reqwest::Response, env: &str, case: &str) {
    let h = res.headers();
    let get = |name: &str| h.get(name).map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(
        get("x-content-type-options").as_deref(),
        Some("nosniff"),
        "{env} {case}"
    );
    assert_eq!(
        get("x-frame-options").as_deref(),
        Some("DENY"),
        "{env} {case}"
    );
    assert_eq!(
        get("x-xss-protection").as_deref(),
        Some("1; mode=block"),
        "{env} {case}"
    );
    assert_eq!(
        get("referrer-policy").as_deref(),
        Some("strict-origin-when-cross-origin"),
        "{env} {case}"
    );
    assert_eq!(
        get("permissions-policy").as_deref(),
        Some(
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
        ),
        "{env} {case}"
    );
    assert_eq!(
        get("cross-origin-opener-policy").as_deref(),
        Some("same-origin"),
        "{env} {case}"
    );
    assert_eq!(
        get("cross-origin-resource-policy").as_deref(),
        Some("same-origin"),
        "{env} {case}"
    );
    assert_eq!(
        get("reporting-endpoints").as_deref(),
        Some("csp-endpoint=\"/api/v1/security/csp-report\""),
        "{env} {case}"
    );
    let (csp, hsts) = if env == "local" {
        (LOCAL_CSP, None)
    } else {
        (STRICT_CSP, Some("max-age=31536000; includeSubDomains"))
    };
    assert_eq!(
        get("content-security-policy").as_deref(),
        Some(csp),
        "{env} {case}"
    );
    assert_eq!(
        get("strict-transport-security").as_deref(),
        hsts,
        "{env} {case}"
    );
    assert!(
        get("server").is_none() && get("x-powered-by").is_none(),
        "{env} {case}: no disclosure"
    );
    assert!(get("x-request-id").is_some(), "{env} {case}");
}

async fn every_response_carries_the_headers_in_every_environment(backend: Backend) {
    for env in ["local", "staging", "production"] {
        let Some(app) = TestApp::builder(backend)
            .var("ENVIRONMENT", env)
            .var("TRUSTED_PROXIES", "127.0.0.1")
            .start()
            .await
        else {
            return;
        };
        app.create_user("hal", PW, Role::User).await;
        let https = |m: Method, p: &str| {
            app.client
                .request(m, app.url(p))
                .header("x-forwarded-proto", "https")
        };

        let res = https(Method::GET, "/health").send().await.expect("200");
        assert_eq!(res.status(), 200);
        assert_security_headers(&res, env, "200");
        let res = https(Method::GET, "/missing").send().await.expect("404");
        assert_eq!(res.status(), 404);
        assert_security_headers(&res, env, "404");
        let res = https(Method::GET, "/auth/user").send().await.expect("401");
        assert_eq!(res.status(), 401);
        assert_security_headers(&res, env, "401");
        let res = https(Method::POST, "/auth/login")
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("422");
        assert_eq!(res.status(), 422);
        assert_security_headers(&res, env, "422");
        // A preflight is answered by the CORS layer, before any route: the headers still apply.
        let res = https(Method::OPTIONS, "/api/v1/jobs")
            .header("origin", "https://console.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .expect("preflight");
        assert!(res.status().is_success(), "preflight: {}", res.status());
        assert_security_headers(&res, env, "CORS preflight");

        let login = https(Method::POST, "/auth/session")
            .json(&serde_json::json!({"username": "hal", "password": PW}))
            .send()
            .await
            .expect("session");
        assert_eq!(login.headers()["cache-control"], "no-store");
        assert_security_headers(&login, env, "login");
        let cookie =
            crate::common::find_cookie(&crate::common::set_cookies(&login), "kyros_session")
                .expect("cookie");
        let res = https(Method::DELETE, "/auth/session")
            .header("cookie", format!("kyros_session={}", cookie.value()))
            .send()
            .await
            .expect("403");
        assert_eq!(res.status(), 403);
        assert_security_headers(&res, env, "403 from the CSRF layer");

        if env != "local" {
            let res = app
                .client
                .get(app.url("/health"))
                .send()
                .await
                .expect("400");
            assert_eq!(res.status(), 400);
            assert_security_headers(&res, env, "400 from the HTTPS layer");
        }

        app.state.db.close().await;
        let res = https(Method::GET, "/healthz").send().await.expect("500");
        assert_eq!(res.status(), 500);
        assert_security_headers(&res, env, "500");
    }
}

async fn plain_http_is_refused_unless_a_trusted_proxy_says_https(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .start()
        .await
    else {
        return;
    };
    let res = app
        .client
        .get(app.url("/health?probe=1"))
        .send()
        .await
        .expect("plain");
    assert_eq!(res.status(), 400);
    let body = json(res).await;
    assert_eq!(body["detail"], "HTTPS required");
    assert_eq!(body["error"]["path"], "/health");
    // The peer (127.0.0.1) is not a trusted proxy: its X-Forwarded-Proto is ignored.
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-forwarded-proto", "https")
        .header("forwarded", "proto=https")
        .send()
        .await
        .expect("spoofed");
    assert_eq!(res.status(), 400);
    let rows = app.audit_rows("https.rejected").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].client_ip.as_deref(), Some("127.0.0.1"));

    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .var("TRUSTED_PROXIES", "127.0.0.0/8")
        .start()
        .await
    else {
        return;
    };
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("trusted");
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .expect("http");
    assert_eq!(res.status(), 400);
}

async fn redirects_and_exempt_paths_are_configurable(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "staging")
        .var("KYROS_HTTPS_REDIRECT", "true")
        .var("KYROS_HTTPS_EXEMPT_PATHS", "/health")
        .start()
        .await
    else {
        return;
    };
    let res = app
        .client
        .get(app.url("/healthz?x=1"))
        .header("host", "api.example")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "https://api.example/healthz?x=1");
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let res = app
        .client
        .post(app.url("/auth/login"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400, "a POST is refused, not redirected");
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("probe");
    assert_eq!(res.status(), 200, "the load-balancer probe is exempt");
    let res = app
        .client
        .get(app.url("/health/"))
        .send()
        .await
        .expect("not exempt");
    assert_ne!(res.status(), 200, "exemptions are exact paths");
}

async fn the_service_terminates_tls_itself(backend: Backend) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .tls(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .start()
        .await
    else {
        return;
    };
    assert!(app.base.starts_with("https://"));
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("https");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    app.create_user("tls", PW, Role::User).await;
    let res = app
        .client
        .post(app.url("/auth/session"))
        .json(&serde_json::json!({"username": "tls", "password": PW}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200);
    let cookie = crate::common::find_cookie(&crate::common::set_cookies(&res), "kyros_session")
        .expect("cookie");
    assert_eq!(cookie.secure(), Some(true));
}

async fn cors_allows_the_frontend_and_nobody_else(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("BACKEND_CORS_ORIGINS", "https://console.example")
        .start()
        .await
    else {
        return;
    };
    let preflight = |origin: &str, method: &str| {
        app.client
            .request(
                Method::OPTIONS,
                app.url("/auth/sessions/00000000-0000-0000-0000-000000000000"),
            )
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "x-csrf-token, content-type",
            )
    };
    for origin in ["http://localhost:3001", "https://console.example"] {
        let res = preflight(origin, "PATCH").send().await.expect("preflight");
        assert!(res.status().is_success(), "{origin}");
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(
            h["access-control-allow-methods"],
            "GET,POST,PUT,PATCH,DELETE"
        );
        let allowed = h["access-control-allow-headers"].to_str().expect("ascii");
        assert!(
            allowed.contains("x-csrf-token") && allowed.contains("content-type"),
            "{allowed}"
        );
        assert_eq!(h["access-control-max-age"], "600");
        assert!(h["vary"].to_str().expect("ascii").contains("origin"));
    }
    let res = preflight("https://evil.example", "DELETE")
        .send()
        .await
        .expect("foreign");
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "a foreign origin is never echoed"
    );

    let res = app
        .client
        .get(app.url("/auth/user"))
        .header("origin", "https://console.example")
        .send()
        .await
        .expect("401");
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://console.example",
        "CORS on a rejection"
    );
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    for name in [
        "x-csrf-token",
        "x-request-id",
        "etag",
        "ratelimit-remaining",
        "retry-after",
    ] {
        assert!(exposed.contains(name), "{name} exposed: {exposed}");
    }

    app.create_user("cors", PW, Role::User).await;
    let s = app.session("cors", PW).await;
    let res = app
        .with_session(Method::DELETE, "/auth/session", &s)
        .header("origin", "https://console.example")
        .send()
        .await
        .expect("403");
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://console.example",
        "CORS on a 403"
    );
}

backend_tests!(
    every_response_carries_the_headers_in_every_environment,
    plain_http_is_refused_unless_a_trusted_proxy_says_https,
    redirects_and_exempt_paths_are_configurable,
    the_service_terminates_tls_itself,
    cors_allows_the_frontend_and_nobody_else,
);

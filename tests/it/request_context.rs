//! Client address resolution, request ids, request limits and the CSP report endpoint.

use std::net::SocketAddr;

use crate::common::{Backend, TestApp, json};
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use kyros::model::Role;
use serde_json::json;
use tower::ServiceExt;

async fn failed_login_ip(app: &TestApp, xff: &str) -> Option<String> {
    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", xff)
        .json(&json!({"username": "nobody", "password": "whatever1"}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 401);
    app.audit_rows("auth.login")
        .await
        .first()
        .and_then(|r| r.client_ip.clone())
}

async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    assert_eq!(
        failed_login_ip(&app, "203.0.113.9").await.as_deref(),
        Some("127.0.0.1")
    );
    let Some(app) = TestApp::builder(backend)
        .var("TRUSTED_PROXIES", "127.0.0.1/32")
        .start()
        .await
    else {
        return;
    };
    assert_eq!(
        failed_login_ip(&app, "203.0.113.9").await.as_deref(),
        Some("203.0.113.9")
    );
    // A client-prepended value in front of what our proxy appended changes nothing.
    assert_eq!(
        failed_login_ip(&app, "6.6.6.6, 203.0.113.10")
            .await
            .as_deref(),
        Some("203.0.113.10")
    );

    // The resolved address is what a session records too.
    app.create_user("ipu", "ip test password", Role::User).await;
    let res = app
        .client
        .post(app.url("/auth/session"))
        .header("x-forwarded-for", "198.51.100.4")
        .json(&json!({"username": "ipu", "password": "ip test password"}))
        .send()
        .await
        .expect("session");
    assert_eq!(res.status(), 200);
    let sessions = kyros::store::sessions::list(&app.state.db, None)
        .await
        .expect("list");
    assert_eq!(sessions[0].ip.as_deref(), Some("198.51.100.4"));
}

async fn the_peer_address_decides_trust_in_process(backend: Backend) {
    // The router alone, with the peer address injected: a trusted proxy in 10.0.0.0/8.
    let Some(app) = TestApp::builder(backend)
        .var("TRUSTED_PROXIES", "10.0.0.0/8")
        .start()
        .await
    else {
        return;
    };
    for (peer, expected) in [
        ("10.1.2.3:5000", "192.0.2.77"),
        ("192.0.2.200:5000", "192.0.2.200"),
    ] {
        let peer: SocketAddr = peer.parse().expect("addr");
        let router = kyros::router(app.state.clone()).layer(MockConnectInfo(peer));
        let res = router
            .oneshot(
                Request::post("/auth/login")
                    .header("content-type", "application/json")
                    .header("x-forwarded-for", "192.0.2.77")
                    .header("x-request-id", "proxy-trace-1")
                    .body(Body::from(r#"{"username":"ghost","password":"nope-nope"}"#))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(res.status(), 401);
        let id = res.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let row = app
            .audit_rows("auth.login")
            .await
            .into_iter()
            .next()
            .expect("row");
        assert_eq!(row.client_ip.as_deref(), Some(expected), "peer {peer}");
        assert_eq!(row.request_id.as_deref(), Some(id.as_str()));
        if expected == "192.0.2.77" {
            assert_eq!(id, "proxy-trace-1", "a trusted proxy's request id is kept");
        } else {
            assert_ne!(id, "proxy-trace-1", "anyone else's request id is replaced");
            assert_eq!(id.len(), 36);
        }
    }
}

async fn request_ids_are_generated_and_only_kept_from_trusted_callers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let a = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "mine")
        .send()
        .await
        .expect("a");
    let b = app.client.get(app.url("/health")).send().await.expect("b");
    let id_a = a.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id_a.len(), 36, "a generated UUID, not the caller's value");
    assert_ne!(id_a, b.headers()["x-request-id"].to_str().expect("ascii"));

    let Some(app) = TestApp::builder(backend)
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    let c = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "lb-123.abc")
        .send()
        .await
        .expect("c");
    assert_eq!(c.headers()["x-request-id"], "lb-123.abc");
    let d = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "bad id\twith tab")
        .send()
        .await
        .expect("d");
    assert_ne!(d.headers()["x-request-id"], "bad id\twith tab");
}

async fn oversized_and_malformed_requests_get_clear_errors(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("KYROS_MAX_BODY_BYTES", "4096")
        .var("KYROS_MAX_HEADER_BYTES", "2048")
        .start()
        .await
    else {
        return;
    };
    let big = format!(r#"{{"username":"{}","password":"x"}}"#, "u".repeat(5000));
    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("413");
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["detail"], "Request body too large");

    let res = app
        .client
        .get(app.url("/health"))
        .header("x-filler", "f".repeat(3000))
        .send()
        .await
        .expect("431");
    assert_eq!(res.status(), 431);
    assert_eq!(json(res).await["detail"], "Request header fields too large");

    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .expect("deep");
    assert_eq!(res.status(), 422, "deep nesting is refused, not a crash");

    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])
        .send()
        .await
        .expect("utf8");
    assert_eq!(res.status(), 422);
    let reasons: Vec<_> = app
        .audit_rows("request.rejected")
        .await
        .iter()
        .map(|r| r.details.0["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            json!("Request header fields too large"),
            json!("Request body too large")
        ]
    );
    // The service is still fine.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .expect("ok")
            .status(),
        200
    );
}

async fn csp_reports_are_accepted_in_every_browser_format(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    app.create_user("rep", "report password", Role::User).await;
    let login = app
        .client
        .post(app.url("/auth/session"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "rep", "password": "report password"}))
        .send()
        .await
        .expect("login");
    let cookie = crate::common::find_cookie(&crate::common::set_cookies(&login), "kyros_session")
        .expect("cookie");
    let post = |ct: &'static str, body: serde_json::Value| {
        app.client
            .post(app.url("/api/v1/security/csp-report"))
            .header("x-forwarded-proto", "https")
            .header("content-type", ct)
            // A browser sends its cookies with the report, and never a CSRF token.
            .header("cookie", format!("kyros_session={}", cookie.value()))
            .body(body.to_string())
    };
    let legacy = post(
        "application/csp-report",
        json!({"csp-report": {"document-uri": "https://app.example/jobs", "violated-directive": "script-src 'self'",
                               "effective-directive": "script-src-elem", "blocked-uri": "https://cdn.evil.example/x.js",
                               "original-policy": "default-src 'self'", "status-code": 200}}),
    );
    let modern = post(
        "application/reports+json",
        json!([{"type": "csp-violation", "age": 3, "url": "https://app.example/", "user_agent": "Chromium",
                "body": {"documentURL": "https://app.example/", "effectiveDirective": "style-src-elem",
                         "blockedURL": "inline", "disposition": "enforce", "statusCode": 200}},
               {"type": "deprecation", "body": {}}]),
    );
    let original = post(
        "application/json",
        json!({"csp_report": {"document_uri": "https://app.example/", "violated_directive": "img-src",
                               "effective_directive": "img-src", "original_policy": "p", "blocked_uri": "data:"}}),
    );
    for req in [legacy, modern, original] {
        let res = req.send().await.expect("report");
        assert_eq!(res.status(), 200);
        assert_eq!(json(res).await, json!({"status": "reported"}));
    }
    let rows = app.audit_rows("csp.violation").await;
    assert_eq!(rows.len(), 3);
    let directives: Vec<_> = rows
        .iter()
        .map(|r| r.details.0["report"]["effective_directive"].clone())
        .collect();
    assert!(directives.contains(&json!("script-src-elem")));
    assert!(directives.contains(&json!("style-src-elem")));
    assert!(directives.contains(&json!("img-src")));
    let blocked: Vec<_> = rows
        .iter()
        .map(|r| r.details.0["report"]["blocked_uri"].clone())
        .collect();
    assert!(blocked.contains(&json!("https://cdn.evil.example/x.js")));

    let res = post("application/json", json!({"hello": "world"}))
        .send()
        .await
        .expect("junk");
    assert_eq!(res.status(), 422);
    // Required fields missing: 422 with the missing fields named, as the original answered.
    let res = post(
        "application/json",
        json!({"csp_report": {"document_uri": "https://example.com"}}),
    )
    .send()
    .await
    .expect("incomplete");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    let missing: Vec<_> = body["detail"]
        .as_array()
        .expect("field list")
        .iter()
        .map(|e| (e["type"].clone(), e["loc"].clone()))
        .collect();
    assert_eq!(
        missing,
        [
            "violated_directive",
            "effective_directive",
            "original_policy",
            "blocked_uri"
        ]
        .iter()
        .map(|f| (json!("missing"), json!(["body", "csp_report", f])))
        .collect::<Vec<_>>()
    );
    let incomplete_legacy = post(
        "application/csp-report",
        json!({"csp-report": {"document-uri": "https://app.example/", "blocked-uri": "inline"}}),
    );
    let incomplete_modern = post(
        "application/reports+json",
        json!([{"type": "csp-violation", "body": {"documentURL": "https://app.example/"}}]),
    );
    for req in [incomplete_legacy, incomplete_modern] {
        let res = req.send().await.expect("incomplete");
        assert_eq!(res.status(), 422);
    }
    assert_eq!(
        app.audit_rows("csp.violation").await.len(),
        3,
        "incomplete reports are not recorded"
    );
    let res = post("text/plain", json!({"csp-report": {}}))
        .send()
        .await
        .expect("type");
    assert_eq!(res.status(), 422);
}

backend_tests!(
    spoofed_forwarded_for_from_an_untrusted_peer_is_ignored,
    the_peer_address_decides_trust_in_process,
    request_ids_are_generated_and_only_kept_from_trusted_callers,
    oversized_and_malformed_requests_get_clear_errors,
    csp_reports_are_accepted_in_every_browser_format,
);

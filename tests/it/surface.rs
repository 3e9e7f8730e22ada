//! The rest of the original surface: role examples, utils, the security router, monitoring and
//! Prometheus `/metrics` — true values, no error text, operational views for administrators
//! outside `ENVIRONMENT=local`.

use crate::common::{Backend, TestApp, json, random_secret};
use kyros::config::{Settings, Vars};
use kyros::model::Role;
use reqwest::Response;
use serde_json::{Value, json};

const PW: &str = "surface test password";

/// Admin-only outside local (public in local).
const OPERATIONAL: &[&str] = &[
    "/api/v1/utils/info",
    "/api/v1/security/config",
    "/api/v1/monitoring/health",
    "/api/v1/monitoring/metrics",
    "/api/v1/monitoring/database/health",
    "/api/v1/monitoring/performance",
    "/api/v1/monitoring/dependencies",
    "/api/v1/monitoring/logs/recent",
    "/metrics",
];

/// Tokens of `una` (user), `mo` (moderator) and `root` (admin).
struct Tokens {
    user: String,
    moderator: String,
    admin: String,
}

async fn users(app: &TestApp) -> Tokens {
    app.create_user("una", PW, Role::User).await;
    app.create_user("mo", PW, Role::Moderator).await;
    app.create_user("root", PW, Role::Admin).await;
    Tokens {
        user: token(app, "una").await,
        moderator: token(app, "mo").await,
        admin: token(app, "root").await,
    }
}

/// Logs in through the trusted proxy (so it also works where HTTPS is enforced).
async fn token(app: &TestApp, username: &str) -> String {
    let res = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": username, "password": PW}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200, "login of {username}");
    json(res).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A GET as it arrives through the trusted TLS-terminating proxy.
async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Response {
    let mut req = app
        .client
        .get(app.url(path))
        .header("x-forwarded-proto", "https");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("request")
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

async fn ok_json(res: Response) -> Value {
    let status = res.status();
    let url = res.url().path().to_owned();
    assert!(
        header(&res, "content-type").starts_with("application/json"),
        "{url}: JSON"
    );
    let body = json(res).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

async fn expect_403(res: Response, path: &str, message: &str) {
    assert_eq!(res.status(), 403, "{path}");
    assert_eq!(
        json(res).await,
        json!({
            "error": {
                "type": "http_exception",
                "code": 403,
                "message": message,
                "path": path,
                "method": "GET",
            },
            "detail": message,
        }),
        "{path}"
    );
}

fn user_json(name: &str, role: &str) -> Value {
    json!({"username": name, "role": role})
}

async fn role_examples_answer_with_the_original_bodies(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = users(&app).await;
    let ex = |p: &str| format!("/api/v1/examples/{p}");

    for (name, role, token) in [
        ("una", "user", &t.user),
        ("mo", "moderator", &t.moderator),
        ("root", "admin", &t.admin),
    ] {
        let body = ok_json(get(&app, &ex("user-content"), Some(token)).await).await;
        assert_eq!(
            body,
            json!({
                "message": "User content accessible to all authenticated users",
                "content_type": "user",
                "user": user_json(name, role),
                "access_note": "This endpoint is accessible by user, moderator, and admin roles",
            })
        );
    }
    for (name, role, token) in [
        ("mo", "moderator", &t.moderator),
        ("root", "admin", &t.admin),
    ] {
        let body = ok_json(get(&app, &ex("moderator-content"), Some(token)).await).await;
        assert_eq!(
            body,
            json!({
                "message": "Moderator content with elevated permissions",
                "content_type": "moderator",
                "user": user_json(name, role),
                "access_note": "This endpoint is accessible by moderator and admin roles only",
            })
        );
    }
    let body = ok_json(get(&app, &ex("admin-content"), Some(&t.admin)).await).await;
    assert_eq!(
        body,
        json!({
            "message": "Admin content with full system access",
            "content_type": "admin",
            "user": user_json("root", "admin"),
            "access_note": "This endpoint is accessible by admin role only",
        })
    );
    let body = ok_json(get(&app, &ex("moderator-tools"), Some(&t.moderator)).await).await;
    assert_eq!(
        body,
        json!({
            "message": "Moderator-specific tools and functionality",
            "content_type": "moderator-exact",
            "user": user_json("mo", "moderator"),
            "tools": ["User management dashboard", "Content moderation queue", "Report review system"],
            "access_note": "This endpoint is accessible by moderator role only (exact match)",
        })
    );

    for (name, role, token, level, endpoints, exact) in [
        (
            "una",
            "user",
            &t.user,
            0,
            json!(["user-content"]),
            json!([]),
        ),
        (
            "mo",
            "moderator",
            &t.moderator,
            1,
            json!(["user-content", "moderator-content"]),
            json!(["moderator-tools"]),
        ),
        (
            "root",
            "admin",
            &t.admin,
            2,
            json!(["user-content", "moderator-content", "admin-content"]),
            json!([]),
        ),
    ] {
        let body = ok_json(get(&app, &ex("role-info"), Some(token)).await).await;
        assert_eq!(
            body,
            json!({
                "user": user_json(name, role),
                "role_hierarchy": {
                    "current_level": level,
                    "total_levels": 3,
                    "role_order": ["user", "moderator", "admin"],
                },
                "accessible_endpoints": endpoints,
                "exact_role_endpoints": exact,
                "permissions": {
                    "can_access_user_content": true,
                    "can_access_moderator_content": level >= 1,
                    "can_access_admin_content": level >= 2,
                },
            })
        );
    }

    // Refusals: the original messages in the envelope, each one audited.
    for (path, token, message) in [
        (
            ex("moderator-content"),
            &t.user,
            "Access denied. Required role: moderator, user role: user",
        ),
        (
            ex("admin-content"),
            &t.user,
            "Access denied. Required role: admin, user role: user",
        ),
        (
            ex("admin-content"),
            &t.moderator,
            "Access denied. Required role: admin, user role: moderator",
        ),
        (
            ex("moderator-tools"),
            &t.user,
            "Access denied. Required exact role: moderator, user role: user",
        ),
        (
            ex("moderator-tools"),
            &t.admin,
            "Access denied. Required exact role: moderator, user role: admin",
        ),
    ] {
        expect_403(get(&app, &path, Some(token)).await, &path, message).await;
    }
    let rows = app.audit_rows("rbac.denied").await;
    assert_eq!(rows.len(), 5);
    let exact = rows
        .iter()
        .find(|r| r.actor.as_deref() == Some("root"))
        .expect("the admin's refusal is audited");
    assert_eq!(exact.outcome, "denied");
    assert_eq!(
        exact.details.0,
        json!({"required_exact": "moderator", "role": "admin", "path": ex("moderator-tools")})
    );
    let at_least = rows
        .iter()
        .find(|r| r.actor.as_deref() == Some("mo"))
        .expect("the moderator's refusal is audited");
    assert_eq!(
        at_least.details.0,
        json!({"required": "admin", "role": "moderator", "path": ex("admin-content")})
    );

    for p in [
        "user-content",
        "moderator-content",
        "admin-content",
        "moderator-tools",
        "role-info",
    ] {
        let res = get(&app, &ex(p), None).await;
        assert_eq!(res.status(), 401, "{p}");
        assert_eq!(header(&res, "www-authenticate"), "Bearer");
    }
}

async fn role_examples_take_an_api_keys_owner_role_without_a_scope(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let t = users(&app).await;
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&t.moderator)
        .json(&json!({"name": "agent", "scopes": ["jobs:read"]}))
        .send()
        .await
        .expect("create key");
    assert_eq!(res.status(), 201);
    let key = json(res).await["key"].as_str().expect("key").to_owned();
    let with_key = |path: &'static str| {
        app.client
            .get(app.url(path))
            .header("x-api-key", key.clone())
            .send()
    };
    let body = ok_json(
        with_key("/api/v1/examples/moderator-tools")
            .await
            .expect("tools"),
    )
    .await;
    assert_eq!(body["user"], user_json("mo", "moderator"));
    ok_json(
        with_key("/api/v1/examples/moderator-content")
            .await
            .expect("content"),
    )
    .await;
    expect_403(
        with_key("/api/v1/examples/admin-content")
            .await
            .expect("admin"),
        "/api/v1/examples/admin-content",
        "Access denied. Required role: admin, user role: moderator",
    )
    .await;
}

async fn utils_report_health_and_information(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("BACKEND_CORS_ORIGINS", "https://console.example.org")
        .start()
        .await
    else {
        return;
    };
    let redis = match backend {
        Backend::Sqlite => "not_configured",
        Backend::Postgres => "healthy",
    };
    let body = ok_json(get(&app, "/api/v1/utils/health-check", None).await).await;
    assert_eq!(
        body,
        json!({
            "status": "healthy",
            "service": "orchestrator",
            "version": env!("CARGO_PKG_VERSION"),
            "environment": "local",
            "database": "healthy",
            "redis": redis,
        })
    );
    // Public in local.
    let body = ok_json(get(&app, "/api/v1/utils/info", None).await).await;
    assert_eq!(
        body,
        json!({
            "service": "orchestrator",
            "version": env!("CARGO_PKG_VERSION"),
            "project_name": "Kyros Praxis",
            "environment": "local",
            "api_v1_str": "/api/v1",
            "cors_origins": ["https://console.example.org", "http://localhost:3001"],
            "features": {"emails_enabled": false, "local_password_auth": true, "seed_data": false},
        })
    );
}

async fn the_security_router_tells_the_truth(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ACCESS_TOKEN_EXPIRE_MINUTES", "90")
        .start()
        .await
    else {
        return;
    };
    let shared = backend == Backend::Postgres;
    let body = ok_json(get(&app, "/api/v1/security/health", None).await).await;
    assert_eq!(
        body,
        json!({
            "status": "healthy",
            "security": {
                "csp_enabled": true,
                "csrf_enabled": true,
                "rate_limiting": true,
                "jwt_enabled": true,
                "https_enforced": false,
                "redis_shared_state": shared,
            },
        })
    );
    let body = ok_json(get(&app, "/api/v1/security/config", None).await).await;
    assert_eq!(
        body,
        json!({
            "environment": "local",
            "features": {
                "jwt_authentication": true,
                "csrf_protection": true,
                "rate_limiting": true,
                "csp_headers": true,
                "security_headers": true,
                "cors_policy": true,
                "https_enforced": false,
                "redis_shared_state": shared,
            },
            "jwt": {"algorithm": "HS512", "expiration_hours": 1, "expiration_minutes": 90},
        })
    );

    let Some(off) = TestApp::builder(backend)
        .var("RATE_LIMIT_ENABLED", "false")
        .start()
        .await
    else {
        return;
    };
    let body = ok_json(get(&off, "/api/v1/security/health", None).await).await;
    assert_eq!(body["security"]["rate_limiting"], false);
    let body = ok_json(get(&off, "/api/v1/security/config", None).await).await;
    assert_eq!(body["features"]["rate_limiting"], false);
    assert_eq!(body["jwt"]["expiration_hours"], 2);
    assert_eq!(body["jwt"]["expiration_minutes"], 120);
}

async fn production_keeps_operational_views_for_administrators(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    let t = users(&app).await;
    for path in OPERATIONAL {
        let res = get(&app, path, None).await;
        assert_eq!(res.status(), 401, "{path} anonymous");
        assert_eq!(header(&res, "www-authenticate"), "Bearer", "{path}");
        expect_403(
            get(&app, path, Some(&t.moderator)).await,
            path,
            "Access denied. Required role: admin, user role: moderator",
        )
        .await;
        let res = get(&app, path, Some(&t.admin)).await;
        assert_eq!(res.status(), 200, "{path} admin");
    }
    // The refusals are audited.
    assert_eq!(app.audit_rows("rbac.denied").await.len(), OPERATIONAL.len());

    // The health checks stay public, and say what production really enforces.
    let body = ok_json(get(&app, "/api/v1/utils/health-check", None).await).await;
    assert_eq!(body["environment"], "production");
    assert_eq!(body["database"], "healthy");
    let body = ok_json(get(&app, "/api/v1/security/health", None).await).await;
    assert_eq!(body["security"]["https_enforced"], true);
    assert_eq!(body["security"]["csrf_enabled"], true);
    let body = ok_json(get(&app, "/api/v1/security/config", Some(&t.admin)).await).await;
    assert_eq!(body["environment"], "production");
    assert_eq!(body["features"]["https_enforced"], true);
    let body = ok_json(get(&app, "/api/v1/utils/info", Some(&t.admin)).await).await;
    assert_eq!(body["environment"], "production");

    // Over plain HTTP the views are refused like everything else.
    let res = app
        .client
        .get(app.url("/api/v1/monitoring/health"))
        .bearer_auth(&t.admin)
        .send()
        .await
        .expect("plain http");
    assert_eq!(res.status(), 400);
}

/// Nothing of a failure's text, the engine's messages or the addresses may appear.
fn assert_no_error_text(body: &Value) {
    let text = body.to_string().to_lowercase();
    for needle in [
        "error",
        "closed",
        "pool",
        "refused",
        "timed",
        "127.0.0.1",
        "5432",
        "6379",
        "sqlx",
        "postgres://",
        "kyros.db",
    ] {
        assert!(!text.contains(needle), "{needle:?} in {text}");
    }
}

async fn health_checks_report_a_closed_database_without_error_text(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.state.db.close().await;

    let body = ok_json(get(&app, "/api/v1/utils/health-check", None).await).await;
    assert_no_error_text(&body);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["database"], "unhealthy");

    let body = ok_json(get(&app, "/api/v1/monitoring/health", None).await).await;
    assert_no_error_text(&body);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "unhealthy");
    assert_eq!(body["service"], "Kyros Praxis");

    let body = ok_json(get(&app, "/api/v1/monitoring/database/health", None).await).await;
    assert_no_error_text(&body);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["engine"], app.state.db.engine());
    assert_eq!(body["latency_ms"], Value::Null);

    let body = ok_json(get(&app, "/api/v1/monitoring/dependencies", None).await).await;
    assert_no_error_text(&body);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["database"]["status"], "unhealthy");

    // `/healthz` (readiness) fails without detail too.
    let res = get(&app, "/healthz", None).await;
    assert_eq!(res.status(), 500);
    assert_eq!(json(res).await["detail"], "DB unavailable");
}

async fn monitoring_reports_real_figures(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let engine = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let body = ok_json(get(&app, "/api/v1/monitoring/health", None).await).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "healthy");
    assert_eq!(body["memory"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["environment"], "local");
    assert!(
        body["timestamp"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z')
    );

    let body = ok_json(get(&app, "/api/v1/monitoring/metrics", None).await).await;
    let process = &body["process"];
    assert_eq!(process["pid"], std::process::id());
    assert!(process["resident_memory_bytes"].as_u64().expect("rss") > 0);
    assert!(process["threads"].as_u64().expect("threads") >= 1);
    assert!(process["open_fds"].as_u64().expect("fds") >= 3);
    assert!(process["cpu_seconds_total"].as_f64().expect("cpu") > 0.0);
    assert!(process["uptime_seconds"].is_u64());
    assert_eq!(body["database"]["engine"], engine);
    assert!(body["database"]["pool_connections"].as_u64().expect("pool") >= 1);
    assert_eq!(body["rate_limiter"]["enabled"], true);
    assert_eq!(
        body["rate_limiter"]["redis_configured"],
        backend == Backend::Postgres
    );
    assert_eq!(body["rate_limiter"]["local_fallbacks_total"], 0);
    assert_eq!(body["audit"]["rows_dropped_total"], 0);
    let system = &body["system"];
    let total = system["memory_total_bytes"].as_u64().expect("total");
    let available = system["memory_available_bytes"]
        .as_u64()
        .expect("available");
    assert!(available > 0 && available <= total);
    assert_eq!(system["load_average"].as_array().expect("load").len(), 3);

    let body = ok_json(get(&app, "/api/v1/monitoring/database/health", None).await).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["engine"], engine);
    assert!(body["latency_ms"].as_f64().expect("latency") >= 0.0);

    let body = ok_json(get(&app, "/api/v1/monitoring/dependencies", None).await).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(
        body["dependencies"],
        json!({
            "database": {
                "status": "healthy",
                "engine": engine,
                "latency_ms": body["dependencies"]["database"]["latency_ms"],
            },
            "redis": {"status": if backend == Backend::Postgres { "healthy" } else { "not_configured" }},
        })
    );
    assert!(body.get("qdrant").is_none());

    // Performance: the requests made so far, by route and status class.
    get(&app, "/no/such/page", None).await;
    let body = ok_json(get(&app, "/api/v1/monitoring/performance", None).await).await;
    let total = body["requests_total"].as_u64().expect("total");
    assert_eq!(total, 5, "{body}");
    assert_eq!(body["by_status_class"]["2xx"], 4);
    assert_eq!(body["by_status_class"]["4xx"], 1);
    let buckets = body["latency"]["buckets_seconds"]
        .as_array()
        .expect("buckets");
    assert_eq!(
        buckets.last().expect("+Inf"),
        &json!({"le": "+Inf", "count": 5})
    );
    let routes = body["routes"].as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|r| r["route"] == "/api/v1/monitoring/health"
                && r["method"] == "GET"
                && r["requests"] == 1
                && r["server_errors"] == 0),
        "{body}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["route"] == "unmatched" && r["client_errors"] == 1),
        "{body}"
    );
}

async fn recent_logs_are_audit_summaries(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("una", PW, Role::User).await;
    assert_eq!(app.login("una", "wrong password").await.status(), 401);
    app.token("una", PW).await;
    app.state.audit.flush().await;

    let body = ok_json(get(&app, "/api/v1/monitoring/logs/recent", None).await).await;
    assert_eq!(body["source"], "audit_log");
    let entries = body["entries"].as_array().expect("entries");
    assert_eq!(body["count"], entries.len());
    // Newest first; event, outcome and time only — no names, addresses or details.
    assert_eq!(entries[0]["event"], "auth.login");
    assert_eq!(entries[0]["outcome"], "success");
    assert!(
        entries
            .iter()
            .any(|e| e["event"] == "auth.login" && e["outcome"] == "failure")
    );
    for e in entries {
        let keys: Vec<&String> = e.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["at", "event", "outcome"]);
    }
    assert!(!body.to_string().contains("una"));

    let body = ok_json(get(&app, "/api/v1/monitoring/logs/recent?lines=1", None).await).await;
    assert_eq!(body["count"], 1);
    for bad in ["0", "201", "many", "-1"] {
        let res = get(
            &app,
            &format!("/api/v1/monitoring/logs/recent?lines={bad}"),
            None,
        )
        .await;
        assert_eq!(res.status(), 422, "{bad}");
        let body = json(res).await;
        assert_eq!(body["detail"][0]["loc"], json!(["query", "lines"]));
    }
}

/// The sample of `name` with exactly `labels` (as rendered), if any.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

async fn prometheus_metrics_count_requests_by_route_and_status_class(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("AUTH_RATE_LIMIT_REQUESTS", "1")
        .start()
        .await
    else {
        return;
    };
    app.create_user("una", PW, Role::User).await;
    for _ in 0..2 {
        assert_eq!(
            get(&app, "/api/v1/utils/health-check", None).await.status(),
            200
        );
    }
    assert_eq!(get(&app, "/no/such/page", None).await.status(), 404);
    // One failed login (401), then the login budget of this address is spent (429).
    assert_eq!(app.login("una", "wrong password").await.status(), 401);
    assert_eq!(app.login("una", "wrong password").await.status(), 429);

    let res = get(&app, "/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    let text = res.text().await.expect("text");

    let requests = |labels: &str| sample(&text, &format!("kyros_http_requests_total{{{labels}}}"));
    assert_eq!(
        requests(r#"method="GET",route="/api/v1/utils/health-check",status_class="2xx""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        requests(r#"method="GET",route="unmatched",status_class="4xx""#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests(r#"method="POST",route="/auth/login",status_class="4xx""#),
        Some(2.0),
        "{text}"
    );
    // The raw path of an unknown page never becomes a label.
    assert!(!text.contains("/no/such/page"));
    assert!(text.contains("# TYPE kyros_http_requests_total counter"));
    assert!(text.contains("# TYPE kyros_http_request_duration_seconds histogram"));
    assert_eq!(
        sample(
            &text,
            r#"kyros_http_request_duration_seconds_count{method="GET",route="/api/v1/utils/health-check"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"kyros_http_request_duration_seconds_bucket{method="GET",route="/api/v1/utils/health-check",le="+Inf"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kyros_rate_limited_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kyros_auth_failures_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kyros_ratelimit_local_fallbacks_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kyros_redis_failures_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kyros_audit_rows_dropped_total"),
        Some(0.0),
        "{text}"
    );
    assert!(sample(&text, "kyros_process_resident_memory_bytes").expect("rss") > 0.0);

    // The scrape itself is counted once it has been answered.
    let text = get(&app, "/metrics", None)
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(
        sample(
            &text,
            r#"kyros_http_requests_total{method="GET",route="/metrics",status_class="2xx"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

async fn the_scrape_token_opens_metrics_and_nothing_else(backend: Backend) {
    let token = random_secret();
    let Some(app) = TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .var("KYROS_METRICS_TOKEN", token.clone())
        .start()
        .await
    else {
        return;
    };
    let t = users(&app).await;
    let res = get(&app, "/metrics", Some(&token)).await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/plain; version=0.0.4"));
    assert!(
        res.text()
            .await
            .expect("text")
            .contains("kyros_http_requests_total")
    );
    // Recognised before authentication: no rejected-token row for the scraper.
    assert!(app.audit_rows("auth.token_rejected").await.is_empty());

    let res = get(&app, "/metrics", Some(&format!("{token}x"))).await;
    assert_eq!(res.status(), 401);
    assert_eq!(json(res).await["detail"], "Could not validate credentials");
    assert_eq!(app.audit_rows("auth.token_rejected").await.len(), 1);
    assert_eq!(get(&app, "/metrics", None).await.status(), 401);
    expect_403(
        get(&app, "/metrics", Some(&t.user)).await,
        "/metrics",
        "Access denied. Required role: admin, user role: user",
    )
    .await;
    assert_eq!(get(&app, "/metrics", Some(&t.admin)).await.status(), 200);
    // The scrape token is no credential anywhere else.
    assert_eq!(
        get(&app, "/api/v1/monitoring/metrics", Some(&token))
            .await
            .status(),
        401
    );
    assert_eq!(get(&app, "/auth/user", Some(&token)).await.status(), 401);
}

#[test]
fn a_weak_scrape_token_refuses_to_start() {
    let mut vars = Vars::new();
    vars.set("SECRET_KEY", random_secret());
    vars.set("KYROS_DATA_DIR", std::env::temp_dir().display().to_string());
    vars.set("KYROS_METRICS_TOKEN", "short");
    let e = Settings::from_vars(&vars).expect_err("short token");
    assert!(e.0.starts_with("KYROS_METRICS_TOKEN"), "{}", e.0);
    assert!(!e.0.contains("short"));
    vars.set("KYROS_METRICS_TOKEN", format!("{} x", random_secret()));
    assert!(Settings::from_vars(&vars).is_err());
    vars.set("KYROS_METRICS_TOKEN", random_secret());
    assert!(
        Settings::from_vars(&vars)
            .expect("settings")
            .metrics_token
            .is_some()
    );
}

backend_tests!(
    role_examples_answer_with_the_original_bodies,
    role_examples_take_an_api_keys_owner_role_without_a_scope,
    utils_report_health_and_information,
    the_security_router_tells_the_truth,
    production_keeps_operational_views_for_administrators,
    health_checks_report_a_closed_database_without_error_text,
    monitoring_reports_real_figures,
    recent_logs_are_audit_summaries,
    prometheus_metrics_count_requests_by_route_and_status_class,
    the_scrape_token_opens_metrics_and_nothing_else,
);

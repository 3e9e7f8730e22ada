//! The OpenAPI document at `/api/v1/openapi.json` and the documentation page: the document
//! parses, names the representative routes, and agrees with the router (every operation it
//! lists is answered by a handler, and every `.route(` of `src/http/` is in it); the page and its
//! assets are served with the right types and without inline script or style.

use crate::common::{Backend, TestApp, json};
use serde_json::Value;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

async fn spec(app: &TestApp) -> Value {
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let ct = header(&res, "content-type");
    assert!(ct.starts_with("application/json"), "content type {ct}");
    json(res).await
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

/// Every (METHOD, path) of the document.
fn operations(spec: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths object") {
        for m in METHODS {
            if item.get(*m).is_some() {
                ops.push((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

async fn document_describes_the_api(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let spec = spec(&app).await;
    let version = spec["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "openapi {version}");
    assert!(spec["info"]["title"].is_string());

    let ops = operations(&spec);
    for (method, path) in [
        ("POST", "/auth/login"),
        ("GET", "/api/v1/jobs/{id}"),
        ("PUT", "/api/v1/jobs/{id}/status"),
        ("POST", "/api/v1/agents/claim"),
        ("GET", "/ws"),
        ("GET", "/api/v1/admin/audit"),
        ("POST", "/api/v1/api-keys"),
        ("GET", "/api/v1/openapi.json"),
    ] {
        assert!(
            ops.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} missing from the document"
        );
    }

    // Shared error envelope and the three ways to authenticate.
    let error = &spec["components"]["schemas"]["Error"];
    for field in ["type", "code", "message", "path", "method"] {
        assert!(
            error["properties"]["error"]["properties"][field].is_object(),
            "error.{field}"
        );
    }
    assert!(error["properties"]["detail"].is_object());
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["sessionCookie"]["name"], "kyros_session");
    assert_eq!(schemes["sessionCookie"]["in"], "cookie");
    assert_eq!(schemes["csrfToken"]["name"], "X-CSRF-Token");

    // Request bodies name their fields.
    let login = &spec["paths"]["/auth/login"]["post"];
    let body = &login["requestBody"]["content"]["application/json"]["schema"];
    assert!(body["properties"]["username"].is_object());
    assert!(body["properties"]["password"].is_object());
    assert!(login.get("security").is_none(), "login is public");
    let jobs = &spec["paths"]["/api/v1/jobs/{id}"]["get"];
    assert!(jobs["security"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(jobs["responses"]["404"].is_object());
    app.stop().await;
}

/// Every operation of the document reaches a handler: not the router's 404 (`"detail":"Not
/// Found"`) nor its 405. Sent without credentials, so handlers mostly answer 401/403.
async fn every_documented_operation_is_routed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let spec = spec(&app).await;
    let ops = operations(&spec);
    assert!(ops.len() > 60, "only {} operations", ops.len());
    for (method, path) in ops {
        let concrete: Vec<String> = path
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    s.to_owned()
                }
            })
            .collect();
        let concrete = concrete.join("/");
        assert!(!concrete.contains('{'), "unexpected parameter in {path}");
        // Event streams answer once instead of following (they refuse anonymous callers anyway).
        let url = if path.ends_with("/stream") || path.ends_with("/tail") {
            app.url(&format!("{concrete}?once=true"))
        } else {
            app.url(&concrete)
        };
        let req = match method.as_str() {
            "GET" => app.client.get(&url),
            "POST" => app.client.post(&url),
            "PUT" => app.client.put(&url),
            "PATCH" => app.client.patch(&url),
            "DELETE" => app.client.delete(&url),
            other => panic!("method {other}"),
        };
        let req = if method == "GET" {
            req
        } else {
            req.header("content-type", "application/json").body("{}")
        };
        let res = tokio::time::timeout(std::time::Duration::from_secs(10), req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path} timed out"))
            .expect("request");
        let status = res.status().as_u16();
        assert_ne!(status, 405, "{method} {path}: method not allowed");
        if status == 404 {
            let body = res.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert_ne!(
                value["detail"], "Not Found",
                "{method} {path}: the router knows no such route: {body}"
            );
        }
    }
    app.stop().await;
}

/// Whether a route template of the router (`{x}` matches any one segment) is in the document.
fn documented(router_path: &str, documented: &[String]) -> bool {
    let want: Vec<&str> = router_path.split('/').collect();
    documented.iter().any(|p| {
        let have: Vec<&str> = p.split('/').collect();
        have.len() == want.len()
            && have
                .iter()
                .zip(&want)
                .all(|(h, w)| h == w || w.starts_with('{') || h.starts_with('{'))
    })
}

/// Every `.route("…"` literal in `src/http/` (plus the two routes mounted by constant) is in the
/// document, so a new route without a row of the table fails here.
async fn every_router_path_is_documented(backend: Backend) {
    if backend == Backend::Postgres {
        return; // a source scan: once is enough
    }
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let spec = spec(&app).await;
    let paths: Vec<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut found = vec![
        "/metrics".to_owned(),
        "/api/v1/security/csp-report".to_owned(),
    ];
    for entry in std::fs::read_dir(dir).expect("src/http") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for chunk in text.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            if let Some(rest) = chunk.strip_prefix('"')
                && let Some(end) = rest.find('"')
            {
                found.push(rest[..end].to_owned());
            }
        }
    }
    assert!(found.len() > 50, "only {} routes found", found.len());
    for route in found {
        assert!(
            documented(&route, &paths),
            "{route} is routed but not in the OpenAPI document"
        );
    }
    app.stop().await;
}

async fn docs_page_and_assets(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let res = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_eq!(header(&res, "cache-control"), "public, max-age=3600");
    assert!(!header(&res, "content-security-policy").is_empty());
    let html = res.text().await.expect("html");
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<style"), "inline <style>");
    assert!(!lower.contains("style="), "inline style attribute");
    for tag in lower.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap_or_default();
        assert!(open.contains("src="), "inline <script>: {open}");
    }
    assert!(html.contains("src=\"/api/v1/docs/docs.js\""));
    assert!(html.contains("href=\"/api/v1/docs/docs.css\""));
    assert!(
        !lower.contains("http://") && !lower.contains("https://"),
        "no external assets"
    );

    for (path, ct, needle) in [
        (
            "/api/v1/docs/docs.js",
            "text/javascript",
            "/api/v1/openapi.json",
        ),
        ("/api/v1/docs/docs.css", "text/css", "details.op"),
    ] {
        let res = app.client.get(app.url(path)).send().await.expect("asset");
        assert_eq!(res.status(), 200, "{path}");
        assert!(header(&res, "content-type").starts_with(ct), "{path}");
        assert_eq!(header(&res, "cache-control"), "public, max-age=3600");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let body = res.text().await.expect("body");
        assert!(body.contains(needle), "{path}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}: no CDN"
        );
    }

    // `/docs` leads to the page.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(res.status(), 308);
    assert_eq!(header(&res, "location"), "/api/v1/docs");
    app.stop().await;
}

/// The page is usable under the production CSP: no `'unsafe-inline'` is needed.
#[test]
fn production_csp_needs_no_inline() {
    let mut vars = kyros::config::Vars::new();
    vars.set("ENVIRONMENT", "production");
    vars.set("SECRET_KEY", crate::common::random_secret());
    let settings = kyros::config::Settings::from_vars(&vars).expect("settings");
    let csp = kyros::security::headers::content_security_policy(&settings);
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("style-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

backend_tests!(
    document_describes_the_api,
    every_documented_operation_is_routed,
    every_router_path_is_documented,
    docs_page_and_assets,
);

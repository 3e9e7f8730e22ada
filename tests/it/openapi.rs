//! The OpenAPI document at `/api/v1/openapi.json` (derived from the routers: a route cannot be
//! declared without its operation — clippy's `disallowed-methods` refuses the undocumented
//! `route`) and the documentation page: the document parses, names the representative routes,
//! gives every operation a success answer with its schema and the error envelope on its errors;
//! every operation it lists is answered by a handler; malformed input of every kind (body,
//! query, path, header) gets the envelope with the field's `loc`; the page and its assets are
//! served with the right types and without inline script or style.

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
    let error = &spec["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(
        error["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorInfo"
    );
    let info = &spec["components"]["schemas"]["ErrorInfo"];
    for field in ["type", "code", "message", "path", "method"] {
        assert!(info["properties"][field].is_object(), "error.{field}");
    }
    assert!(error["properties"]["detail"].is_object());
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["sessionCookie"]["name"], "kyros_session");
    assert_eq!(schemes["sessionCookie"]["in"], "cookie");
    assert_eq!(schemes["csrfToken"]["name"], "X-CSRF-Token");

    // Request bodies are schemas with their constraints.
    let create = &spec["paths"]["/api/v1/jobs"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobCreate"
    );
    let job_create = &spec["components"]["schemas"]["JobCreate"];
    assert_eq!(job_create["properties"]["title"]["maxLength"], 255);
    assert_eq!(job_create["properties"]["priority"]["maximum"], 1000);
    assert_eq!(job_create["required"], serde_json::json!(["title"]));
    assert!(create["responses"]["201"]["headers"]["Location"].is_object());
    assert!(create["responses"]["201"]["headers"]["ETag"].is_object());

    let login = &spec["paths"]["/auth/login"]["post"];
    assert!(login["requestBody"]["content"]["application/json"]["schema"].is_object());
    assert!(login.get("security").is_none(), "login is public");
    let jobs = &spec["paths"]["/api/v1/jobs/{id}"]["get"];
    assert!(jobs["security"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(jobs["responses"]["404"].is_object());
    assert_eq!(jobs["parameters"][0]["schema"]["format"], "uuid");

    // The login-type budget is declared on the operations it applies to, and only there.
    let mut login_type: Vec<String> = Vec::new();
    for (method, path) in &ops {
        let op = &spec["paths"][path][method.to_ascii_lowercase()];
        if op["x-rate-limit-policy"] == "login" {
            login_type.push(format!("{method} {path}"));
        }
    }
    login_type.sort();
    assert_eq!(
        login_type,
        [
            "GET /auth/oauth2/{provider}",
            "POST /auth/login",
            "POST /auth/mfa/verify",
            "POST /auth/oauth2/callback",
            "POST /auth/oauth2/{provider}/callback",
            "POST /auth/password",
            "POST /auth/refresh",
            "POST /auth/session",
        ]
    );

    // Every operation: a success answer (with a schema when it has a body), the envelope on its
    // errors, a unique operationId.
    let mut ids = std::collections::HashSet::new();
    for (method, path) in &ops {
        let op = &spec["paths"][path][method.to_ascii_lowercase()];
        let id = op["operationId"].as_str().expect("operationId");
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: duplicate id {id}"
        );
        let responses = op["responses"].as_object().expect("responses");
        let successes: Vec<&String> = responses
            .keys()
            .filter(|s| s.starts_with('1') || s.starts_with('2') || s.starts_with('3'))
            .collect();
        assert!(!successes.is_empty(), "{method} {path}: no success answer");
        for (status, response) in responses {
            if let Some(content) = response["content"].as_object() {
                for (ct, media) in content {
                    assert!(
                        media["schema"].is_object(),
                        "{method} {path} {status} {ct}: no schema"
                    );
                }
            }
            if status.starts_with('4') || status.starts_with('5') || status == "default" {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorEnvelope",
                    "{method} {path} {status}: not the envelope"
                );
            }
        }
        assert!(responses.contains_key("default"), "{method} {path}");
    }
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

fn first_error(body: &Value) -> (&Value, &Value) {
    (&body["detail"][0]["loc"], &body["detail"][0]["type"])
}

/// Malformed input of each extractor kind gets the error envelope: 422, `loc` naming the place
/// and the field, pydantic's error type, and never the submitted value.
async fn malformed_input_gets_the_envelope(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("shape", "shape password 1", kyros::model::Role::User)
        .await;
    let token = app.token("shape", "shape password 1").await;
    let get = |path: &str| app.client.get(app.url(path)).bearer_auth(&token).send();

    // query: a value of the wrong type, and an unknown enum member
    let res = get("/api/v1/jobs?limit=abc").await.expect("query");
    assert_eq!(res.status(), 422);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let body = json(res).await;
    assert_eq!(body["error"]["code"], 422);
    assert_eq!(body["error"]["type"], "validation_error");
    assert_eq!(
        first_error(&body),
        (
            &serde_json::json!(["query", "limit"]),
            &serde_json::json!("int_parsing")
        )
    );
    assert!(!body.to_string().contains("abc"), "echoed: {body}");
    let body = json(get("/api/v1/jobs?status=sleeping").await.expect("enum")).await;
    assert_eq!(
        first_error(&body),
        (
            &serde_json::json!(["query", "status"]),
            &serde_json::json!("enum")
        )
    );
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("'pending'")
    );

    // path: not a UUID
    let res = get("/api/v1/jobs/not-a-job").await.expect("path");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(
        first_error(&body),
        (
            &serde_json::json!(["path", "id"]),
            &serde_json::json!("uuid_parsing")
        )
    );

    // header: a Last-Event-ID that is not an event id
    let res = app
        .client
        .get(app.url("/api/v1/orchestrator/events/stream?once=true"))
        .bearer_auth(&token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("header");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(
        first_error(&body),
        (
            &serde_json::json!(["header", "last-event-id"]),
            &serde_json::json!("int_parsing")
        )
    );

    // body: every field's problem at once, each with its loc
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "title": "x".repeat(300),
            "priority": "high",
            "metadata": [1, 2],
            "description": 7,
        }))
        .send()
        .await
        .expect("body");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    let mut found: Vec<(String, String)> = body["detail"]
        .as_array()
        .expect("detail list")
        .iter()
        .map(|e| {
            (
                e["loc"][1].as_str().unwrap_or_default().to_owned(),
                e["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("description".to_owned(), "string_type".to_owned()),
            ("metadata".to_owned(), "dict_type".to_owned()),
            ("priority".to_owned(), "int_type".to_owned()),
            ("title".to_owned(), "string_too_long".to_owned()),
        ],
        "{body}"
    );
    assert!(!body.to_string().contains("xxxxxxxx"), "echoed");
    // a missing required field, and a JSON syntax error (still the envelope)
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"priority": 2000}))
        .send()
        .await
        .expect("missing");
    let body = json(res).await;
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert!(
        locs.contains(&&serde_json::json!(["body", "title"])),
        "{body}"
    );
    assert!(
        locs.contains(&&serde_json::json!(["body", "priority"])),
        "{body}"
    );
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .expect("syntax");
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["error"]["code"], 422);
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
    malformed_input_gets_the_envelope,
    docs_page_and_assets,
);

//! Arbitrary request bodies sent through the whole router (every layer, real handlers, a
//! SQLite database) to the JSON endpoints: never a panic, never a 5xx.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use kyros::AppState;
use kyros::auth::accounts::{self, CreateUser};
use kyros::model::Role;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Target {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    job: String,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (router, token, job) = runtime.block_on(async {
        let state = AppState::build(common::settings()).await.expect("state");
        let password = hex::encode(kyros::crypto::random_bytes::<16>());
        let user = accounts::create_user(
            &state,
            CreateUser {
                username: "fuzz".into(),
                email: "fuzz@example.org".into(),
                password: password.into(),
                role: Role::Admin,
            },
            kyros::audit::Actor::System,
        )
        .await
        .expect("user");
        let token = state
            .tokens
            .issue(&user, state.clock.now())
            .expect("token")
            .token;
        let router = kyros::router(state);
        let res = router
            .clone()
            .oneshot(
                Request::post("/api/v1/jobs")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"title":"fuzz"}"#))
                    .expect("request"),
            )
            .await
            .expect("create");
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
        let job: serde_json::Value = serde_json::from_slice(&bytes).expect("job json");
        let job = job["id"].as_str().expect("job id").to_owned();
        (router, token, job)
    });
    Target {
        runtime,
        router,
        token,
        job,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let t = &*TARGET;
    let job_status = format!("/api/v1/jobs/{}/status", t.job);
    let endpoints: [(Method, &str); 10] = [
        (Method::POST, "/api/v1/jobs"),
        (Method::PUT, &job_status),
        (Method::POST, "/api/v1/collab/tasks"),
        (Method::POST, "/api/v1/events"),
        (Method::POST, "/api/v1/api-keys"),
        (Method::POST, "/api/v1/admin/users"),
        (Method::POST, "/auth/login"),
        (Method::POST, "/auth/mfa/verify"),
        (Method::POST, "/auth/password"),
        (Method::POST, "/api/v1/security/csp-report"),
    ];
    let (method, path) = &endpoints[selector as usize % endpoints.len()];
    let content_type = if selector & 0x80 == 0 {
        "application/json"
    } else {
        "application/csp-report"
    };
    let request = Request::builder()
        .method(method.clone())
        .uri(*path)
        .header(header::AUTHORIZATION, format!("Bearer {}", t.token))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let router = t.router.clone();
    let status = t
        .runtime
        .block_on(async move { router.oneshot(request).await.expect("infallible").status() });
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{method} {path} answered {status}"
    );
});

//! Faults injected into the service's dependencies, each a private server process the test
//! owns: PostgreSQL killed and restarted under a running instance, Redis killed under two
//! instances, Redis stalled by `DEBUG SLEEP`. The service answers clearly, loses nothing and
//! recovers by itself.

use std::time::Duration;

use crate::common::processes::{PgCluster, RedisProcess, free_port};
use crate::common::{Backend, TestApp, json};
use kyros::model::Role;
use serde_json::json;

const PW: &str = "fault injection password";

/// Polls until `f` is true; the limit is a safety net, not a figure under test.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within a minute");
}

async fn create_job(app: &TestApp, token: &str, title: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(token)
        .json(&json!({"title": title}))
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_answers_503_and_recovers_without_restart() {
    let Some(pg) = PgCluster::start().await else {
        return;
    };
    // SQLite harness defaults (in-memory limiter), but the database is the private cluster.
    let Some(app) = TestApp::builder(Backend::Sqlite)
        .var("DATABASE_URL", pg.url("postgres"))
        .start()
        .await
    else {
        return;
    };
    assert_eq!(app.state.db.engine(), "postgres");
    app.create_user("pia", PW, Role::User).await;
    let token = app.token("pia", PW).await;
    assert_eq!(create_job(&app, &token, "before").await.status(), 201);

    pg.kill();
    // Readiness says so, without internals.
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), 500);
    let text = res.text().await.expect("body");
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["detail"], "DB unavailable");
    for leak in [
        "postgres",
        "connection",
        "127.0.0.1",
        &pg.port.to_string(),
        "sqlx",
        "refused",
    ] {
        assert!(!text.to_lowercase().contains(leak), "{leak} in {text}");
    }
    // Liveness is not readiness: the process itself is fine.
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), 200);
    // Writes (and reads) fail with a clear 503 and a Retry-After.
    let res = create_job(&app, &token, "during the outage").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let text = res.text().await.expect("body");
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["detail"], "Service temporarily unavailable");
    assert_eq!(body["error"]["path"], "/api/v1/jobs");
    assert!(!text.contains(&pg.port.to_string()), "{text}");
    // A refusal that needs no database is still audited: the row waits for the database.
    let res = app
        .client
        .get(app.url("/auth/user"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .expect("bad token");
    assert_eq!(res.status(), 401);

    pg.resume().await;
    eventually("readiness after the restart", || async {
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // The same process serves again, and the refused write left nothing behind.
    assert_eq!(create_job(&app, &token, "after").await.status(), 201);
    let res = app.get_with_token("/api/v1/jobs", &token).await;
    assert_eq!(res.status(), 200);
    let list = json(res).await;
    let mut titles: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|j| j["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    titles.sort();
    assert_eq!(titles, ["after", "before"]);
    let rejected = app.audit_rows("auth.token_rejected").await;
    assert_eq!(
        rejected.len(),
        1,
        "the audit row of the outage was kept and written"
    );
    app.stop().await;
}

/// Two instances on the shared PostgreSQL and a private Redis that dies: requests are served
/// under local limits with no 5xx, a logout still reaches the other instance (through the
/// database), and Redis carries revocations again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_serving_and_revocations_fall_back_to_the_database() {
    let port = free_port();
    let Some(mut redis) = RedisProcess::start_on(port).await else {
        return;
    };
    let prefix = format!("kyros-faults-{}:", uuid::Uuid::new_v4().simple());
    let Some(a) = TestApp::builder(Backend::Postgres)
        .var("REDIS_URL", redis.url())
        .var("REDIS_KEY_PREFIX", prefix.clone())
        .var("KYROS_REDIS_TIMEOUT_MS", "200")
        .start()
        .await
    else {
        return;
    };
    let Some(b) = TestApp::builder(Backend::Postgres)
        .var("SECRET_KEY", a.secret())
        .var("REDIS_URL", redis.url())
        .var("REDIS_KEY_PREFIX", prefix)
        .var("KYROS_REDIS_TIMEOUT_MS", "200")
        .sharing_storage_with(&a)
        .start()
        .await
    else {
        return;
    };
    a.create_user("rex", PW, Role::User).await;
    let first = a.token("rex", PW).await;
    let second = a.token("rex", PW).await;

    redis.kill();
    // Everything is still served: logins, reads, writes, on both instances.
    for app in [&a, &b] {
        assert_eq!(app.get_with_token("/auth/user", &first).await.status(), 200);
        assert_eq!(
            create_job(app, &first, "while redis is down")
                .await
                .status(),
            201
        );
        assert_eq!(app.login("rex", PW).await.status(), 200);
    }
    let res = a
        .client
        .post(a.url("/auth/logout"))
        .bearer_auth(&first)
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success(), "{}", res.status());
    eventually(
        "the logout reaching the other instance without Redis",
        || async {
            let status = b.get_with_token("/auth/user", &first).await.status();
            assert!(status == 200 || status == 401, "{status}");
            status == 401
        },
    )
    .await;
    assert_eq!(b.get_with_token("/auth/user", &second).await.status(), 200);

    let _redis = RedisProcess::start_on(port).await.expect("restart");
    eventually("the limiter back on Redis", || async {
        a.state.limiter.redis_healthy() == Some(true)
            && b.state.limiter.redis_healthy() == Some(true)
    })
    .await;
    let res = b
        .client
        .post(b.url("/auth/logout"))
        .bearer_auth(&second)
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success());
    eventually("the second logout reaching the first instance", || async {
        a.get_with_token("/auth/user", &second).await.status() == 401
    })
    .await;
}

/// Redis stalled (`DEBUG SLEEP`) rather than dead: the limiter's timeout answers for it, so
/// requests complete while Redis is still asleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_does_not_stall_requests() {
    let port = free_port();
    let Some(redis) = RedisProcess::start_on(port).await else {
        return;
    };
    let Some(app) = TestApp::builder(Backend::Postgres)
        .var("REDIS_URL", redis.url())
        .var("KYROS_REDIS_TIMEOUT_MS", "100")
        .start()
        .await
    else {
        return;
    };
    assert_eq!(
        app.client
            .get(app.url("/"))
            .send()
            .await
            .expect("up")
            .status(),
        200
    );
    // A plain connection: the command blocks the server, and the reply comes when it wakes.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .expect("connect");
    let sleeping = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        conn.write_all(b"DEBUG SLEEP 5\r\n").await.expect("send");
        let mut reply = [0u8; 5];
        conn.read_exact(&mut reply).await.expect("reply");
        assert_eq!(&reply, b"+OK\r\n");
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sleeping.is_finished(), "Redis is asleep");
    let requests = (0..20).map(|_| async {
        app.client
            .get(app.url("/"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        !sleeping.is_finished(),
        "all twenty requests were answered while Redis still slept"
    );
    assert!(app.state.limiter.local_fallbacks() > 0);
    sleeping.await.expect("sleep ends");
}

//! Several instances sharing PostgreSQL and Redis, and Redis failing under them.

use std::time::Duration as StdDuration;

use crate::common::processes::{RedisProcess, free_port};
use crate::common::{Backend, TestApp};

async fn pair(redis_url: &str, extra: &[(&str, &str)]) -> Option<(TestApp, TestApp)> {
    let prefix = format!("kyros-pair-{}:", uuid::Uuid::new_v4().simple());
    let mut first = TestApp::builder(Backend::Postgres)
        .var("REDIS_URL", redis_url)
        .var("REDIS_KEY_PREFIX", prefix.clone());
    for (k, v) in extra {
        first = first.var(k, *v);
    }
    let first = first.start().await?;
    let mut second = TestApp::builder(Backend::Postgres)
        .var("SECRET_KEY", first.secret())
        .var("REDIS_URL", redis_url)
        .var("REDIS_KEY_PREFIX", prefix)
        .sharing_storage_with(&first);
    for (k, v) in extra {
        second = second.var(k, *v);
    }
    let second = second.start().await?;
    Some((first, second))
}

/// Sends `n` anonymous requests alternating between the two instances; returns (ok, limited).
async fn alternate(a: &TestApp, b: &TestApp, n: usize) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for i in 0..n {
        let app = if i % 2 == 0 { a } else { b };
        let status = app
            .client
            .get(app.url("/"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        match status {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget() {
    let Some((a, b)) = pair(
        &crate::common::redis_url(),
        &[("RATE_LIMIT_REQUESTS", "10"), ("RATE_LIMIT_WINDOW", "600")],
    )
    .await
    else {
        return;
    };
    assert_eq!(
        alternate(&a, &b, 20).await,
        (10, 10),
        "twice the requests through two instances, the limit once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failure_falls_back_to_local_limits_and_recovers() {
    let port = free_port();
    let Some(mut redis) = RedisProcess::start_on(port).await else {
        return;
    };
    let Some((a, b)) = pair(
        &redis.url(),
        &[
            ("RATE_LIMIT_REQUESTS", "10"),
            ("RATE_LIMIT_WINDOW", "600"),
            ("KYROS_REDIS_TIMEOUT_MS", "200"),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(alternate(&a, &b, 8).await, (8, 0));

    redis.kill();
    // Served on, under each instance's local budget; never a 5xx.
    let (ok, limited) = alternate(&a, &b, 30).await;
    assert_eq!(ok + limited, 30);
    assert_eq!(ok, 20, "each instance allows its local budget of 10");
    assert!(a.state.limiter.local_fallbacks() > 0 && b.state.limiter.local_fallbacks() > 0);
    assert_eq!(a.state.limiter.redis_healthy(), Some(false));
    let res = a.client.get(a.url("/health")).send().await.expect("health");
    assert_eq!(res.status(), 200);

    // Redis comes back (empty): the instances return to the shared budget by themselves.
    let Some(_redis) = RedisProcess::start_on(port).await else {
        return;
    };
    let mut waited = 0;
    while a.state.limiter.redis_healthy() != Some(true)
        || b.state.limiter.redis_healthy() != Some(true)
    {
        assert!(waited < 200, "the limiter did not return to Redis");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(
        alternate(&a, &b, 20).await,
        (10, 10),
        "one shared budget again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_all_but_logins_while_redis_is_down() {
    let port = free_port();
    let Some(mut redis) = RedisProcess::start_on(port).await else {
        return;
    };
    let Some((a, _b)) = pair(
        &redis.url(),
        &[
            ("RATE_LIMIT_FAIL_MODE", "closed"),
            ("KYROS_REDIS_TIMEOUT_MS", "200"),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(
        a.client.get(a.url("/")).send().await.expect("up").status(),
        200
    );
    redis.kill();
    let res = a.client.get(a.url("/")).send().await.expect("down");
    assert_eq!(res.status(), 503);
    assert_eq!(
        crate::common::json(res).await["detail"],
        "Rate limiter unavailable"
    );
    // Logins keep working under the local stricter budget.
    a.create_user("fc", "fail closed password", kyros::model::Role::User)
        .await;
    a.token("fc", "fail closed password").await;
}

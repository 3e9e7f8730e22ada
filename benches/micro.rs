//! Micro-benchmarks of the per-request security work: JWT sign and verify (HS512), CSRF token
//! issue and verify, the ETag of a typical job, and one rate-limit decision on the in-memory
//! store and on Redis.
//!
//!   cargo bench --bench micro              # full measurement
//!   cargo bench --bench micro -- --quick   # a few seconds, as `.ci/run` runs it
//!
//! The Redis group needs a server at KYROS_BENCH_REDIS_URL (default redis://127.0.0.1:6379); it is
//! skipped with a `SKIPPED:` line when none answers.

use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use kyros::auth::tokens::TokenService;
use kyros::config::{Settings, Vars};
use kyros::limiter::gcra::Gcra;
use kyros::limiter::memory::MemoryStore;
use kyros::limiter::redis::RedisStore;
use kyros::model::{Role, User};
use kyros::orchestrator::{etag, jobs};
use kyros::security::csrf::CsrfKeys;
use kyros::store::jobs::JobRow;
use kyros::store::redis::Redis;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

fn settings() -> Settings {
    let mut vars = Vars::new();
    vars.set("ENVIRONMENT", "local").set(
        "SECRET_KEY",
        "micro-bench-secret-key-0123456789abcdef0123456789abcdef",
    );
    Settings::from_vars(&vars).expect("settings")
}

fn user() -> User {
    let now = Utc::now();
    User {
        id: Uuid::new_v4(),
        username: "bench-user".into(),
        email: "bench@example.org".into(),
        password_hash: String::new(),
        role: Role::User,
        active: true,
        created_at: now,
        updated_at: now,
        failed_logins: 0,
        locked_until: None,
        token_generation: 0,
    }
}

fn job() -> JobRow {
    let now = Utc::now();
    JobRow {
        id: Uuid::new_v4(),
        name: "Nightly build of the agent platform".into(),
        description: Some("Compile, test and package every crate of the workspace".into()),
        status: "running".into(),
        priority: 10,
        metadata: Some(sqlx::types::Json(json!({
            "repository": "kyros/agents",
            "branch": "main",
            "labels": ["ci", "nightly", "release"],
            "retries": 2,
            "ratio": 0.75,
            "note": "ünïcode ✓"
        }))),
        owner_id: Some(Uuid::new_v4()),
        version: 3,
        attempts: 1,
        created_at: now,
        updated_at: now,
        started_at: Some(now),
        completed_at: None,
        lease_owner: Some(Uuid::new_v4()),
        lease_expires_at: Some(now),
        lease_token: None,
        result: None,
        error: None,
        requires: None,
        progress: None,
        progress_message: None,
        exit_code: None,
        agent_name: None,
    }
}

fn jwt(c: &mut Criterion) {
    let s = settings();
    let tokens = TokenService::new(&s);
    let u = user();
    let mut g = c.benchmark_group("jwt");
    g.bench_function("sign HS512", |b| {
        b.iter(|| tokens.issue(&u, Utc::now()).expect("issue"))
    });
    // A token never seen before pays the HMAC; one verified before is found by the SHA-256 of
    // the token (its time bounds are still checked).
    g.bench_function("verify HS512, first sight", |b| {
        b.iter_batched(
            || tokens.issue(&u, Utc::now()).expect("issue").token,
            |token| tokens.verify(&token, Utc::now()).expect("verify"),
            criterion::BatchSize::SmallInput,
        )
    });
    let token = tokens.issue(&u, Utc::now()).expect("issue").token;
    g.bench_function("verify, seen before", |b| {
        b.iter(|| tokens.verify(&token, Utc::now()).expect("verify"))
    });
    g.finish();
}

fn csrf(c: &mut Criterion) {
    let settings = settings();
    let ring = kyros::crypto::KeyRing::new(&settings.secret_key, &settings.previous_secret_keys);
    let keys = CsrfKeys::new(&settings, ring.all(kyros::crypto::Purpose::Csrf));
    let session = Uuid::new_v4();
    let mut g = c.benchmark_group("csrf");
    g.bench_function("issue", |b| b.iter(|| keys.issue(session, Utc::now())));
    let token = keys.issue(session, Utc::now());
    g.bench_function("verify", |b| {
        b.iter(|| keys.verify(&token, session, Utc::now()).expect("verify"))
    });
    g.finish();
}

fn etags(c: &mut Criterion) {
    let row = job();
    let value = jobs::to_json(&row);
    let mut g = c.benchmark_group("etag");
    g.bench_function("job json", |b| b.iter(|| etag::etag(&value)));
    g.bench_function("job row to json + etag", |b| {
        b.iter(|| etag::etag(&jobs::to_json(&row)))
    });
    g.finish();
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn limiter_memory(c: &mut Criterion) {
    let g = Gcra::new(1_000_000, 1, 0);
    let store = MemoryStore::new(2_000_000);
    let mut group = c.benchmark_group("limiter/memory");
    group.bench_function("decision, one key", |b| {
        b.iter(|| store.decide("anon:ip:192.0.2.1", "ip:192.0.2.1", &g, now_us(), 1, 4))
    });
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("anon:ip:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let mut i = 0usize;
    group.bench_function("decision, 100k keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            store.decide(&keys[i], &keys[i], &g, now_us(), 1, 4)
        })
    });
    group.finish();
}

fn limiter_redis(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url =
        std::env::var("KYROS_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("kyros-bench-{}:", Uuid::new_v4().simple());
    let store = rt.block_on(async {
        let redis = Redis::start(
            &SecretString::from(url.clone()),
            &prefix,
            Duration::from_millis(500),
        )
        .ok()?;
        redis.connect_now().await.then(|| RedisStore::new(redis))
    });
    let Some(store) = store else {
        eprintln!("SKIPPED: no Redis at {url}; the limiter/redis group was not measured");
        return;
    };
    let g = Gcra::new(1_000_000, 1, 0);
    let mut group = c.benchmark_group("limiter/redis");
    group.bench_function("decision (EVALSHA round trip)", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .run(
                    "bench:ip:192.0.2.1",
                    "ip:192.0.2.1",
                    &g,
                    now_us(),
                    1,
                    4,
                    None,
                )
                .await
                .expect("redis decision")
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = jwt, csrf, etags, limiter_memory, limiter_redis
}
criterion_main!(benches);

//! The cost of one rate-limit decision, on the in-memory store and on Redis.
//!
//!   cargo bench --bench limiter
//!
//! The Redis rows need a server at KYROS_BENCH_REDIS_URL (default redis://127.0.0.1:6379); they
//! are skipped with a message when none answers.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kyros::limiter::gcra::Gcra;
use kyros::limiter::memory::MemoryStore;
use kyros::limiter::redis::RedisStore;
use kyros::store::redis::Redis;
use secrecy::SecretString;

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn memory(c: &mut Criterion) {
    let g = Gcra::new(1_000_000, 1, 0);
    let store = MemoryStore::new(2_000_000);
    c.bench_function("limiter/memory/one key", |b| {
        b.iter(|| store.decide("ip:192.0.2.1", "ip:192.0.2.1", &g, now_us(), 1, 4))
    });
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("ip:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let mut i = 0usize;
    c.bench_function("limiter/memory/100k keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            store.decide(&keys[i], &keys[i], &g, now_us(), 1, 4)
        })
    });
}

fn redis(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url =
        std::env::var("KYROS_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("kyros-bench-{}:", uuid::Uuid::new_v4().simple());
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
        eprintln!("SKIPPED: no Redis at {url}; the Redis limiter rows were not measured");
        return;
    };
    let g = Gcra::new(1_000_000, 1, 0);
    c.bench_function("limiter/redis/one key (EVALSHA round trip)", |b| {
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
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);

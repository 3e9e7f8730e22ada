//! Memory of the in-process rate limiter under an address flood: the service's own `Limiter`
//! (built from default settings, as `kyros serve` builds it without Redis, with its idle-eviction
//! task running) makes one decision for each of N distinct client keys; the process RSS is read
//! before, after, and after the keys went idle and the eviction task dropped them. A second flood
//! shows whether the freed memory is reused.
//!
//!   cargo run --release --example limiter_rss -- [--keys 1000000]
//!
//! Prints `key=value` lines (parsed by bench/run.sh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kyros::clock::{ManualClock, SharedClock};
use kyros::config::{Settings, Vars};
use kyros::security::rate_limit::{Limiter, Policy, Verdict};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn key(i: usize) -> String {
    // Distinct IPv4 addresses, as an address flood presents them (`ip:<addr>`).
    format!("ip:10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
        + &if i >> 24 > 0 {
            format!("-{}", i >> 24)
        } else {
            String::new()
        }
}

async fn flood(limiter: &Limiter, keys: usize, offset: usize) -> (usize, f64) {
    let started = Instant::now();
    let mut allowed = 0;
    for i in 0..keys {
        if matches!(
            limiter.check(Policy::Anonymous, &key(i + offset)).await,
            Verdict::Allowed(_)
        ) {
            allowed += 1;
        }
    }
    (allowed, started.elapsed().as_secs_f64())
}

/// Waits for the service's own eviction task (every 15 s) to empty the store.
async fn wait_evicted(limiter: &Limiter) -> f64 {
    let started = Instant::now();
    while !limiter.memory().is_empty() && started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let mut keys = 1_000_000usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--keys" => keys = it.next().and_then(|v| v.parse().ok()).expect("--keys N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut vars = Vars::new();
        vars.set("ENVIRONMENT", "local")
            .set("SECRET_KEY", "limiter-rss-bench-secret-0123456789abcdef");
        let settings = Settings::from_vars(&vars).expect("settings");
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let shared: SharedClock = clock.clone();
        let limiter = Limiter::start(&settings, None, shared);
        let rl = &settings.rate_limit;
        println!(
            "limiter_policy=anonymous {} requests / {} s, max keys {}",
            rl.requests, rl.window_secs, rl.max_local_keys
        );
        // Warm up the allocator and the runtime.
        let _ = flood(&limiter, 1000, usize::MAX / 2).await;
        limiter.memory().clear();
        let before = rss_kib();
        let (allowed, secs) = flood(&limiter, keys, 0).await;
        let tracked = limiter.memory().len();
        let after = rss_kib();
        println!("limiter_keys={keys}");
        println!("limiter_allowed={allowed}");
        println!("limiter_tracked={tracked}");
        println!(
            "limiter_decisions_per_sec={:.0}",
            keys as f64 / secs.max(1e-9)
        );
        println!("limiter_rss_before_kib={before}");
        println!("limiter_rss_full_kib={after}");
        // Every key goes idle: its TAT is in the past once the window has passed.
        clock.advance(chrono::Duration::seconds(rl.window_secs as i64 + 60));
        let waited = wait_evicted(&limiter).await;
        let idle = rss_kib();
        println!("limiter_evicted_after_s={waited:.1}");
        println!("limiter_tracked_after_eviction={}", limiter.memory().len());
        println!("limiter_rss_after_eviction_kib={idle}");
        // A second flood of other keys: is the freed memory reused rather than added to?
        let _ = flood(&limiter, keys, keys).await;
        let again = rss_kib();
        println!("limiter_rss_second_flood_kib={again}");
        clock.advance(chrono::Duration::seconds(rl.window_secs as i64 + 60));
        wait_evicted(&limiter).await;
        println!("limiter_rss_after_second_eviction_kib={}", rss_kib());
    });
}

//! WebSocket load: many concurrent authenticated connections to a running `kyros serve`, each
//! subscribed to every job event (`{"type":"subscribe","stream":"orchestrator"}`), then K events
//! published one after another (a job created through `POST /api/v1/jobs`), and for every
//! connection the delay from the moment the HTTP request is sent to the moment the event arrives.
//!
//!   cargo run --release --example wsload -- --base http://127.0.0.1:18081 --token JWT \
//!       [--conns 10000] [--events 20] [--pid SERVER_PID] [--parallel 256]
//!
//! Prints `key=value` lines (parsed by bench/run.sh): connections opened, failures, server RSS
//! with every connection open, delivered/expected, p50/p99/max fan-out latency in ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

struct Args {
    base: String,
    token: String,
    conns: usize,
    events: usize,
    pid: Option<u32>,
    parallel: usize,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8000".into(),
        token: String::new(),
        conns: 10_000,
        events: 20,
        pid: None,
        parallel: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = value(),
            "--token" => a.token = value(),
            "--conns" => a.conns = value().parse().expect("--conns"),
            "--events" => a.events = value().parse().expect("--events"),
            "--pid" => a.pid = Some(value().parse().expect("--pid")),
            "--parallel" => a.parallel = value().parse().expect("--parallel"),
            other => panic!("unknown argument {other}"),
        }
    }
    if a.token.is_empty() {
        a.token = std::env::var("KYROS_BENCH_TOKEN").expect("--token or KYROS_BENCH_TOKEN");
    }
    a
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
fn proc_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One received event: (event index, receipt time).
type Receipt = (usize, Instant);

async fn open(
    url: &str,
    token: &str,
    marker: &str,
    tx: mpsc::UnboundedSender<Receipt>,
    ready: Arc<AtomicUsize>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?,
    );
    // Small client buffers (tungstenite allocates its 128 KiB read buffer up front), so the
    // generator's own memory does not crowd the server's on a shared machine.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async_with_config(request, Some(config), false),
    )
    .await
    .map_err(|_| "connect timeout".to_owned())?
    .map_err(|e| e.to_string())?;
    ws.send(Message::text(
        r#"{"type":"subscribe","stream":"orchestrator"}"#,
    ))
    .await
    .map_err(|e| e.to_string())?;
    // Wait for the acknowledgement, so the subscription is live before any event is sent.
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no subscribe ack".to_owned())?
            .ok_or("closed before ack")?
            .map_err(|e| e.to_string())?;
        if let Message::Text(t) = msg
            && t.as_str().contains(r#""type":"subscribed""#)
        {
            break;
        }
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let marker = marker.to_owned();
    Ok(tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let at = Instant::now();
            let t = t.as_str();
            if !t.contains(r#""type":"event""#) {
                continue;
            }
            // Titles are "<marker>-<index>-end"; anything else is not ours.
            if let Some(pos) = t.find(&marker) {
                let rest = &t[pos + marker.len()..];
                if let Some(idx) = rest.split('-').nth(1).and_then(|s| s.parse().ok()) {
                    let _ = tx.send((idx, at));
                }
            }
        }
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let a = args();
    // Worker threads = cores, like the service; the generator shares the machine with it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    kyros::install_crypto_provider();
    let ws_url = format!("{}/ws", a.base.replacen("http", "ws", 1));
    let marker = format!("wsb{}", std::process::id());
    let (tx, mut rx) = mpsc::unbounded_channel::<Receipt>();
    let ready = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Arc::new(Semaphore::new(a.parallel));
    let started = Instant::now();
    let mut openers = Vec::with_capacity(a.conns);
    for _ in 0..a.conns {
        let permit = Arc::clone(&gate).acquire_owned().await.expect("semaphore");
        let (url, token, marker, tx, ready, failures) = (
            ws_url.clone(),
            a.token.clone(),
            marker.clone(),
            tx.clone(),
            Arc::clone(&ready),
            Arc::clone(&failures),
        );
        openers.push(tokio::spawn(async move {
            let r = open(&url, &token, &marker, tx, ready).await;
            drop(permit);
            match r {
                Ok(handle) => Some(handle),
                Err(e) => {
                    failures.lock().await.push(e);
                    None
                }
            }
        }));
    }
    drop(tx);
    let mut readers = Vec::with_capacity(a.conns);
    for o in openers {
        if let Ok(Some(h)) = o.await {
            readers.push(h);
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    let opened = ready.load(Ordering::Relaxed);
    let failures = failures.lock().await.clone();
    println!("ws_connections_requested={}", a.conns);
    println!("ws_connections_open={opened}");
    println!("ws_connect_failures={}", failures.len());
    if let Some(first) = failures.first() {
        println!("ws_first_failure={}", first.replace('\n', " "));
    }
    println!("ws_open_seconds={open_secs:.1}");
    // Let the server settle (allocator, timers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = a.pid.map(|p| p.to_string());
    if let Some(pid) = &pid {
        if let Some(kib) = proc_kib(pid, "VmRSS:") {
            println!("ws_server_rss_kib={kib}");
        }
        if let Some(kib) = proc_kib(pid, "VmHWM:") {
            println!("ws_server_hwm_kib={kib}");
        }
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(opened * a.events);
    let mut delivered = 0usize;
    let mut created = 0usize;
    for k in 0..a.events {
        let title = format!("{marker}-{k}-end");
        let sent = Instant::now();
        let res = http
            .post(format!("{}/api/v1/jobs", a.base))
            .bearer_auth(&a.token)
            .json(&serde_json::json!({"title": title}))
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => created += 1,
            Ok(r) => {
                println!("ws_publish_error=HTTP {}", r.status());
                continue;
            }
            Err(e) => {
                println!("ws_publish_error={e}");
                continue;
            }
        }
        // Collect this event's receipts: until every connection has it, or 10 s of silence.
        let mut got = 0usize;
        while got < opened {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((idx, at))) => {
                    let ms = if idx == k {
                        got += 1;
                        at.duration_since(sent).as_secs_f64() * 1000.0
                    } else {
                        continue;
                    };
                    latencies_ms.push(ms);
                }
                _ => break,
            }
        }
        delivered += got;
        // Events apart, so each one's latency is its own (not queued behind the previous one).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(pid) = &pid
        && let Some(kib) = proc_kib(pid, "VmHWM:")
    {
        println!("ws_server_hwm_after_kib={kib}");
    }
    latencies_ms.sort_by(f64::total_cmp);
    println!("ws_events_published={created}");
    println!("ws_delivered={delivered}");
    println!("ws_expected={}", opened * created);
    println!("ws_p50_ms={:.1}", percentile(&latencies_ms, 50.0));
    println!("ws_p99_ms={:.1}", percentile(&latencies_ms, 99.0));
    println!(
        "ws_max_ms={:.1}",
        latencies_ms.last().copied().unwrap_or(f64::NAN)
    );
    for r in readers {
        r.abort();
    }
}

//! Graceful shutdown of the real binary under load: SIGTERM stops the listener, lets requests in
//! flight finish (a slow upload included), closes WebSockets with 1001, ends event streams, and
//! writes every audit row before the process exits 0.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::processes::free_port;
use common::random_secret;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ADMIN: &str = "shutdown-admin";
const PW: &str = "graceful shutdown password";

struct Service {
    child: Child,
    dir: tempfile::TempDir,
    secret: String,
    base: String,
    port: u16,
}

impl Service {
    async fn start() -> Service {
        kyros::install_crypto_provider();
        let dir = tempfile::tempdir().expect("dir");
        let secret = random_secret();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_kyros"))
            .arg("serve")
            .env_clear()
            .env("KYROS_DATA_DIR", dir.path())
            .env("KYROS_BIND", format!("127.0.0.1:{port}"))
            .env("SECRET_KEY", &secret)
            .env("LOG_LEVEL", "WARNING")
            .env("FIRST_SUPERUSER", ADMIN)
            .env("FIRST_SUPERUSER_EMAIL", "shutdown-admin@example.org")
            .env("FIRST_SUPERUSER_PASSWORD", PW)
            .env("RATE_LIMIT_REQUESTS", "1000000")
            .env("AUTH_RATE_LIMIT_REQUESTS", "1000000")
            .env("KYROS_SHUTDOWN_GRACE_SECS", "30")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kyros");
        let service = Service {
            child,
            dir,
            secret,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/health", service.base)).send().await
                && r.status() == 200
            {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not come up");
    }

    fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "SIGTERM sent");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST /api/v1/jobs over a raw connection whose body arrives in pieces: the request is in
/// flight until the last piece. Returns the status code of the answer.
async fn slow_upload(port: u16, token: String, title: String, started: Arc<AtomicBool>) -> u16 {
    let body = json!({"title": title, "description": "x".repeat(200)}).to_string();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    let bytes = body.as_bytes();
    conn.write_all(&bytes[..10]).await.expect("first piece");
    started.store(true, Ordering::SeqCst);
    for chunk in bytes[10..].chunks(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.write_all(chunk).await.expect("piece");
    }
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.expect("answer");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_nothing() {
    let service = Service::start().await;
    // A fresh connection per request: a refused one is then a connect error, nothing else.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let res = client
        .post(format!("{}/auth/login", service.base))
        .json(&json!({"username": ADMIN, "password": PW}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    // A WebSocket and an event stream, open across the shutdown.
    let mut request = format!("ws://127.0.0.1:{}/ws", service.port)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws");
    let mut sse = client
        .get(format!("{}/api/v1/events/tail", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status(), 200);

    // Load: logins and job submissions in a loop until the service stops answering.
    let signalled = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (client, base, token, signalled) = (
            client.clone(),
            service.base.clone(),
            token.clone(),
            Arc::clone(&signalled),
        );
        load.push(tokio::spawn(async move {
            let (mut logins, mut jobs) = (0usize, 0usize);
            for i in 0.. {
                let after_signal = signalled.load(Ordering::SeqCst);
                let res = if i % 3 == 0 {
                    client
                        .post(format!("{base}/auth/login"))
                        .json(&json!({"username": ADMIN, "password": PW}))
                        .send()
                        .await
                } else {
                    client
                        .post(format!("{base}/api/v1/jobs"))
                        .bearer_auth(&token)
                        .json(&json!({"title": format!("load {worker}-{i}")}))
                        .send()
                        .await
                };
                match res {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        assert!(
                            status == 200 || status == 201,
                            "worker {worker} request {i} answered {status}"
                        );
                        if i % 3 == 0 {
                            logins += 1;
                        } else {
                            jobs += 1;
                        }
                    }
                    Err(e) => {
                        assert!(
                            after_signal || signalled.load(Ordering::SeqCst),
                            "a request failed before SIGTERM: {e}"
                        );
                        // Refused: the listener is closed (connect error), or a connection
                        // still in the kernel's accept queue is reset when it closes. Requests
                        // the service had accepted are checked by the uploads and the counts.
                        assert!(
                            e.is_connect() || e.is_request(),
                            "only new connections may fail: {e:?}"
                        );
                        assert!(e.status().is_none(), "{e:?}");
                        return (logins, jobs);
                    }
                }
            }
            unreachable!()
        }));
    }
    // Slow uploads, in flight when the signal arrives.
    let mut uploads = Vec::new();
    let mut upload_started = Vec::new();
    for n in 0..3 {
        let started = Arc::new(AtomicBool::new(false));
        upload_started.push(Arc::clone(&started));
        uploads.push(tokio::spawn(slow_upload(
            service.port,
            token.clone(),
            format!("slow upload {n}"),
            started,
        )));
    }
    while !upload_started.iter().all(|s| s.load(Ordering::SeqCst)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    signalled.store(true, Ordering::SeqCst);
    service.terminate();

    // The WebSocket is told the server is going away.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Away);
    // The event stream ends instead of holding the shutdown.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(_)) = sse.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended");
    // Every upload in flight was finished and answered.
    for upload in uploads {
        assert_eq!(upload.await.expect("upload task"), 201);
    }
    let (mut logins, mut jobs) = (1usize, 3usize);
    for worker in load {
        let (l, j) = worker.await.expect("load worker");
        logins += l;
        jobs += j;
    }
    // New connections are refused from now on, and the process exits cleanly.
    let mut service = service;
    let status = tokio::task::spawn_blocking(move || {
        let status = service.child.wait().expect("wait");
        (status, service)
    })
    .await
    .expect("join");
    let (status, service) = status;
    assert!(status.success(), "exit status {status}");
    assert!(
        reqwest::get(format!("{}/health", service.base))
            .await
            .is_err(),
        "nothing listens any more"
    );

    // Nothing lost: every accepted job is stored, every login audited.
    let mut vars = kyros::config::Vars::new();
    vars.set("KYROS_DATA_DIR", service.dir.path().display().to_string());
    vars.set("SECRET_KEY", service.secret.clone());
    let settings = kyros::config::Settings::from_vars(&vars).expect("settings");
    let db = kyros::store::Db::connect(&settings).await.expect("db");
    let rows = kyros::store::audit::recent(&db, Some("auth.login"), 100_000)
        .await
        .expect("audit");
    let successes = rows.iter().filter(|r| r.outcome == "success").count();
    assert_eq!(successes, logins, "one audit row per answered login");
    let stored = kyros::store::jobs::list(&db, None, None, 0, 100_000)
        .await
        .expect("jobs")
        .len();
    assert_eq!(stored, jobs, "one stored job per 201");
    db.close().await;
}

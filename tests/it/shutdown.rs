//! Graceful shutdown of the real binary under load: SIGTERM stops the listener, lets requests in
//! flight finish (a slow upload included), closes WebSockets with 1001, ends event streams, and
//! writes every audit row before the process exits 0.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::processes::free_port;
use crate::common::{Backend, TestApp, random_secret};
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
                        // Refused: the listener is closed. A connection the service had
                        // accepted, or the kernel had queued for it, is answered.
                        assert!(e.is_connect(), "only new connections may fail: {e:?}");
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
    let stored = kyros::store::jobs::list(&db, Default::default(), 0, 100_000)
        .await
        .expect("jobs")
        .len();
    assert_eq!(stored, jobs, "one stored job per 201");
    db.close().await;
}

/// One `GET /health` on a connection of its own, as a client sees it.
#[derive(Debug)]
enum Attempt {
    /// A complete 200 answer.
    Answered,
    /// The connect itself failed (refused, or reset while the listener closed): nothing
    /// listens any more, and the client knows its request was never sent.
    Refused,
    /// Connected, then closed or reset without a complete answer: a lost request.
    Dropped(String),
}

const HEALTH_REQUEST: &[u8] =
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// Checks that `answer` is a whole `200 {"status":"healthy"}` response, its body as long as its
/// Content-Length says.
fn check_health_answer(answer: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("no complete head in {text:?}"));
    };
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("not a 200: {text:?}"));
    }
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    if body.len() != length || body != r#"{"status":"healthy"}"# {
        return Err(format!("incomplete or wrong body: {text:?}"));
    }
    Ok(())
}

/// A connect that failed because nothing listens: refused, or reset while the listener was
/// closing (the connection never opened).
fn refused(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
    )
}

/// `think` is how long the client waits between connecting and sending its request, as one
/// that builds the request only once connected.
async fn health_on_a_new_connection(port: u16, think: Duration) -> Attempt {
    let mut conn = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(conn) => conn,
        Err(e) if refused(&e) => return Attempt::Refused,
        Err(e) => panic!("connect failed otherwise than refused: {e:?}"),
    };
    tokio::time::sleep(think).await;
    if let Err(e) = conn.write_all(HEALTH_REQUEST).await {
        return Attempt::Dropped(format!("write: {e}"));
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer))
        .await
        .expect("an answer or a close within 60 s");
    if let Err(e) = read {
        return Attempt::Dropped(format!(
            "read: {e} after {:?}",
            String::from_utf8_lossy(&answer)
        ));
    }
    match check_health_answer(&answer) {
        Ok(()) => Attempt::Answered,
        Err(e) => Attempt::Dropped(e),
    }
}

/// Polls until a new connection is refused: the service has closed its listener.
async fn wait_until_refused(port: u16) {
    for _ in 0..1000 {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if refused(&e) => return,
            // Still listening: close the probe at once so it holds nothing up.
            Ok(probe) => drop(probe),
            Err(e) => panic!("connect failed otherwise than refused: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the listener was still open 20 s after SIGTERM");
}

async fn exit_status(service: Service) -> std::process::ExitStatus {
    let mut service = service;
    tokio::task::spawn_blocking(move || service.child.wait().expect("wait"))
        .await
        .expect("join")
}

/// Sixteen clients opening a connection per request while SIGTERM arrives: every request whose
/// connection was accepted is answered in full; the only failure is a refused connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_every_connection_it_accepted() {
    let service = Service::start().await;
    let port = service.port;
    let signalled = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..16 {
        let (signalled, answered) = (Arc::clone(&signalled), Arc::clone(&answered));
        // Half the clients send at once, half a moment after connecting: at the signal some
        // accepted connections have a request in flight and some have none yet.
        let think = Duration::from_millis(if client % 2 == 0 { 0 } else { 20 });
        clients.push(tokio::spawn(async move {
            let mut dropped = Vec::new();
            for i in 0.. {
                let after_signal = signalled.load(Ordering::SeqCst);
                match health_on_a_new_connection(port, think).await {
                    Attempt::Answered => {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Attempt::Refused => {
                        assert!(
                            after_signal || signalled.load(Ordering::SeqCst),
                            "client {client} refused before SIGTERM"
                        );
                        return dropped;
                    }
                    Attempt::Dropped(why) => {
                        assert!(
                            after_signal || signalled.load(Ordering::SeqCst),
                            "client {client} request {i} lost before SIGTERM: {why}"
                        );
                        dropped.push(format!("client {client} request {i}: {why}"));
                    }
                }
            }
            unreachable!()
        }));
    }
    // Mid-run: the clients have had a few answers each.
    while answered.load(Ordering::SeqCst) < 16 * 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signalled.store(true, Ordering::SeqCst);
    service.terminate();

    let mut dropped = Vec::new();
    for client in clients {
        dropped.extend(client.await.expect("client task"));
    }
    assert!(
        dropped.is_empty(),
        "{} accepted connection(s) closed without an answer:\n{}",
        dropped.len(),
        dropped.join("\n")
    );
    let status = exit_status(service).await;
    assert!(status.success(), "exit status {status}");
}

/// A connection accepted before SIGTERM whose client has not yet said anything still gets its
/// first request answered after the listener is gone; then the connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_from_before_sigterm_is_still_answered() {
    let service = Service::start().await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", service.port))
        .await
        .expect("connect");
    service.terminate();
    wait_until_refused(service.port).await;

    // Keep-alive is not asked to end: the service ends the connection after the answer itself.
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("the connection is still open");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer))
        .await
        .expect("the connection ends after the answer")
        .expect("answered, not reset");
    check_health_answer(&answer).expect("a complete answer");

    let status = exit_status(service).await;
    assert!(status.success(), "exit status {status}");
}

/// Over TLS the same holds for a connection whose handshake has not even begun when the stop
/// comes: the handshake completes and the first request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_from_before_the_stop_is_still_answered() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let Some(mut app) = TestApp::builder(Backend::Sqlite)
        .tls(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .start()
        .await
    else {
        return;
    };
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    app.signal_shutdown();
    wait_until_refused(port).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.cert.der().clone())
        .expect("trust the test certificate");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, conn)
        .await
        .expect("the handshake completes after the stop");
    conn.write_all(HEALTH_REQUEST).await.expect("request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer))
        .await
        .expect("the connection ends after the answer")
        .expect("answered, not reset");
    check_health_answer(&answer).expect("a complete answer");
    app.stop().await;
}

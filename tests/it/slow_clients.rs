//! Slow and idle clients: a client that trickles its headers (slowloris) or connects and says
//! nothing is disconnected after the header timeout, and hundreds of them do not keep the service
//! from answering others.

use std::time::Duration;

use crate::common::{Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app() -> Option<TestApp> {
    TestApp::builder(Backend::Sqlite)
        .var("KYROS_HEADER_READ_TIMEOUT_SECS", "1")
        .start()
        .await
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent before closing.
async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept a slow client for 30 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_disconnected() {
    let Some(app) = app().await else {
        return;
    };
    let mut conn = TcpStream::connect(addr(&app)).await.expect("connect");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("first line");
    // One more header line every 300 ms, never the blank line that ends them.
    let trickle = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if conn
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(40), trickle)
        .await
        .expect("the trickle ended");
    let answer = until_closed(&mut conn).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "no answer but a timeout: {text}"
    );
    // Others are served all along.
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_connections_are_closed_and_do_not_block_others() {
    let Some(app) = app().await else {
        return;
    };
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(addr(&app)).await.expect("connect"));
    }
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), 200, "served beside 500 silent connections");
    for conn in &mut idle {
        let answer = until_closed(conn).await;
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // A keep-alive connection that goes quiet after a request is closed the same way.
    let mut conn = TcpStream::connect(addr(&app)).await.expect("connect");
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let answer = until_closed(&mut conn).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

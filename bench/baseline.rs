//! The physical limit of this machine for the service's stack: a bare axum handler answering
//! `GET /health` with the service's exact body (`{"status":"healthy"}`), served by the same
//! axum / axum-server / hyper / tokio versions and the same runtime configuration as `kyros serve`
//! (multi-threaded runtime, one worker per core, connect-info make-service), and no middleware.
//!
//!   cargo run --release --example baseline -- 127.0.0.1:18080
//!
//! Used by `bench/run.sh` as the reference row of docs/benchmarks.md.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

async fn health() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = std::net::TcpListener::bind(addr)?;
            eprintln!("baseline listening on {}", listener.local_addr()?);
            // The bare baseline is exactly what the product must not be: an undocumented route.
            #[allow(clippy::disallowed_methods)]
            let app = Router::new()
                .route("/health", get(health))
                .into_make_service_with_connect_info::<SocketAddr>();
            axum_server::from_tcp(listener)?.serve(app).await
        })
}

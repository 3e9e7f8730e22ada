//! Kyros orchestrator: jobs, agents and live events behind a hardened security layer.

#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod http;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use config::Settings;
pub use http::router;
pub use state::AppState;

/// Builds the state, creates the first admin if configured, and serves until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let state = AppState::build(settings).await?;
    auth::accounts::bootstrap_first_superuser(&state).await?;
    let listener = TcpListener::bind(state.settings.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {}", state.settings.bind, e.kind()))?;
    tracing::info!(
        address = %listener.local_addr()?,
        environment = %state.settings.environment,
        database = state.db.engine(),
        "kyros is listening"
    );
    serve_on(state.clone(), listener, shutdown_signal()).await?;
    state.db.close().await;
    Ok(())
}

/// Serves the router on an already bound listener until `shutdown` completes.
pub async fn serve_on(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

//! Kyros orchestrator: jobs, agents and live events behind a hardened security layer.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod context;
pub mod cookies;
pub mod crypto;
pub mod error;
pub mod http;
pub mod limiter;
pub mod model;
pub mod orchestrator;
pub mod reload;
pub mod security;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;

use std::future::Future;

use axum_server::tls_rustls::RustlsConfig;

pub use config::Settings;
pub use http::router;
pub use state::AppState;

/// Builds the state, creates the first admin if configured, and serves until SIGINT/SIGTERM.
pub async fn serve(
    settings: Settings,
    log_filter: Option<state::LogFilterReload>,
) -> anyhow::Result<()> {
    install_crypto_provider();
    let tls = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert), Some(key)) => {
            Some(RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                config::ConfigError(format!(
                    "TLS_CERT_FILE/TLS_KEY_FILE could not be loaded: {}",
                    e.kind()
                ))
            })?)
        }
        _ => None,
    };
    let state = AppState::build(settings).await?;
    if let Some(log_filter) = log_filter {
        let _ = state.log_filter.set(log_filter);
    }
    auth::accounts::bootstrap_first_superuser(&state).await?;
    auth::api_keys::bootstrap_legacy_api_keys(&state).await?;
    let listener = std::net::TcpListener::bind(state.settings().bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {}", state.settings().bind, e.kind()))?;
    tracing::info!(
        address = %listener.local_addr()?,
        tls = tls.is_some(),
        environment = %state.settings().environment,
        database = state.db.engine(),
        "kyros is listening"
    );
    serve_on(state.clone(), listener, tls, shutdown_signal()).await?;
    state.audit.flush().await;
    state.db.close().await;
    Ok(())
}

/// rustls needs one process-wide crypto provider; ring is the one this build ships.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves the router on an already bound listener (over TLS when `tls` is given) until
/// `shutdown` completes; every connection accepted by then still gets its first request answered,
/// within the grace period (see [`server`]). Settings reload on `SIGHUP` and when their files
/// change (see [`reload`]); a reload loads the certificate of `tls` again.
pub async fn serve_on(
    state: AppState,
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(tls) = &tls {
        let _ = state.tls.set(tls.clone());
    }
    reload::spawn_signal_listener(state.downgrade());
    reload::spawn_watcher(state.downgrade());
    server::serve(state, listener, tls, shutdown).await
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

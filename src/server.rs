//! The accept loop: HTTP/1 and HTTP/2 (with upgrades, for WebSockets) over plain TCP or TLS, and
//! a shutdown that answers every connection it accepted.
//!
//! The rule on shutdown: a connection the service has accepted — or that the kernel has queued
//! for it — gets its first request served before it is closed; only connections made after the
//! listener is gone are refused. Clients that open a connection per request (load balancers,
//! health checkers, scripts) otherwise see "connection closed without response" for a request
//! they could not know was unwelcome, and cannot safely retry a POST. A refused connect they can.
//!
//! axum-server, which served before, broke that rule in two ways: on graceful shutdown it stopped
//! waiting for the first request (and the TLS handshake) and let hyper close the still idle
//! connection at once, and it dropped its listener with completed connections still in the
//! kernel's accept queue, which resets them. Hence this loop, on hyper-util directly:
//!
//! 1. Until the signal, accept; each connection runs in its own task.
//! 2. On the signal, tell WebSockets and event streams to end (`AppState::shutdown`), take every
//!    connection still queued in the kernel (non-blocking accepts until none is left), then close
//!    the listener: later connects are refused.
//! 3. A connection that has not dispatched a request yet keeps waiting for its first one (bounded
//!    by the first-request timeout, as always); once one is dispatched, hyper's graceful shutdown
//!    finishes it and closes the connection instead of keeping it alive.
//! 4. Connections get `KYROS_SHUTDOWN_GRACE_SECS` to end; whatever is left is then dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::routing::future::RouteFuture;
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::Service;

use crate::security::client_ip::TlsTransport;
use crate::{AppState, router};

/// What every connection task shares.
struct Shared {
    app: Router,
    tls: Option<RustlsConfig>,
    http: Builder<TokioExecutor>,
    /// How long a connection gets for its TLS handshake, and then for its first request.
    first_request_timeout: Duration,
    /// Becomes `true` on the shutdown signal.
    stopping: watch::Receiver<bool>,
}

/// Serves the router on `listener` (over TLS when `tls` is given) until `shutdown` completes,
/// then shuts down as the module documentation describes.
pub async fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    // A client gets this long to send its first request and every later request's headers (an
    // idle keep-alive connection as much to start the next one): slow or silent clients cannot
    // hold connections forever.
    let header_timeout = Duration::from_secs(state.settings().header_read_timeout_secs);
    let grace = Duration::from_secs(state.settings().shutdown_grace_secs);
    let mut http = Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    http.http2().timer(TokioTimer::new());
    let (stop, stopping) = watch::channel(false);
    let shared = Arc::new(Shared {
        app: router(state.clone()),
        tls,
        http,
        first_request_timeout: header_timeout,
        stopping,
    });

    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections (before accepting more, so a flood cannot starve this)
            // so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(Arc::clone(&shared), stream, peer));
                }
                Err(e) => accept_failed(&e).await,
            },
        }
    }

    // WebSockets and event streams close themselves (1001); a graceful HTTP shutdown would
    // wait for them forever.
    state.shutdown.trigger();
    stop.send_replace(true);
    match listener.into_std() {
        Ok(listener) => drain_backlog(listener, &shared, &mut connections),
        Err(e) => tracing::warn!(error = %e, "the listener could not be drained"),
    }

    let ended = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if ended.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace period over; closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Connections the kernel completed but nobody accepted yet would be reset when the listener
/// closes: takes them all (non-blocking, until none is left), then closes it. Later connects are
/// refused, which a client can tell from a lost request.
fn drain_backlog(
    listener: std::net::TcpListener,
    shared: &Arc<Shared>,
    connections: &mut JoinSet<()>,
) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => match into_tokio(stream) {
                Ok(stream) => {
                    connections.spawn(serve_connection(Arc::clone(shared), stream, peer));
                }
                Err(e) => tracing::warn!(error = %e, "a queued connection could not be served"),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "accepting the queued connections failed");
                break;
            }
        }
    }
    drop(listener);
}

/// An accepted socket from the non-blocking drain, handed to the runtime.
fn into_tokio(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    // Accepted sockets do not inherit the listener's non-blocking mode.
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

/// Errors that concern one connection (the client gave up before it was accepted), not the
/// listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn accept_failed(e: &io::Error) {
    if is_per_connection(e) {
        return;
    }
    // Typically out of file descriptors: back off instead of spinning; the listener stays open
    // and the service recovers when connections close.
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let Some(tls) = &shared.tls else {
        return serve_http(&shared, stream, peer, false).await;
    };
    // The handshake is not cut short by a shutdown: the client connected in time.
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    match tokio::time::timeout(shared.first_request_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(&shared, stream, peer, true).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve_http<I>(shared: &Shared, io: I, peer: SocketAddr, tls: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let dispatched = Arc::new(Notify::new());
    let service = ConnectionService {
        app: shared.app.clone(),
        peer,
        tls,
        dispatched: Arc::clone(&dispatched),
    };
    let connection = shared
        .http
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);

    // Until the first request is dispatched, a shutdown changes nothing: the client connected
    // before it and is owed an answer. Silent clients are cut after the timeout as always (hyper's
    // header timeout covers HTTP/1 headers only, not the protocol detection before them).
    tokio::select! {
        _ = connection.as_mut() => return,
        () = dispatched.notified() => {}
        () = tokio::time::sleep(shared.first_request_timeout) => return,
    }
    let mut stopping = shared.stopping.clone();
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    // Finishes the request in flight (every stream, on HTTP/2), then closes: no further request
    // is read on this connection.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The router as one connection's hyper service: adds what handlers know about the connection.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    peer: SocketAddr,
    tls: bool,
    dispatched: Arc<Notify>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let mut request = request.map(axum::body::Body::new);
        // The client-IP logic reads the peer from `ConnectInfo`, HTTPS enforcement the transport
        // from `TlsTransport`.
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if self.tls {
            request.extensions_mut().insert(TlsTransport);
        }
        // A stored permit: the connection task sees it even if it is not waiting yet.
        self.dispatched.notify_one();
        let request: Request = request;
        self.app.clone().call(request)
    }
}

//! `/ws`: the live channel. Authenticated by an `Authorization` header (token or API key), by a
//! short-lived single-use ticket from `POST /auth/ws-ticket`, by the session cookie, or by the
//! original `?token=` (kept for compatibility; query strings never reach the logs). A browser's
//! `Origin` must be the service's own or an allowed one. The handshake passes through the same
//! layers as every request (HTTPS, rate limit).
//!
//! Messages keep the original formats (`connection`, echo as `message`, `error`), plus
//! `subscribe`/`unsubscribe` to a job's or task's events (`{"type":"subscribe","task_id":…}`)
//! or to the collaboration log (`{"type":"subscribe","stream":"collab"}`) or to every job event
//! the caller may see (`{"type":"subscribe","stream":"orchestrator"}`), and `ping`/`pong`.
//! The connection holds the credential that opened it (`auth::liveness`): it is closed with 1008
//! within a second of that credential's revocation or expiry on any instance (a ticket's: the
//! credential that minted it), of a change of the user's token generation or of disabling; what
//! it delivers follows the user's current role.

use std::collections::HashSet;
use std::time::Duration;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::extract::Query;
use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
    rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::auth::no_store;
use super::events::{collab_json, orchestrator_json};
use crate::auth::liveness::{self, Channel, Liveness};
use crate::auth::principal::{CurrentUser, user_from_token};
use crate::auth::rbac::UserPrincipal;
use crate::auth::tickets::{self, TICKET_SECS};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::model::User;
use crate::orchestrator::events::{Backlog, EventFilter, EventRow};
use crate::orchestrator::events::{COLLAB, ORCHESTRATOR};
use crate::security::csrf::is_cross_site;
use crate::state::AppState;

pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const READ_BUFFER_BYTES: usize = 4 * 1024;
const WRITE_BUFFER_BYTES: usize = 8 * 1024;
const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// Client messages allowed per second on one connection.
const MESSAGES_PER_SECOND: u32 = 20;
const PING_EVERY: Duration = Duration::from_secs(30);

pub fn routes() -> ApiRouter {
    access(Access::Ticket, ApiRouter::new().routes(routes!(upgrade))).merge(access(
        Access::Login,
        ApiRouter::new().routes(routes!(ticket)),
    ))
}

/// A WebSocket ticket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ticket {
    /// Single use, for `GET /ws?ticket=…`.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: i64,
}

/// A ticket for one WebSocket connection, valid for a minute (for browsers, which cannot set
/// headers on a WebSocket). `Cache-Control: no-store`.
#[utoipa::path(
    post, path = "/auth/ws-ticket", tag = "websocket",
    responses((status = 200, description = "The ticket", body = Ticket)),
)]
async fn ticket(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
) -> Result<Response, ApiError> {
    let ticket = tickets::mint(&state, &current).await?;
    Ok(no_store(
        Json(Ticket {
            ticket,
            expires_in: TICKET_SECS,
        })
        .into_response(),
    ))
}

/// Credentials of a handshake that carries no header.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// An access token (the original's way; prefer a ticket).
    token: Option<String>,
    /// A ticket from `POST /auth/ws-ticket`.
    ticket: Option<String>,
}

/// The live channel (WebSocket upgrade): job and collaboration events as they happen, and the
/// original's message formats (`connection`, `message`, `error`, `ping`/`pong`,
/// `subscribe`/`unsubscribe`). A browser's `Origin` must be the service's or an allowed one.
#[utoipa::path(
    get, path = "/ws", tag = "websocket",
    params(WsQuery),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorEnvelope),
        (status = 401, description = "No valid credential, ticket or token", body = ErrorEnvelope),
        (status = 403, description = "Cross-site Origin", body = ErrorEnvelope),
    ),
)]
async fn upgrade(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Cross-site WebSocket hijacking: a browser page of a foreign origin is refused, whatever it carries.
    let https = ctx.is_some_and(|Extension(c)| c.https);
    if headers.contains_key(header::ORIGIN)
        && is_cross_site(&headers, https, &state.settings().cors_origins)
    {
        return Err(ApiError::forbidden("Origin not allowed"));
    }
    let (user, channel) = match current {
        Some(c) => {
            let channel = Channel::open(&state, &c).await;
            (c.user, channel)
        }
        None => match (q.ticket, q.token) {
            (Some(ticket), _) => tickets::redeem(&state, &ticket)
                .await?
                .ok_or_else(|| ApiError::unauthorized("Invalid or used ticket"))?,
            (None, Some(token)) => match user_from_token(&state, &token).await? {
                Ok(c) if c.claims.is_some() => {
                    let channel = Channel::open(&state, &c).await;
                    (c.user, channel)
                }
                Ok(_) => return Err(ApiError::invalid_credentials()),
                Err(_) => return Err(ApiError::unauthorized("Invalid token")),
            },
            (None, None) => return Err(ApiError::unauthorized("Missing authentication token")),
        },
    };
    let ws =
        ws.map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "WebSocket upgrade required"))?;
    Ok(ws
        // tungstenite reserves its read buffer up front (128 KiB by default): at thousands of
        // connections that is most of the memory. Messages are small; buffers grow if needed.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        // A client that stops reading is cut off instead of buffering without bound.
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(state, socket, user, channel)))
}

fn now_iso() -> String {
    Utc::now().to_rfc3339()
}

fn text(v: Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

fn error(message: &str) -> Message {
    text(json!({"type": "error", "message": message}))
}

#[derive(Default)]
struct Subscriptions {
    collab: bool,
    /// Every orchestrator event the user may see (a console's job list).
    orchestrator: bool,
    tasks: HashSet<String>,
}

impl Subscriptions {
    fn wants(&self, e: &EventRow) -> bool {
        match e.stream.as_str() {
            COLLAB => self.collab,
            ORCHESTRATOR => {
                self.orchestrator || e.task_id.as_ref().is_some_and(|t| self.tasks.contains(t))
            }
            _ => false,
        }
    }
}

fn may_see(user: &User, e: &EventRow) -> bool {
    crate::auth::policy::may_see_event(user, &e.stream, e.owner_id)
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

async fn run(state: AppState, mut socket: WebSocket, mut user: User, mut channel: Channel) {
    let hello = json!({"type": "connection", "status": "connected", "user": user.username, "timestamp": now_iso()});
    if socket.send(text(hello)).await.is_err() {
        return;
    }
    let mut events = state.events.subscribe();
    // Where a catch-up from the log starts if this connection falls behind the live bus: the
    // newest event when it subscribed, then the newest one it was offered.
    let Ok(mut last_seen) = crate::orchestrator::events::newest_id(&state.db).await else {
        close(socket, 1011, "Event log unavailable").await;
        return;
    };
    // Events up to here were delivered from the log by a catch-up; the bus repeats some of them.
    let mut replayed_to = 0i64;
    let mut subs = Subscriptions::default();
    let mut check = tokio::time::interval(liveness::CHECK_EVERY);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut unanswered_pings = 0;
    let (mut window_start, mut in_window) = (tokio::time::Instant::now(), 0u32);
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let reply = match message {
                    Message::Text(t) => {
                        if window_start.elapsed() >= Duration::from_secs(1) {
                            (window_start, in_window) = (tokio::time::Instant::now(), 0);
                        }
                        in_window += 1;
                        if in_window > MESSAGES_PER_SECOND {
                            Some(error("Rate limit exceeded"))
                        } else {
                            handle(&state, &user, &mut subs, t.as_str()).await
                        }
                    }
                    Message::Binary(_) => Some(error("Binary frames are not supported; send JSON text")),
                    Message::Pong(_) => {
                        unanswered_pings = 0;
                        None
                    }
                    Message::Ping(_) => None,
                    Message::Close(_) => return,
                };
                if let Some(reply) = reply
                    && socket.send(reply).await.is_err()
                {
                    return;
                }
            }
            event = events.recv() => {
                if let Ok(e) = &event {
                    last_seen = last_seen.max(e.id);
                }
                match event {
                    Ok(e) if e.id > replayed_to && subs.wants(&e) && may_see(&user, &e) => {
                        // Rendered once per event, whatever the number of connections.
                        let frame = e.rendered(|row| {
                            let body = if row.stream == COLLAB { collab_json(row) } else { orchestrator_json(row) };
                            json!({"type": "event", "stream": row.stream, "event": body}).to_string()
                        });
                        let Ok(frame) = Utf8Bytes::try_from(frame) else { continue };
                        if socket.send(Message::Text(frame)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Fell behind the live bus: deliver what was missed from the log, in order;
                    // if the log cannot be read, close so the client reconnects and reloads
                    // (never a silent gap).
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let mut backlog = Backlog::after(&EventFilter::default(), last_seen);
                        loop {
                            let page = match backlog.next_page(&state.db).await {
                                Ok(Some(page)) => page,
                                Ok(None) => break,
                                Err(_) => {
                                    close(socket, 1011, "Event log unavailable").await;
                                    return;
                                }
                            };
                            for e in page {
                                last_seen = last_seen.max(e.id);
                                if !(subs.wants(&e) && may_see(&user, &e)) {
                                    continue;
                                }
                                let body = if e.stream == COLLAB { collab_json(&e) } else { orchestrator_json(&e) };
                                let frame = json!({"type": "event", "stream": e.stream, "event": body});
                                if socket.send(text(frame)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        replayed_to = last_seen;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            _ = state.shutdown.wait() => {
                close(socket, 1001, "Server shutting down").await;
                return;
            }
            _ = check.tick() => {
                // The credential that opened the socket, re-evaluated; what is delivered follows
                // the user's current role.
                match liveness::check(&state, &mut channel).await {
                    Liveness::Live(now) => user = now,
                    Liveness::Ended(reason) => {
                        close(socket, 1008, reason).await;
                        return;
                    }
                    Liveness::Unknown => {}
                }
            }
            _ = ping.tick() => {
                if unanswered_pings >= 2 {
                    close(socket, 1001, "No pong").await;
                    return;
                }
                unanswered_pings += 1;
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One client text message; the reply, if any.
async fn handle(
    state: &AppState,
    user: &User,
    subs: &mut Subscriptions,
    raw: &str,
) -> Option<Message> {
    let value: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(_) => return Some(error("Invalid JSON format")),
    };
    let Value::Object(obj) = &value else {
        return Some(error("Invalid message format: must be JSON object"));
    };
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let target = obj
        .get("task_id")
        .or_else(|| obj.get("job_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stream = match obj.get("stream").and_then(Value::as_str) {
        Some(s @ (COLLAB | ORCHESTRATOR)) => Some(s),
        _ => None,
    };
    match kind {
        "ping" => Some(text(json!({"type": "pong", "timestamp": now_iso()}))),
        "subscribe" | "unsubscribe" if stream.is_some() || target.is_some() => {
            if kind == "subscribe"
                && let Some(id) = &target
                && !crate::orchestrator::may_follow(state, user, id).await
            {
                return Some(error("Not found"));
            }
            let on = kind == "subscribe";
            match stream {
                Some(COLLAB) => subs.collab = on,
                // With a job id, the stream only names where that job's events live.
                Some(_) if target.is_none() => subs.orchestrator = on,
                _ => {}
            }
            if let Some(id) = &target {
                if on {
                    subs.tasks.insert(id.clone());
                } else {
                    subs.tasks.remove(id);
                }
            }
            Some(text(
                json!({"type": format!("{kind}d"), "task_id": target, "stream": stream}),
            ))
        }
        "subscribe" | "unsubscribe" => Some(error("subscribe needs task_id, job_id or stream")),
        _ => Some(text(
            json!({"type": "message", "data": value, "timestamp": now_iso(), "user": user.username}),
        )),
    }
}

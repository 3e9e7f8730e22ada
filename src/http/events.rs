//! Events: the collaboration log (`/api/v1/events`) and orchestrator events
//! (`/api/v1/orchestrator/events`), as JSON and as real server-sent event streams: `id:` lines,
//! `Last-Event-ID` resume, heartbeats, new events streamed as they happen (from any instance),
//! the stream closed when the client goes away. Users see the orchestrator events of their own
//! jobs; moderators and administrators see all.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use super::extract::Query;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::body::JsonObject;
use crate::auth::api_keys::Scope;
use crate::auth::liveness::{self, Channel, Liveness};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::require_scope;
use crate::clock::at_storage_precision;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::etag::etag;
use crate::orchestrator::events::{self as store, Backlog, EventFilter, EventRow};
use crate::orchestrator::events::{COLLAB, NewEvent, ORCHESTRATOR};
use crate::state::AppState;

const BACKLOG_MAX: i64 = 1000;
const HEARTBEAT: Duration = Duration::from_secs(15);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", post(append))
        .route("/api/v1/events/", post(append))
        .route("/api/v1/events/tail", get(tail))
        .route("/api/v1/orchestrator/events", get(orchestrator_events))
        .route(
            "/api/v1/orchestrator/events/stream",
            get(orchestrator_stream),
        )
}

/// The collaboration event as the original wrote it to its log.
pub fn collab_json(e: &EventRow) -> Value {
    json!({
        "id": e.id,
        "ts": e.at,
        "event": e.event,
        "actor": e.actor,
        "target": e.target,
        "details": e.payload.0,
    })
}

/// An orchestrator event: id, event, timestamp, task_id, run_id, then its own fields.
pub fn orchestrator_json(e: &EventRow) -> Value {
    let mut map = match &e.payload.0 {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other.clone());
            m
        }
    };
    map.insert("id".into(), json!(e.id));
    map.insert("event".into(), json!(e.event));
    map.insert("timestamp".into(), json!(e.at));
    map.insert("task_id".into(), json!(e.task_id));
    map.insert("run_id".into(), json!(e.run_id));
    Value::Object(map)
}

async fn append(
    State(state): State<AppState>,
    current: CurrentUser,
    body: JsonObject,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::EventsWrite)?;
    let mut fields = body.fields();
    let event = fields.string("event", 100);
    let target = fields.string("target", 1024);
    let details = match body.0.get("details") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) if v.to_string().len() <= 64 * 1024 => v.clone(),
        Some(Value::Object(_)) => {
            fields.error(
                "details",
                "too_long",
                "details must be at most 64 KiB of JSON",
            );
            Value::Null
        }
        Some(_) => {
            fields.error("details", "dict_type", "Input should be a valid dictionary");
            Value::Null
        }
    };
    fields.finish()?;
    let (Some(event), Some(target)) = (event, target) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    if event.trim().is_empty() {
        return Err(ApiError::validation(vec![FieldError::body(
            "event",
            "string_too_short",
            "String should have at least 1 character",
        )]));
    }
    let row = state
        .events
        .publish(
            &state.db,
            at_storage_precision(state.clock.now()),
            NewEvent {
                stream: COLLAB,
                event,
                actor: Some(current.user.email.clone()),
                target: Some(target),
                task_id: None,
                run_id: None,
                owner_id: None,
                payload: details,
            },
        )
        .await?;
    let mut response = Json(json!({"ok": true})).into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(&collab_json(&row))) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Who may see which orchestrator events.
fn owner_scope(current: &CurrentUser) -> Option<uuid::Uuid> {
    crate::auth::policy::owner_filter(&current.user)
}

fn matches(filter: &EventFilter, e: &EventRow) -> bool {
    filter.stream.as_deref().is_none_or(|s| s == e.stream)
        && filter
            .task_id
            .as_deref()
            .is_none_or(|t| e.task_id.as_deref() == Some(t))
        && filter
            .run_id
            .as_deref()
            .is_none_or(|r| e.run_id.as_deref() == Some(r))
        && filter.owner_id.is_none_or(|o| e.owner_id == Some(o))
}

/// An SSE response: the backlog (after `Last-Event-ID`, or the latest events), then — unless
/// `once` — every new matching event, with heartbeats, until the client disconnects.
fn stream(
    state: AppState,
    current: &CurrentUser,
    filter: EventFilter,
    resume: Option<i64>,
    once: bool,
    render: fn(&EventRow) -> Value,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    // Subscribe before reading the backlog, so nothing falls between the two.
    let mut live = state.events.subscribe();
    let current = current.clone();
    tokio::spawn(async move {
        let mut channel = Channel::open(&state, &current).await;
        let opened_role = current.user.role;
        let frame = |e: &EventRow| {
            Event::default()
                .id(e.id.to_string())
                .data(render(e).to_string())
        };
        let mut sent: HashSet<i64> = HashSet::new();
        let mut last = resume.unwrap_or(0);
        // A resume delivers *everything* after the given id, page by page; without one the
        // stream starts with the newest page (a tail).
        // A resume delivers *everything* after the given id, page by page; without one the
        // stream starts with the newest page (a tail). A failed read ends the stream: the client
        // resumes from its last id instead of silently missing what could not be read.
        let mut backlog = resume.map(|after| Backlog::after(&filter, after));
        let mut tail = match &backlog {
            Some(_) => None,
            None => match store::latest(&state.db, &filter, BACKLOG_MAX).await {
                Ok(events) => Some(events),
                Err(_) => return,
            },
        };
        loop {
            let events = match (&mut backlog, tail.take()) {
                (_, Some(events)) => events,
                (Some(backlog), None) => match backlog.next_page(&state.db).await {
                    Ok(Some(events)) => events,
                    Ok(None) => break,
                    Err(_) => return,
                },
                (None, None) => break,
            };
            for e in events {
                last = last.max(e.id);
                sent.insert(e.id);
                if tx.send(Ok(frame(&e))).await.is_err() {
                    return;
                }
            }
            if sent.len() > 10_000 {
                sent.retain(|id| *id > last - 5_000);
            }
        }
        if once {
            return;
        }
        // The stream ends when the credentials that opened it end (expiry, revocation, logout).
        let mut check = tokio::time::interval(liveness::CHECK_EVERY);
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                // The process is stopping: the client reconnects elsewhere with Last-Event-ID.
                _ = state.shutdown.wait() => return,
                // The credential that opened the stream, re-evaluated (`auth::liveness`). The
                // stream's filter was chosen for the role it opened with: a changed role ends it,
                // and the client resumes (Last-Event-ID) with what the new role may see.
                _ = check.tick() => {
                    match liveness::check(&state, &mut channel).await {
                        Liveness::Live(user) if user.role == opened_role => {}
                        Liveness::Live(_) | Liveness::Ended(_) => return,
                        Liveness::Unknown => {}
                    }
                    continue;
                }
                next = live.recv() => next,
            };
            let events = match next {
                Ok(e) => vec![(*e).clone()],
                // Fell behind: catch up from the log, every page of it, instead of losing events;
                // if the log cannot be read, end the stream so the client resumes.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let mut backlog = Backlog::after(&filter, last);
                    let mut caught_up = Vec::new();
                    loop {
                        match backlog.next_page(&state.db).await {
                            Ok(Some(page)) => caught_up.extend(page),
                            Ok(None) => break,
                            Err(_) => return,
                        }
                    }
                    caught_up
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for e in events {
                if !matches(&filter, &e) || !sent.insert(e.id) {
                    continue;
                }
                last = last.max(e.id);
                if sent.len() > 10_000 {
                    sent.retain(|id| *id > last - 5_000);
                }
                if tx.send(Ok(frame(&e))).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut response = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[derive(Debug, Deserialize)]
struct TailQuery {
    once: Option<String>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(str::to_ascii_lowercase).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

async fn tail(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<TailQuery>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::EventsRead)?;
    let filter = EventFilter {
        stream: Some(COLLAB.into()),
        ..Default::default()
    };
    Ok(stream(
        state,
        &current,
        filter,
        last_event_id(&headers),
        truthy(q.once.as_deref()),
        collab_json,
    ))
}

#[derive(Debug, Deserialize)]
struct OrchestratorQuery {
    task_id: Option<String>,
    run_id: Option<String>,
    once: Option<String>,
}

fn orchestrator_filter(current: &CurrentUser, q: &OrchestratorQuery) -> EventFilter {
    EventFilter {
        stream: Some(ORCHESTRATOR.into()),
        task_id: q.task_id.clone().filter(|s| !s.is_empty()),
        run_id: q.run_id.clone().filter(|s| !s.is_empty()),
        owner_id: owner_scope(current),
        after_id: 0,
    }
}

async fn orchestrator_events(
    State(state): State<AppState>,
    current: CurrentUser,
    Query(q): Query<OrchestratorQuery>,
) -> Result<Json<Value>, ApiError> {
    require_scope(&current, Scope::EventsRead)?;
    let filter = orchestrator_filter(&current, &q);
    if filter.task_id.is_none() && filter.run_id.is_none() {
        return Err(ApiError::bad_request(
            "Either task_id or run_id must be provided",
        ));
    }
    let rows = store::latest(&state.db, &filter, BACKLOG_MAX).await?;
    Ok(Json(
        json!({"events": rows.iter().map(orchestrator_json).collect::<Vec<_>>()}),
    ))
}

async fn orchestrator_stream(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<OrchestratorQuery>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::EventsRead)?;
    let filter = orchestrator_filter(&current, &q);
    Ok(stream(
        state,
        &current,
        filter,
        last_event_id(&headers),
        truthy(q.once.as_deref()),
        orchestrator_json,
    ))
}

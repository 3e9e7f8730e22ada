//! Events: the collaboration log (`/api/v1/events`) and orchestrator events
//! (`/api/v1/orchestrator/events`), as JSON and as real server-sent event streams: `id:` lines,
//! `Last-Event-ID` resume, heartbeats, new events streamed as they happen (from any instance),
//! the stream closed when the client goes away. Users see the orchestrator events of their own
//! jobs; moderators and administrators see all.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::extract::{Header, HeaderField, Json, Query};
use crate::auth::liveness::{self, Channel, Liveness};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::{Authorized, EventsRead, EventsWrite};
use crate::clock::at_storage_precision;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::etag::etag;
use crate::orchestrator::events::{self as store, Backlog, EventFilter, EventRow};
use crate::orchestrator::events::{COLLAB, NewEvent, ORCHESTRATOR};
use crate::state::AppState;

const BACKLOG_MAX: i64 = 1000;
const HEARTBEAT: Duration = Duration::from_secs(15);

pub fn routes() -> ApiRouter {
    access(
        Access::Any,
        ApiRouter::new()
            .routes(routes!(append))
            .routes(routes!(append_alias))
            .routes(routes!(tail))
            .routes(routes!(orchestrator_events))
            .routes(routes!(orchestrator_stream)),
    )
}

/// `Last-Event-ID` (the SSE resume point): the id of the last event the client received.
#[derive(Debug, Clone, Copy)]
pub struct LastEventId(pub i64);

impl HeaderField for LastEventId {
    const NAME: &'static str = "last-event-id";
    const INVALID: (&'static str, &'static str) = (
        "int_parsing",
        "Input should be a valid integer, unable to parse string as an integer",
    );
    fn parse(value: &str) -> Option<Self> {
        value.parse().ok().map(LastEventId)
    }
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

/// A collaboration event to append.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EventInput {
    /// The event name; not blank.
    #[schema(min_length = 1, max_length = 100)]
    pub event: String,
    /// What it is about.
    #[schema(max_length = 1024)]
    pub target: String,
    /// Free-form JSON object, at most 64 KiB once serialized.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Map<String, Value>>,
}

/// The original's acknowledgement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ack {
    /// Always `true`.
    pub ok: bool,
}

/// Append a collaboration event (actor: the caller's email).
#[utoipa::path(
    post, path = "/api/v1/events", tag = "events",
    request_body = EventInput,
    responses((status = 200, description = "Appended", body = Ack,
               headers(("ETag" = String, description = "the event's version")))),
)]
async fn append(
    State(state): State<AppState>,
    caller: Authorized<EventsWrite>,
    Json(body): Json<EventInput>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    if body.event.trim().is_empty() {
        errors.push(FieldError::body(
            "event",
            "string_too_short",
            "String should have at least 1 character",
        ));
    }
    let details = Value::Object(body.details.unwrap_or_default());
    if details.to_string().len() > 64 * 1024 {
        errors.push(FieldError::body(
            "details",
            "too_long",
            "details must be at most 64 KiB of JSON",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let row = state
        .events
        .publish(
            &state.db,
            at_storage_precision(state.clock.now()),
            NewEvent {
                stream: COLLAB,
                event: body.event,
                actor: Some(caller.user.email.clone()),
                target: Some(body.target),
                task_id: None,
                run_id: None,
                owner_id: None,
                payload: details,
            },
        )
        .await?;
    let mut response = axum::Json(Ack { ok: true }).into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(&collab_json(&row))) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

/// `POST /api/v1/events/`: the original's path, the same operation as `POST /api/v1/events`.
#[utoipa::path(
    post, path = "/api/v1/events/", tag = "events",
    request_body = EventInput,
    responses((status = 200, description = "Appended", body = Ack,
               headers(("ETag" = String, description = "the event's version")))),
)]
async fn append_alias(
    state: State<AppState>,
    caller: Authorized<EventsWrite>,
    body: Json<EventInput>,
) -> Result<Response, ApiError> {
    append(state, caller, body).await
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

/// Whether the stream ends after the backlog.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TailQuery {
    /// `1`, `true`, `yes` or `on`: send the backlog, then close (no live events).
    once: Option<String>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(str::to_ascii_lowercase).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

/// One server-sent event of a stream (RFC-less, WHATWG HTML §9.2): `id:` is the event id to
/// resume after (`Last-Event-ID`), `data:` the event as JSON. `: heartbeat` comments in between
/// are not events.
#[derive(Debug, Serialize, ToSchema)]
pub struct SseEvent {
    /// The event id (an integer, as text).
    pub id: Option<String>,
    /// The event type (unset: `message`).
    pub event: Option<String>,
    /// The event as JSON text.
    pub data: Option<String>,
    /// Reconnection delay in milliseconds (never sent).
    pub retry: Option<i64>,
}

/// The description of an SSE answer.
const SSE_FRAMES: &str = "Server-sent events: `id:` (the event id, for Last-Event-ID) and \
    `data:` (the event as JSON) per event; `: heartbeat` comments every 15 s";

/// Collaboration events as Server-Sent Events: the backlog after `Last-Event-ID` (every event
/// after it) or the newest 1000, then new events as they happen.
#[utoipa::path(
    get, path = "/api/v1/events/tail", tag = "events",
    params(TailQuery,
           ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id")),
    responses((status = 200, description = SSE_FRAMES, content_type = "text/event-stream", body = SseEvent)),
)]
async fn tail(
    State(state): State<AppState>,
    caller: Authorized<EventsRead>,
    Header(resume): Header<LastEventId>,
    Query(q): Query<TailQuery>,
) -> Result<Response, ApiError> {
    let filter = EventFilter {
        stream: Some(COLLAB.into()),
        ..Default::default()
    };
    Ok(stream(
        state,
        &caller,
        filter,
        resume.map(|r| r.0),
        truthy(q.once.as_deref()),
        collab_json,
    ))
}

/// Which orchestrator events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrchestratorQuery {
    /// The job (or task) id.
    task_id: Option<String>,
    /// The run (`<job id>:<attempt>`).
    run_id: Option<String>,
    /// `1`, `true`, `yes` or `on`: send the backlog, then close (streams only).
    once: Option<String>,
    /// `1`, `true`, `yes` or `on`: leave out the activity of running jobs (`job_output`,
    /// `job_progress`), so that the newest 1 000 events are a job's changes of state (the JSON
    /// list only).
    lifecycle: Option<String>,
}

fn orchestrator_filter(current: &CurrentUser, q: &OrchestratorQuery) -> EventFilter {
    EventFilter {
        stream: Some(ORCHESTRATOR.into()),
        task_id: q.task_id.clone().filter(|s| !s.is_empty()),
        run_id: q.run_id.clone().filter(|s| !s.is_empty()),
        owner_id: owner_scope(current),
        after_id: 0,
        lifecycle_only: false,
    }
}

/// Orchestrator events: each has `id`, `event`, `timestamp`, `task_id`, `run_id`, then its own
/// fields (e.g. `job`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// The newest orchestrator events of a job or run the caller may see (at most 1000). Either
/// `task_id` or `run_id` is required (400 without).
#[utoipa::path(
    get, path = "/api/v1/orchestrator/events", tag = "events",
    params(OrchestratorQuery),
    responses(
        (status = 200, description = "The events", body = EventList),
        (status = 400, description = "Neither task_id nor run_id", body = ErrorEnvelope),
    ),
)]
async fn orchestrator_events(
    State(state): State<AppState>,
    caller: Authorized<EventsRead>,
    Query(q): Query<OrchestratorQuery>,
) -> Result<axum::Json<EventList>, ApiError> {
    let mut filter = orchestrator_filter(&caller, &q);
    filter.lifecycle_only = truthy(q.lifecycle.as_deref());
    if filter.task_id.is_none() && filter.run_id.is_none() {
        return Err(ApiError::bad_request(
            "Either task_id or run_id must be provided",
        ));
    }
    let rows = store::latest(&state.db, &filter, BACKLOG_MAX).await?;
    Ok(axum::Json(EventList {
        events: rows.iter().map(orchestrator_json).collect(),
    }))
}

/// Orchestrator events the caller may see as Server-Sent Events (optionally one job or run):
/// the backlog after `Last-Event-ID`, or the newest 1000, then new events as they happen.
#[utoipa::path(
    get, path = "/api/v1/orchestrator/events/stream", tag = "events",
    params(OrchestratorQuery,
           ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id")),
    responses((status = 200, description = SSE_FRAMES, content_type = "text/event-stream", body = SseEvent)),
)]
async fn orchestrator_stream(
    State(state): State<AppState>,
    caller: Authorized<EventsRead>,
    Header(resume): Header<LastEventId>,
    Query(q): Query<OrchestratorQuery>,
) -> Result<Response, ApiError> {
    let filter = orchestrator_filter(&caller, &q);
    Ok(stream(
        state,
        &caller,
        filter,
        resume.map(|r| r.0),
        truthy(q.once.as_deref()),
        orchestrator_json,
    ))
}

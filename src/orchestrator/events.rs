//! The event bus: every event is appended to the durable log first (its id orders it), then
//! delivered to the live streams of this instance and, through Redis pub/sub when configured,
//! of every other instance. Streams that fall behind or reconnect catch up from the log.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::store::events;
pub use crate::store::events::{EventFilter, EventRow};
use crate::store::redis::Redis;
use crate::store::{Db, StoreResult};

const CHANNEL: &str = "events";
/// The Redis channel of [`Control`] messages.
const CONTROL_CHANNEL: &str = "control";
const LIVE_BUFFER: usize = 4096;

pub use crate::model::{COLLAB, ORCHESTRATOR};

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: Uuid,
    event: EventRow,
}

/// An event as delivered live: the row, and one rendering of it shared by every subscriber, so
/// that an event fanned out to thousands of connections is serialised once.
#[derive(Debug)]
pub struct LiveEvent {
    pub row: EventRow,
    rendered: OnceLock<Bytes>,
}

impl LiveEvent {
    pub fn new(row: EventRow) -> LiveEvent {
        LiveEvent {
            row,
            rendered: OnceLock::new(),
        }
    }

    /// The message text (UTF-8), computed by the first subscriber that needs it; clones share it.
    pub fn rendered(&self, render: impl FnOnce(&EventRow) -> String) -> Bytes {
        self.rendered
            .get_or_init(|| Bytes::from(render(&self.row)))
            .clone()
    }
}

impl std::ops::Deref for LiveEvent {
    type Target = EventRow;
    fn deref(&self) -> &EventRow {
        &self.row
    }
}

pub struct EventBus {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    control: broadcast::Sender<Control>,
    redis: Option<Redis>,
    instance: Uuid,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// A message from one instance to the others that is not an event of the log: nothing is
/// stored, and an instance that misses it (Redis down) does not get it later. Today one kind:
/// [`Control::RELOAD_SETTINGS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Control {
    /// The sending instance ([`EventBus::instance`]).
    pub origin: Uuid,
    pub kind: String,
}

impl Control {
    /// "Read your settings again": an administrator reloaded them through the API.
    pub const RELOAD_SETTINGS: &str = "reload_settings";
}

/// A new event, before the log gives it an id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream: &'static str,
    pub event: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub owner_id: Option<Uuid>,
    pub payload: Value,
}

impl EventBus {
    pub fn start(redis: Option<Redis>) -> Arc<EventBus> {
        let (tx, _) = broadcast::channel(LIVE_BUFFER);
        let (control, _) = broadcast::channel(16);
        let bus = Arc::new(EventBus {
            tx,
            control,
            redis,
            instance: Uuid::new_v4(),
        });
        if bus.redis.is_some() {
            let sub = Arc::clone(&bus);
            tokio::spawn(async move { sub.subscribe_loop().await });
        }
        bus
    }

    /// This process's id on the bus (other instances' events carry theirs).
    pub fn instance(&self) -> Uuid {
        self.instance
    }

    /// [`Control`] messages of other instances.
    pub fn control(&self) -> broadcast::Receiver<Control> {
        self.control.subscribe()
    }

    /// Sends a [`Control`] message to every other instance (nothing without Redis: there are
    /// no others). Best effort: an error is logged.
    pub async fn announce(&self, kind: &str) {
        let Some(redis) = &self.redis else { return };
        let message = Control {
            origin: self.instance,
            kind: kind.to_owned(),
        };
        if let Ok(text) = serde_json::to_string(&message)
            && let Err(e) = redis.publish(CONTROL_CHANNEL, &text).await
        {
            tracing::warn!(error = %e, kind, "a message to the other instances was not sent");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    /// Appends to the log and delivers live.
    pub async fn publish(&self, db: &Db, at: DateTime<Utc>, e: NewEvent) -> StoreResult<EventRow> {
        let row = events::append(
            db,
            &EventRow {
                id: 0,
                at,
                stream: e.stream.to_owned(),
                event: e.event,
                actor: e.actor,
                target: e.target,
                task_id: e.task_id,
                run_id: e.run_id,
                owner_id: e.owner_id,
                payload: Json(e.payload),
            },
        )
        .await?;
        let _ = self.tx.send(Arc::new(LiveEvent::new(row.clone())));
        if let Some(redis) = &self.redis
            && let Ok(text) = serde_json::to_string(&Envelope {
                origin: self.instance,
                event: row.clone(),
            })
        {
            // Other instances that miss this (Redis down) still serve it from the log on resume.
            let _ = redis.publish(CHANNEL, &text).await;
        }
        Ok(row)
    }

    async fn subscribe_loop(self: Arc<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let channel = redis.key(CHANNEL);
        let control_channel = redis.key(CONTROL_CHANNEL);
        loop {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), redis.client().get_async_pubsub())
                    .await;
            if let Ok(Ok(mut pubsub)) = connected
                && pubsub.subscribe(&channel).await.is_ok()
                && pubsub.subscribe(&control_channel).await.is_ok()
            {
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if msg.get_channel_name() == control_channel {
                        if let Ok(control) = serde_json::from_str::<Control>(&text)
                            && control.origin != self.instance
                        {
                            let _ = self.control.send(control);
                        }
                        continue;
                    }
                    if let Ok(env) = serde_json::from_str::<Envelope>(&text)
                        && env.origin != self.instance
                    {
                        let _ = self.tx.send(Arc::new(LiveEvent::new(env.event)));
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The newest `limit` events matching `filter`, oldest first (a tail).
pub async fn latest(db: &Db, filter: &EventFilter, limit: i64) -> StoreResult<Vec<EventRow>> {
    events::latest(db, filter, limit).await
}

/// The id of the newest event (0 for an empty log): where a live channel's catch-up starts.
pub async fn newest_id(db: &Db) -> StoreResult<i64> {
    events::newest_id(db).await
}

/// Publishes an event about a change that is already committed; a failure is logged, not
/// returned (the change stands, and the log is the source the streams resume from).
pub async fn emit(state: &crate::state::AppState, event: NewEvent) {
    if let Err(e) = state
        .events
        .publish(
            &state.db,
            crate::clock::at_storage_precision(state.clock.now()),
            event,
        )
        .await
    {
        tracing::warn!(error = %e, "an event could not be recorded");
    }
}

/// Events per page of a backlog.
pub const PAGE: i64 = 1000;

/// Everything after an id, page by page, oldest first: the one way a resume (SSE
/// `Last-Event-ID`) or a catch-up after falling behind the bus (SSE and WebSocket) reads the log,
/// so none of them can stop at a page boundary and leave a silent gap.
#[derive(Debug, Clone)]
pub struct Backlog {
    filter: EventFilter,
    done: bool,
}

impl Backlog {
    /// The events matching `filter` after `after_id`.
    pub fn after(filter: &EventFilter, after_id: i64) -> Backlog {
        Backlog {
            filter: EventFilter {
                after_id,
                ..filter.clone()
            },
            done: false,
        }
    }

    /// The next page; `None` once everything was read. A store failure is returned as is: the
    /// caller ends its stream so the client resumes, rather than skipping.
    pub async fn next_page(&mut self, db: &Db) -> StoreResult<Option<Vec<EventRow>>> {
        if self.done {
            return Ok(None);
        }
        let page = events::after(db, &self.filter, PAGE).await?;
        self.done = (page.len() as i64) < PAGE;
        if let Some(last) = page.last() {
            self.filter.after_id = last.id;
        }
        Ok(if page.is_empty() { None } else { Some(page) })
    }
}

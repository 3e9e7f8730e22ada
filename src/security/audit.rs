//! Security events: a structured log line (target `audit`) and an append-only database row.
//!
//! Recording never waits on the database: rows go through a bounded queue to a writer task that
//! inserts them in batches. If the queue is full the row is dropped and counted, and the log line
//! still exists. `flush` waits until everything queued so far is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::client_ip::RequestContext;
use crate::clock::SharedClock;
use crate::store::Db;
use crate::store::audit::{self as audit_store, NewAuditRow};
use crate::store::users::User;

const QUEUE: usize = 4096;
const BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub event: &'static str,
    pub outcome: &'static str,
    pub actor_id: Option<Uuid>,
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
}

impl AuditEvent {
    /// `outcome` is one of `success`, `failure`, `denied`.
    pub fn new(event: &'static str, outcome: &'static str) -> Self {
        AuditEvent {
            event,
            outcome,
            actor_id: None,
            actor: None,
            client_ip: None,
            request_id: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn context(mut self, ctx: Option<&RequestContext>) -> Self {
        if let Some(ctx) = ctx {
            self.client_ip = Some(ctx.client_ip.to_string());
            self.request_id = Some(ctx.request_id.clone());
        }
        self
    }

    pub fn user(mut self, user: &User) -> Self {
        self.actor_id = Some(user.id);
        self.actor = Some(user.username.clone());
        self
    }

    /// The name someone tried to act as, when no user is known.
    pub fn attempted(mut self, name: &str) -> Self {
        self.actor = Some(name.chars().take(255).collect());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

enum Msg {
    Row(NewAuditRow),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    clock: SharedClock,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Audit {
    /// Starts the writer task on the current runtime.
    pub fn start(db: Db, clock: SharedClock) -> Audit {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(db, rx));
        Audit {
            tx,
            clock,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn record(&self, e: AuditEvent) {
        tracing::info!(
            target: "audit",
            event = e.event,
            outcome = e.outcome,
            actor = e.actor.as_deref().unwrap_or("-"),
            actor_id = %e.actor_id.map(|id| id.to_string()).unwrap_or_default(),
            client_ip = e.client_ip.as_deref().unwrap_or("-"),
            request_id = e.request_id.as_deref().unwrap_or("-"),
            details = %e.details,
            "security event"
        );
        let row = NewAuditRow {
            at: self.clock.now(),
            event: e.event.to_owned(),
            outcome: e.outcome.to_owned(),
            actor_id: e.actor_id,
            actor: e.actor,
            client_ip: e.client_ip,
            request_id: e.request_id,
            details: e.details,
        };
        if self.tx.try_send(Msg::Row(row)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(dropped_total = n, "audit queue full; row not stored");
        }
    }

    /// Waits until every row recorded before this call has been written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(row) => batch.push(row),
                Msg::Flush(done) => waiters.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = audit_store::insert_batch(&db, &batch).await {
                tracing::error!(error = %e, rows = batch.len(), "audit rows could not be written");
            }
            batch.clear();
        }
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

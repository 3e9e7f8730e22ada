//! Security events: a structured log line (target `audit`) and an append-only database row.
//!
//! Recording never waits on the database: rows go through a bounded queue to a writer task that
//! inserts them in batches. If the queue is full the row is dropped and counted, and the log line
//! still exists. `flush` waits until everything queued so far is written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::context::RequestContext;
use crate::model::User;
use crate::store::audit::{self as audit_store, NewAuditRow};
pub use crate::store::audit::{AuditFilter, AuditRow};
use crate::store::{Db, StoreError};

const QUEUE: usize = 4096;
const BATCH: usize = 256;
/// Rows kept in memory while the database is unreachable.
const MAX_PENDING: usize = 100_000;
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Who performs an action that services audit: a signed-in user over HTTP (with the request's
/// context), or an operator at the command line (`kyros …`; recorded as actor `cli`, with the
/// operating-system user when known). The same service call writes the same row for both.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    User(&'a User, Option<&'a RequestContext>),
    Cli,
    /// The service itself, at start-up (`FIRST_SUPERUSER`, `API_KEYS`): actor `system`.
    System,
}

impl Actor<'_> {
    /// The user behind the action, if it is one.
    pub fn user(&self) -> Option<&User> {
        match self {
            Actor::User(user, _) => Some(user),
            Actor::Cli | Actor::System => None,
        }
    }

    /// `api`, `cli` or `system`: where the action came from (the `via` of audit details).
    pub fn via(&self) -> &'static str {
        match self {
            Actor::User(..) => "api",
            Actor::Cli => "cli",
            Actor::System => "system",
        }
    }
}

/// Every event name the service writes, sorted: the one list that `GET /api/v1/admin/audit/events`
/// serves (the console's event filter) and that [`AuditEvent::new`] checks in debug builds, so a
/// new event cannot be written without appearing here.
pub const EVENTS: &[&str] = &[
    "apikey.created",
    "apikey.first_used",
    "apikey.rejected",
    "apikey.revoked",
    "auth.lockout",
    "auth.login",
    "auth.logout",
    "auth.logout_all",
    "auth.oidc.link",
    "auth.oidc.login",
    "auth.oidc.unlink",
    "auth.password_change",
    "auth.password_changed",
    "auth.refresh",
    "auth.refresh_reuse",
    "auth.token_rejected",
    "csp.violation",
    "csrf.rejected",
    "https.rejected",
    "mfa.confirm",
    "mfa.disable",
    "mfa.disabled",
    "mfa.enabled",
    "mfa.reset",
    "mfa.verify",
    "ratelimit.exceeded",
    "ratelimit.penalized",
    "rbac.denied",
    "request.rejected",
    "session.created",
    "session.revoked",
    "settings.reload",
    "tokens.revoked",
    "user.created",
    "user.disabled",
    "user.enabled",
    "user.role_changed",
    "user.unlocked",
];

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
        debug_assert!(
            EVENTS.binary_search(&event).is_ok(),
            "audit event {event} is not in audit::EVENTS"
        );
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
            self.request_id = Some(ctx.request_id.to_string());
        }
        self
    }

    /// Names the actor: the user (and the request's context), or `cli` (`cli:<os user>`).
    pub fn by(self, actor: Actor<'_>) -> Self {
        match actor {
            Actor::User(user, ctx) => self.context(ctx).user(user),
            Actor::Cli => {
                let os_user = std::env::var("USER").ok().filter(|u| !u.is_empty());
                self.attempted(&os_user.map_or_else(|| "cli".to_owned(), |u| format!("cli:{u}")))
            }
            Actor::System => self.attempted("system"),
        }
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
    /// The writer's own wake-up to retry pending rows.
    Retry,
}

#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    db: Db,
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
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(db.clone(), rx, Arc::clone(&dropped)));
        Audit {
            tx,
            db,
            clock,
            dropped,
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

    /// The newest `limit` rows (of `event`, when given), newest first.
    pub async fn recent(
        &self,
        event: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        audit_store::recent(&self.db, event, limit).await
    }

    /// Rows matching `filter`, newest first, at most `limit`.
    pub async fn query(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        audit_store::query(&self.db, filter, limit).await
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Writes rows in batches. While the database is unreachable the rows wait in memory (up to
/// `MAX_PENDING`, oldest dropped first and counted) and are retried with a growing pause, so an
/// outage loses no audit row that the log line did not also carry.
async fn writer(db: Db, mut rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) {
    let mut pending: VecDeque<NewAuditRow> = VecDeque::new();
    let mut waiters = Vec::new();
    let mut pause = RETRY_MIN;
    let mut next_attempt = Instant::now();
    loop {
        let first = if pending.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(next_attempt, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => Some(Msg::Retry),
            }
        };
        let Some(first) = first else {
            // Closed: one last attempt for what is pending.
            next_attempt = Instant::now();
            write_pending(&db, &mut pending, &mut pause, &mut next_attempt).await;
            break;
        };
        let (mut next, mut taken) = (Some(first), 0);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(row) => pending.push_back(row),
                Msg::Flush(done) => waiters.push(done),
                Msg::Retry => {}
            }
            taken += 1;
            if taken < BATCH {
                next = rx.try_recv().ok();
            }
        }
        // A flush forces an attempt; otherwise the pause after a failure is respected.
        if !waiters.is_empty() || Instant::now() >= next_attempt {
            write_pending(&db, &mut pending, &mut pause, &mut next_attempt).await;
        }
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
            let n = dropped.fetch_add(excess as u64, Ordering::Relaxed) + excess as u64;
            tracing::warn!(
                dropped_total = n,
                "database unavailable too long; oldest audit rows not stored"
            );
        }
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
    if !pending.is_empty() {
        tracing::error!(
            rows = pending.len(),
            "audit rows not stored: the database is unavailable"
        );
    }
}

async fn write_pending(
    db: &Db,
    pending: &mut VecDeque<NewAuditRow>,
    pause: &mut Duration,
    next_attempt: &mut Instant,
) {
    while !pending.is_empty() {
        let n = pending.len().min(BATCH);
        match audit_store::insert_batch(db, &pending.make_contiguous()[..n]).await {
            Ok(()) => {
                pending.drain(..n);
                *pause = RETRY_MIN;
            }
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, rows = pending.len(), retry_in_ms = pause.as_millis() as u64, "audit rows kept for a retry: database unavailable");
                *next_attempt = Instant::now() + *pause;
                *pause = (*pause * 2).min(RETRY_MAX);
                return;
            }
            Err(e) => {
                // Refused for another reason: retrying cannot help.
                tracing::error!(error = %e, rows = n, "audit rows could not be written");
                pending.drain(..n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_list_is_sorted_and_unique() {
        assert!(super::EVENTS.windows(2).all(|w| w[0] < w[1]));
    }
}

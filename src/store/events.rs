//! The durable, ordered event log (monotonic ids) behind the SSE and WebSocket streams.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub event: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub owner_id: Option<Uuid>,
    pub payload: Json<Value>,
}

macro_rules! select_events {
    ($tail:literal) => {
        concat!("SELECT id, at, stream, event, actor, target, task_id, run_id, owner_id, payload FROM events ", $tail)
    };
}

/// Appends an event; the returned row carries its id.
pub async fn append(db: &Db, e: &EventRow) -> StoreResult<EventRow> {
    let id: i64 = on_pool!(db, pool => sqlx::query_scalar(
        "INSERT INTO events (at, stream, event, actor, target, task_id, run_id, owner_id, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(e.at)
    .bind(&e.stream)
    .bind(&e.event)
    .bind(&e.actor)
    .bind(&e.target)
    .bind(&e.task_id)
    .bind(&e.run_id)
    .bind(e.owner_id)
    .bind(&e.payload)
    .fetch_one(pool)
    .await)?;
    Ok(EventRow { id, ..e.clone() })
}

/// Appends `rows` in one statement (a multi-row `INSERT`, one round trip), in slice order, so
/// their ids ascend with it; ids and `RETURNING` are not read back. For bulk loads (the seeding
/// of `bench/scale_seed.rs`): at most [`BULK_ROWS`] rows per call, so that the bind parameters
/// stay under either engine's limit (SQLite 32 766, PostgreSQL 65 535).
pub async fn append_many(db: &Db, rows: &[EventRow]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    assert!(
        rows.len() <= super::BULK_ROWS,
        "append_many takes at most BULK_ROWS rows"
    );
    on_pool!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO events (at, stream, event, actor, target, task_id, run_id, owner_id, payload) ",
        );
        q.push_values(rows, |mut b, e| {
            b.push_bind(e.at)
                .push_bind(&e.stream)
                .push_bind(&e.event)
                .push_bind(&e.actor)
                .push_bind(&e.target)
                .push_bind(&e.task_id)
                .push_bind(&e.run_id)
                .push_bind(e.owner_id)
                .push_bind(&e.payload);
        });
        q.build().execute(pool).await.map(|_| ())
    })?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub stream: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    /// Only events of this owner (users who are not moderators).
    pub owner_id: Option<Uuid>,
    pub after_id: i64,
    /// Leave out the activity of running jobs ([`ACTIVITY_EVENTS`]: output and heartbeats), so
    /// that a job's history is its changes of state however long it ran.
    pub lifecycle_only: bool,
}

/// The events a running job emits continually (`job_output` per batch of lines, `job_progress`
/// per heartbeat), as opposed to its changes of state.
pub const ACTIVITY_EVENTS: [&str; 2] = ["job_output", "job_progress"];

/// Which way [`events_sql`] reads the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Events after `after_id`, oldest first (a resume, a live tail).
    After,
    /// The newest events, newest first.
    Latest,
}

/// The SQL of a read of the event log with only the conditions `f` sets, so each filter is an
/// index range in id order: `events_stream (stream, id)`, `events_task (task_id, id)`,
/// `events_run (run_id, id)`, `events_owner (owner_id, id)`, or the primary key. (A generic
/// `($n IS NULL OR column = $n)` would leave the planner the primary key only, which walks every
/// event after the cursor to find the few of one owner.) Parameters, in order: `after_id` (for
/// [`Direction::After`]), then those of the conditions present in the order stream, task, run,
/// owner, then the limit.
pub fn events_sql(f: &EventFilter, direction: Direction) -> String {
    let mut conditions: Vec<String> = Vec::new();
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if direction == Direction::After {
        conditions.push(format!("id > {}", param()));
    }
    for (column, present) in [
        ("stream", f.stream.is_some()),
        ("task_id", f.task_id.is_some()),
        ("run_id", f.run_id.is_some()),
        ("owner_id", f.owner_id.is_some()),
    ] {
        if present {
            conditions.push(format!("{column} = {}", param()));
        }
    }
    if f.lifecycle_only {
        conditions.push("event NOT IN ('job_output', 'job_progress')".to_owned());
    }
    let mut sql = select_events!("").to_owned();
    if !conditions.is_empty() {
        sql.push_str("WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(match direction {
        Direction::After => " ORDER BY id LIMIT ",
        Direction::Latest => " ORDER BY id DESC LIMIT ",
    });
    sql.push_str(&param());
    sql
}

/// Binds the parameters of [`events_sql`] in its order.
macro_rules! bind_events {
    ($query:expr, $f:expr, $direction:expr, $limit:expr) => {{
        let mut q = $query;
        if $direction == Direction::After {
            q = q.bind($f.after_id);
        }
        if let Some(v) = &$f.stream {
            q = q.bind(v);
        }
        if let Some(v) = &$f.task_id {
            q = q.bind(v);
        }
        if let Some(v) = &$f.run_id {
            q = q.bind(v);
        }
        if let Some(v) = $f.owner_id {
            q = q.bind(v);
        }
        q.bind($limit)
    }};
}

/// Events after `after_id`, oldest first.
pub async fn after(db: &Db, f: &EventFilter, limit: i64) -> StoreResult<Vec<EventRow>> {
    let sql = events_sql(f, Direction::After);
    let rows = on_pool!(db, pool => bind_events!(
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())),
        f,
        Direction::After,
        limit
    )
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// The newest `limit` events matching, returned oldest first.
pub async fn latest(db: &Db, f: &EventFilter, limit: i64) -> StoreResult<Vec<EventRow>> {
    let sql = events_sql(f, Direction::Latest);
    let mut rows: Vec<EventRow> = on_pool!(db, pool => bind_events!(
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())),
        f,
        Direction::Latest,
        limit
    )
    .fetch_all(pool)
    .await)?;
    rows.reverse();
    Ok(rows)
}

/// The id of the newest event (0 when the log is empty).
pub async fn newest_id(db: &Db) -> StoreResult<i64> {
    let id: Option<i64> = on_pool!(db, pool => sqlx::query_scalar("SELECT MAX(id) FROM events")
        .fetch_one(pool)
        .await)?;
    Ok(id.unwrap_or(0))
}

pub async fn purge_before(db: &Db, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM events WHERE at < $1")
        .bind(cutoff)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n)
}

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

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub stream: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    /// Only events of this owner (users who are not moderators).
    pub owner_id: Option<Uuid>,
    pub after_id: i64,
}

/// Events after `after_id`, oldest first.
pub async fn after(db: &Db, f: &EventFilter, limit: i64) -> StoreResult<Vec<EventRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(select_events!(
        "WHERE id > $1 AND ($2 IS NULL OR stream = $2) AND ($3 IS NULL OR task_id = $3) AND ($4 IS NULL OR run_id = $4) \
         AND ($5 IS NULL OR owner_id = $5) ORDER BY id LIMIT $6"
    ))
    .bind(f.after_id)
    .bind(&f.stream)
    .bind(&f.task_id)
    .bind(&f.run_id)
    .bind(f.owner_id)
    .bind(limit)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// The newest `limit` events matching, returned oldest first.
pub async fn latest(db: &Db, f: &EventFilter, limit: i64) -> StoreResult<Vec<EventRow>> {
    let mut rows: Vec<EventRow> = on_pool!(db, pool => sqlx::query_as(select_events!(
        "WHERE ($1 IS NULL OR stream = $1) AND ($2 IS NULL OR task_id = $2) AND ($3 IS NULL OR run_id = $3) \
         AND ($4 IS NULL OR owner_id = $4) ORDER BY id DESC LIMIT $5"
    ))
    .bind(&f.stream)
    .bind(&f.task_id)
    .bind(&f.run_id)
    .bind(f.owner_id)
    .bind(limit)
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

//! The append-only `audit_log` table.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone)]
pub struct NewAuditRow {
    pub at: DateTime<Utc>,
    pub event: String,
    pub outcome: String,
    pub actor_id: Option<Uuid>,
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub event: String,
    pub outcome: String,
    pub actor_id: Option<Uuid>,
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: Json<Value>,
}

pub async fn insert_batch(db: &Db, rows: &[NewAuditRow]) -> StoreResult<()> {
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO audit_log (at, event, outcome, actor_id, actor, client_ip, request_id, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(row.at)
            .bind(&row.event)
            .bind(&row.outcome)
            .bind(row.actor_id)
            .bind(&row.actor)
            .bind(&row.client_ip)
            .bind(&row.request_id)
            .bind(Json(&row.details))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// The newest rows first; `event` filters when given.
pub async fn recent(db: &Db, event: Option<&str>, limit: i64) -> StoreResult<Vec<AuditRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(
        "SELECT id, at, event, outcome, actor_id, actor, client_ip, request_id, details FROM audit_log \
         WHERE ($1 IS NULL OR event = $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(event)
    .bind(limit)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Filters of the audit query; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    pub actor_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only rows older than this id (keyset pagination, newest first).
    pub before_id: Option<i64>,
}

pub async fn query(db: &Db, f: &AuditFilter, limit: i64) -> StoreResult<Vec<AuditRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(
        "SELECT id, at, event, outcome, actor_id, actor, client_ip, request_id, details FROM audit_log \
         WHERE ($1 IS NULL OR event = $1) AND ($2 IS NULL OR outcome = $2) AND ($3 IS NULL OR actor = $3) \
         AND ($4 IS NULL OR actor_id = $4) AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6) \
         AND ($7 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8",
    )
    .bind(&f.event)
    .bind(&f.outcome)
    .bind(&f.actor)
    .bind(f.actor_id)
    .bind(f.since)
    .bind(f.until)
    .bind(f.before_id)
    .bind(limit)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Retention: removes rows older than `cutoff`.
pub async fn purge_before(db: &Db, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM audit_log WHERE at < $1")
        .bind(cutoff)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n)
}

//! The `jobs` table.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub priority: i32,
    pub metadata: Option<Json<Value>>,
    pub owner_id: Option<Uuid>,
    pub version: i32,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

macro_rules! select_jobs {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, description, status, priority, metadata, owner_id, version, attempts, \
             created_at, updated_at, started_at, completed_at FROM jobs ",
            $tail
        )
    };
}

pub async fn insert(db: &Db, job: &JobRow) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO jobs (id, name, description, status, priority, metadata, owner_id, version, attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(job.id)
    .bind(&job.name)
    .bind(&job.description)
    .bind(&job.status)
    .bind(job.priority)
    .bind(&job.metadata)
    .bind(job.owner_id)
    .bind(job.version)
    .bind(job.attempts)
    .bind(job.created_at)
    .bind(job.updated_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

pub async fn find(db: &Db, id: Uuid) -> StoreResult<Option<JobRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(select_jobs!("WHERE id = $1")).bind(id).fetch_optional(pool).await)?;
    Ok(row)
}

/// Newest first (ties broken by id, so pages are stable); `owner` restricts to one owner.
pub async fn list(
    db: &Db,
    status: Option<&str>,
    owner: Option<Uuid>,
    skip: i64,
    limit: i64,
) -> StoreResult<Vec<JobRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(select_jobs!(
        "WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR owner_id = $2) ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(status)
    .bind(owner)
    .bind(limit)
    .bind(skip)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Applies a status change if the job is still at `version`; false when someone changed it first.
pub async fn update_status(db: &Db, job: &JobRow, expected_version: i32) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE jobs SET status = $1, started_at = $2, completed_at = $3, updated_at = $4, attempts = $5, version = version + 1 \
         WHERE id = $6 AND version = $7",
    )
    .bind(&job.status)
    .bind(job.started_at)
    .bind(job.completed_at)
    .bind(job.updated_at)
    .bind(job.attempts)
    .bind(job.id)
    .bind(expected_version)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Deletes the job if it is still at `version`.
pub async fn delete(db: &Db, id: Uuid, expected_version: i32) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM jobs WHERE id = $1 AND version = $2")
        .bind(id)
        .bind(expected_version)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

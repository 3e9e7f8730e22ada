//! The `tasks` table (collaborative tasks).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub version: i32,
    pub owner_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! select_tasks {
    ($tail:literal) => {
        concat!(
            "SELECT id, title, description, version, owner_id, created_at, updated_at FROM tasks ",
            $tail
        )
    };
}

pub async fn insert(db: &Db, t: &TaskRow) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO tasks (id, title, description, version, owner_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(t.id)
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.version)
    .bind(t.owner_id)
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

pub async fn find(db: &Db, id: Uuid) -> StoreResult<Option<TaskRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(select_tasks!("WHERE id = $1")).bind(id).fetch_optional(pool).await)?;
    Ok(row)
}

/// Oldest first, capped.
pub async fn list(db: &Db, limit: i64) -> StoreResult<Vec<TaskRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(select_tasks!("ORDER BY created_at, id LIMIT $1")).bind(limit).fetch_all(pool).await)?;
    Ok(rows)
}

/// Replaces title and description if the task is still at `version`; the version goes up by one.
pub async fn update(db: &Db, t: &TaskRow, expected_version: i32) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE tasks SET title = $1, description = $2, updated_at = $3, version = version + 1 WHERE id = $4 AND version = $5",
    )
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.updated_at)
    .bind(t.id)
    .bind(expected_version)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn delete(db: &Db, id: Uuid, expected_version: i32) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM tasks WHERE id = $1 AND version = $2")
        .bind(id)
        .bind(expected_version)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

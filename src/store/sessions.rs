//! The `sessions` table: server-side browser sessions. Only a keyed hash of the cookie value is
//! stored.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

macro_rules! select_sessions {
    ($tail:literal) => {
        concat!(
            "SELECT id, user_id, created_at, last_seen_at, expires_at, revoked_at, ip, user_agent FROM sessions ",
            $tail
        )
    };
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub token_hash: &'a str,
    pub user_id: Uuid,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub async fn create(db: &Db, s: NewSession<'_>) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
    )
    .bind(s.id)
    .bind(s.token_hash)
    .bind(s.user_id)
    .bind(s.now)
    .bind(s.expires_at)
    .bind(&s.ip)
    .bind(&s.user_agent)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// A session that has not been revoked (expiry is the caller's business: it owns the clock).
pub async fn find_by_token_hash(db: &Db, token_hash: &str) -> StoreResult<Option<SessionRow>> {
    if let Some(reader) = db.point_reader() {
        return reader.one(
            select_sessions!("WHERE token_hash = ?1 AND revoked_at IS NULL"),
            [token_hash],
            |row| {
                use super::sqlite_read::{opt_ts, ts, uuid};
                Ok(SessionRow {
                    id: uuid(row, 0)?,
                    user_id: uuid(row, 1)?,
                    created_at: ts(row, 2)?,
                    last_seen_at: ts(row, 3)?,
                    expires_at: ts(row, 4)?,
                    revoked_at: opt_ts(row, 5)?,
                    ip: row.get(6)?,
                    user_agent: row.get(7)?,
                })
            },
        );
    }
    let row = on_pool!(db, pool => sqlx::query_as(select_sessions!("WHERE token_hash = $1 AND revoked_at IS NULL"))
        .bind(token_hash)
        .fetch_optional(pool)
        .await)?;
    Ok(row)
}

pub async fn find_by_id(db: &Db, id: Uuid) -> StoreResult<Option<SessionRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(select_sessions!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
    Ok(row)
}

pub async fn touch(db: &Db, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Files a session under another token hash (the same token under the current key, after a
/// key rotation).
pub async fn set_token_hash(db: &Db, id: Uuid, token_hash: &str) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE sessions SET token_hash = $1 WHERE id = $2")
        .bind(token_hash)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Revokes one session; false when it was already revoked or does not exist.
pub async fn revoke(db: &Db, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn revoke_all_for_user(db: &Db, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n)
}

/// Unrevoked sessions of a user (or of everyone), newest first.
pub async fn list(db: &Db, user_id: Option<Uuid>) -> StoreResult<Vec<SessionRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(select_sessions!(
        "WHERE revoked_at IS NULL AND ($1 IS NULL OR user_id = $1) ORDER BY created_at DESC, id"
    ))
    .bind(user_id)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

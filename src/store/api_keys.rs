//! The `api_keys` table: keys of agents and services. Only a keyed hash of each key is stored,
//! next to its public lookup id; scopes are a comma-separated text column.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub lookup_id: String,
    /// Hex HMAC-SHA256 of the whole key; never shown.
    pub secret_hash: String,
    pub name: String,
    pub owner_id: Uuid,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ApiKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRow")
            .field("id", &self.id)
            .field("lookup_id", &self.lookup_id)
            .field("name", &self.name)
            .field("owner_id", &self.owner_id)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

macro_rules! select_api_keys {
    ($tail:literal) => {
        concat!(
            "SELECT id, lookup_id, secret_hash, name, owner_id, scopes, created_at, expires_at, last_used_at, revoked_at FROM api_keys ",
            $tail
        )
    };
}

pub async fn insert(db: &Db, row: &ApiKeyRow) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO api_keys (id, lookup_id, secret_hash, name, owner_id, scopes, created_at, expires_at, last_used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.id)
    .bind(&row.lookup_id)
    .bind(&row.secret_hash)
    .bind(&row.name)
    .bind(row.owner_id)
    .bind(&row.scopes)
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(row.last_used_at)
    .bind(row.revoked_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// The key with this lookup id, revoked or not (the caller decides and says why).
pub async fn find_by_lookup_id(db: &Db, lookup_id: &str) -> StoreResult<Option<ApiKeyRow>> {
    if let Some(reader) = db.point_reader() {
        return reader.one(
            select_api_keys!("WHERE lookup_id = ?1"),
            [lookup_id],
            |row| {
                use super::sqlite_read::{opt_ts, ts, uuid};
                Ok(ApiKeyRow {
                    id: uuid(row, 0)?,
                    lookup_id: row.get(1)?,
                    secret_hash: row.get(2)?,
                    name: row.get(3)?,
                    owner_id: uuid(row, 4)?,
                    scopes: row.get(5)?,
                    created_at: ts(row, 6)?,
                    expires_at: opt_ts(row, 7)?,
                    last_used_at: opt_ts(row, 8)?,
                    revoked_at: opt_ts(row, 9)?,
                })
            },
        );
    }
    let row = on_pool!(db, pool => sqlx::query_as(select_api_keys!("WHERE lookup_id = $1"))
        .bind(lookup_id)
        .fetch_optional(pool)
        .await)?;
    Ok(row)
}

/// Files a key again under the current key of the ring (a key rotation): its hash, and for a
/// legacy key its lookup id, which is derived from the same secret.
pub async fn refile(db: &Db, id: Uuid, lookup_id: &str, secret_hash: &str) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE api_keys SET lookup_id = $1, secret_hash = $2 WHERE id = $3")
        .bind(lookup_id)
        .bind(secret_hash)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

pub async fn find_by_id(db: &Db, id: Uuid) -> StoreResult<Option<ApiKeyRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(select_api_keys!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
    Ok(row)
}

/// Keys of one owner (or of everyone), revoked ones included, newest first.
pub async fn list(db: &Db, owner_id: Option<Uuid>) -> StoreResult<Vec<ApiKeyRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(select_api_keys!(
        "WHERE ($1 IS NULL OR owner_id = $1) ORDER BY created_at DESC, id"
    ))
    .bind(owner_id)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Revokes one key; false when it was already revoked or does not exist.
pub async fn revoke(db: &Db, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Records the first use of a key; true only for the one caller that recorded it.
pub async fn mark_first_use(db: &Db, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND last_used_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn touch(db: &Db, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

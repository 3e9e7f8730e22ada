//! Refresh-token families and the access-token deny-list.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub used_ip: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewRefresh<'a> {
    pub id: Uuid,
    pub token_hash: &'a str,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_refresh(db: &Db, r: NewRefresh<'_>) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(r.id)
    .bind(r.token_hash)
    .bind(r.family_id)
    .bind(r.user_id)
    .bind(r.now)
    .bind(r.expires_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

pub async fn find_refresh(db: &Db, token_hash: &str) -> StoreResult<Option<RefreshRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(
        "SELECT id, family_id, user_id, created_at, expires_at, used_at, used_ip, revoked_at \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await)?;
    Ok(row)
}

/// Marks a token used if nobody did before: the one atomic step of rotation.
pub async fn mark_used(
    db: &Db,
    id: Uuid,
    now: DateTime<Utc>,
    ip: Option<&str>,
) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1, used_ip = $2 WHERE id = $3 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(ip)
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Records the one replay the grace period allows for a used token; false when it was taken.
pub async fn use_grace(db: &Db, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET grace_used_at = $1 WHERE id = $2 AND grace_used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn revoke_family(db: &Db, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family_id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n)
}

/// Whether any token of the family was revoked (then every token of it is dead, including one
/// inserted concurrently with the revocation).
pub async fn family_revoked(db: &Db, family_id: Uuid) -> StoreResult<bool> {
    let n: i64 = on_pool!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL",
    )
    .bind(family_id)
    .fetch_one(pool)
    .await)?;
    Ok(n > 0)
}

pub async fn revoke_user_families(db: &Db, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n)
}

/// Adds an access token to the deny-list; false when it was there already.
pub async fn deny(
    db: &Db,
    jti: &str,
    user_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(user_id)
    .bind(expires_at)
    .bind(now)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeniedRow {
    pub seq: i64,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

/// Deny-list entries added after `seq`, in order.
pub async fn denied_since(db: &Db, seq: i64, limit: i64) -> StoreResult<Vec<DeniedRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(
        "SELECT seq, jti, expires_at FROM revoked_tokens WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(seq)
    .bind(limit)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Removes deny-list entries, refresh tokens and second-factor challenges that can no longer
/// matter.
pub async fn purge_expired(db: &Db, now: DateTime<Utc>) -> StoreResult<()> {
    on_pool!(db, pool => {
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1").bind(now).execute(pool).await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1").bind(now).execute(pool).await?;
        sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1").bind(now).execute(pool).await?;
    });
    Ok(())
}

/// What a WebSocket ticket stands for.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WsTicket {
    pub user_id: Uuid,
    /// The revocation handle of the credential that minted it.
    pub minted_by: Option<String>,
    pub token_generation: i64,
}

pub async fn insert_ws_ticket(
    db: &Db,
    hash: &str,
    ticket: &WsTicket,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("INSERT INTO ws_tickets (ticket_hash, user_id, expires_at, minted_by, token_generation) VALUES ($1, $2, $3, $4, $5)")
        .bind(hash)
        .bind(ticket.user_id)
        .bind(expires_at)
        .bind(&ticket.minted_by)
        .bind(ticket.token_generation)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Consumes a WebSocket ticket: what it was issued for, once, before it expires.
pub async fn use_ws_ticket(
    db: &Db,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<WsTicket>> {
    let user: Option<WsTicket> = on_pool!(db, pool => sqlx::query_as(
        "UPDATE ws_tickets SET used_at = $1 WHERE ticket_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id, minted_by, token_generation",
    )
    .bind(now)
    .bind(hash)
    .fetch_optional(pool)
    .await)?;
    Ok(user)
}

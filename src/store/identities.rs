//! The `user_identities` table (a person at an identity provider, `issuer` + `subject`, linked to
//! one account) and the `oauth_states` table (pending authorization requests: the server-side
//! half of `state`, the PKCE verifier and the nonce; single use).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

/// A linked identity.
#[derive(Debug, Clone, sqlx::FromRow, PartialEq)]
pub struct IdentityRow {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The provider's name in this service's configuration (`OIDC_PROVIDERS`).
    pub provider: String,
    /// The provider's issuer (OpenID Connect `iss`; for GitHub its web address).
    pub issuer: String,
    /// The provider's stable id of the person (`sub`; GitHub's numeric user id).
    pub subject: String,
    /// The e-mail the provider gave at the last sign-in (for display only: never a key).
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

macro_rules! select_identities {
    ($tail:literal) => {
        concat!(
            "SELECT id, user_id, provider, issuer, subject, email, created_at, last_login_at FROM user_identities ",
            $tail
        )
    };
}

/// Links an identity; `StoreError::Conflict("record")` when `issuer` + `subject` is linked
/// already (to this account or another).
pub async fn insert(db: &Db, row: &IdentityRow) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO user_identities (id, user_id, provider, issuer, subject, email, created_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.id)
    .bind(row.user_id)
    .bind(&row.provider)
    .bind(&row.issuer)
    .bind(&row.subject)
    .bind(&row.email)
    .bind(row.created_at)
    .bind(row.last_login_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// The identity `issuer` + `subject`, if linked.
pub async fn find(db: &Db, issuer: &str, subject: &str) -> StoreResult<Option<IdentityRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(select_identities!("WHERE issuer = $1 AND subject = $2"))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(pool)
        .await)?;
    Ok(row)
}

/// The identities linked to `user_id`, oldest first.
pub async fn list_for_user(db: &Db, user_id: Uuid) -> StoreResult<Vec<IdentityRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(select_identities!("WHERE user_id = $1 ORDER BY created_at, id"))
        .bind(user_id)
        .fetch_all(pool)
        .await)?;
    Ok(rows)
}

/// Records a sign-in: when, and the e-mail the provider gave.
pub async fn touch(db: &Db, id: Uuid, email: Option<&str>, at: DateTime<Utc>) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE user_identities SET last_login_at = $1, email = $2 WHERE id = $3")
        .bind(at)
        .bind(email)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// What [`delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    Deleted,
    /// No such identity of that account.
    NotFound,
    /// It is the account's last identity and `keep_last` was asked.
    LastKept,
}

/// Unlinks identity `id` of `user_id`; with `keep_last`, not the account's last one. One
/// transaction that first writes the user's row (PostgreSQL: its row lock; SQLite: the write
/// lock), so two concurrent unlinks of an account's last two identities cannot both pass the
/// count.
pub async fn delete(db: &Db, user_id: Uuid, id: Uuid, keep_last: bool) -> StoreResult<Unlinked> {
    let (exists, deleted) = on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM user_identities WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM user_identities WHERE id = $1 AND user_id = $2 \
             AND (NOT $3 OR (SELECT COUNT(*) FROM user_identities WHERE user_id = $2) > 1)",
        )
        .bind(id)
        .bind(user_id)
        .bind(keep_last)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok::<_, sqlx::Error>((exists.unwrap_or(0) > 0, deleted > 0))
    })?;
    Ok(match (exists, deleted) {
        (_, true) => Unlinked::Deleted,
        (false, false) => Unlinked::NotFound,
        (true, false) => Unlinked::LastKept,
    })
}

/// A pending authorization request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateRow {
    /// Keyed hash of the `state` handed to the client.
    pub state_hash: String,
    pub provider: String,
    /// Keyed hash of the browser-binding cookie of the request that began the sign-in.
    pub browser_hash: String,
    pub redirect_uri: String,
    /// RFC 7636 `code_verifier` (never leaves the server).
    pub pkce_verifier: String,
    /// OpenID Connect `nonce` (never leaves the server but inside the provider's request).
    pub nonce: String,
    /// 1: tokens, 2: browser session, 3: link to `link_user_id`.
    pub mode: i16,
    pub link_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Stores a pending request, and drops the expired ones of everybody.
pub async fn insert_state(db: &Db, row: &StateRow) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
        .bind(row.created_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO oauth_states (state_hash, provider, browser_hash, redirect_uri, pkce_verifier, nonce, mode, link_user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&row.state_hash)
    .bind(&row.provider)
    .bind(&row.browser_hash)
    .bind(&row.redirect_uri)
    .bind(&row.pkce_verifier)
    .bind(row.nonce.as_str())
    .bind(row.mode)
    .bind(row.link_user_id)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Takes the pending request of `state_hash` out of the table (single use: of two requests with
/// one state, one gets the row). Expiry and binding are the caller's to check.
pub async fn take_state(db: &Db, state_hash: &str) -> StoreResult<Option<StateRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(
        "DELETE FROM oauth_states WHERE state_hash = $1 \
         RETURNING state_hash, provider, browser_hash, redirect_uri, pkce_verifier, nonce, mode, link_user_id, created_at, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await)?;
    Ok(row)
}

//! TOTP enrolment state and recovery codes.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreError, StoreResult};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaState {
    /// The TOTP secret, encrypted; set from enrolment on.
    pub mfa_secret: Option<String>,
    pub mfa_enabled: bool,
    pub mfa_last_step: Option<i64>,
}

pub async fn state(db: &Db, user_id: Uuid) -> StoreResult<MfaState> {
    let row: Option<MfaState> = on_pool!(db, pool => sqlx::query_as(
        "SELECT mfa_secret, mfa_enabled, mfa_last_step FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await)?;
    row.ok_or(StoreError::NotFound)
}

/// Stores a new (not yet confirmed) secret; refused while MFA is enabled.
pub async fn set_pending_secret(db: &Db, user_id: Uuid, encrypted: &str) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE users SET mfa_secret = $1, mfa_last_step = NULL WHERE id = $2 AND mfa_enabled = $3",
    )
    .bind(encrypted)
    .bind(user_id)
    .bind(false)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn enable(db: &Db, user_id: Uuid) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE users SET mfa_enabled = $1 WHERE id = $2")
        .bind(true)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Replaces the stored (encrypted) secret with the same secret encrypted under another key (a
/// key rotation); the MFA state is unchanged.
pub async fn replace_secret(db: &Db, user_id: Uuid, encrypted: &str) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE users SET mfa_secret = $1 WHERE id = $2 AND mfa_secret IS NOT NULL")
        .bind(encrypted)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Turns MFA off and forgets the secret and the recovery codes.
pub async fn disable(db: &Db, user_id: Uuid) -> StoreResult<()> {
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE users SET mfa_enabled = $1, mfa_secret = NULL, mfa_last_step = NULL WHERE id = $2")
            .bind(false)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// The replay guard: records `step` as used only if it is later than every step used before.
pub async fn advance_step(db: &Db, user_id: Uuid, step: i64) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE users SET mfa_last_step = $1 WHERE id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)",
    )
    .bind(step)
    .bind(user_id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn replace_recovery_codes(db: &Db, user_id: Uuid, hashes: &[String]) -> StoreResult<()> {
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for hash in hashes {
            sqlx::query("INSERT INTO recovery_codes (id, user_id, code_hash) VALUES ($1, $2, $3)")
                .bind(Uuid::new_v4())
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// Consumes a recovery code atomically; false when unknown or used.
pub async fn use_recovery_code(
    db: &Db,
    user_id: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(hash)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn recovery_codes_left(db: &Db, user_id: Uuid) -> StoreResult<i64> {
    let n: i64 = on_pool!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await)?;
    Ok(n)
}

/// A pending second-factor challenge.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChallengeRow {
    pub challenge_hash: String,
    pub user_id: Uuid,
    /// What the completed login produces (1 bearer tokens, 2 a browser session).
    pub kind: i16,
    /// The user's token generation when the password was proved.
    pub token_generation: i64,
}

pub async fn insert_challenge(
    db: &Db,
    row: &ChallengeRow,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO mfa_challenges (challenge_hash, user_id, kind, token_generation, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&row.challenge_hash)
    .bind(row.user_id)
    .bind(row.kind)
    .bind(row.token_generation)
    .bind(expires_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// The challenge with this hash if it is unused and unexpired at `now`.
pub async fn pending_challenge(
    db: &Db,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<ChallengeRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(
        "SELECT challenge_hash, user_id, kind, token_generation FROM mfa_challenges \
         WHERE challenge_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(pool)
    .await)?;
    Ok(row)
}

/// Marks a challenge used, once: false when it was used (or expired) meanwhile.
pub async fn consume_challenge(db: &Db, hash: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE mfa_challenges SET used_at = $1 WHERE challenge_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(hash)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

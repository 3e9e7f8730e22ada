//! The `users` table.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreError, StoreResult, found};
use crate::model::{Role, User};
use crate::on_pool;

#[derive(Debug, Clone, sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    username: String,
    email: String,
    password_hash: String,
    role: String,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    failed_logins: i32,
    locked_until: Option<DateTime<Utc>>,
    token_generation: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> StoreResult<User> {
        let role = row
            .role
            .parse()
            .map_err(|_| StoreError::Other(format!("user {} has an unknown role", row.id)))?;
        Ok(User {
            id: row.id,
            username: row.username,
            email: row.email,
            password_hash: row.password_hash,
            role,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
            failed_logins: row.failed_logins,
            locked_until: row.locked_until,
            token_generation: row.token_generation,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    /// The name's comparison form (unique): equal keys are the same name.
    pub username_key: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
}

macro_rules! select_users {
    ($tail:literal) => {
        concat!(
            "SELECT id, username, email, password_hash, role, active, created_at, updated_at, failed_logins, locked_until, token_generation FROM users ",
            $tail
        )
    };
}

fn one(row: Option<UserRow>) -> StoreResult<Option<User>> {
    row.map(User::try_from).transpose()
}

pub async fn create(db: &Db, new: NewUser, now: DateTime<Utc>) -> StoreResult<User> {
    let id = Uuid::new_v4();
    let email = new.email.to_lowercase();
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO users (id, username, email, password_hash, role, active, created_at, updated_at, username_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
    )
    .bind(id)
    .bind(&new.username)
    .bind(&email)
    .bind(&new.password_hash)
    .bind(new.role.as_str())
    .bind(new.active)
    .bind(now)
    .bind(&new.username_key)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(User {
        id,
        username: new.username,
        email,
        password_hash: new.password_hash,
        role: new.role,
        active: new.active,
        created_at: now,
        updated_at: now,
        failed_logins: 0,
        locked_until: None,
        token_generation: 0,
    })
}

/// The user whose name has the comparison form `key`; rows from before keys existed that could
/// not take theirs (another row holds it) are found by their exact name `raw`, before the keyed
/// row (only an older version could write such a row, so nobody can create one to shadow a name).
pub async fn find_by_username_key(db: &Db, key: &str, raw: &str) -> StoreResult<Option<User>> {
    let row: Option<UserRow> = on_pool!(db, pool => sqlx::query_as(
        select_users!("WHERE username_key = $1 OR (username_key IS NULL AND username = $2) ORDER BY username_key IS NULL DESC LIMIT 1"),
    )
    .bind(key)
    .bind(raw)
    .fetch_optional(pool)
    .await)?;
    one(row)
}

/// Users whose comparison form is not stored yet (rows from before it existed).
pub async fn without_username_key(db: &Db) -> StoreResult<Vec<(Uuid, String)>> {
    let rows: Vec<(Uuid, String)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT id, username FROM users WHERE username_key IS NULL ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Stores a row's comparison form; `Conflict` when another row has it.
pub async fn set_username_key(db: &Db, id: Uuid, key: &str) -> StoreResult<()> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE users SET username_key = $1 WHERE id = $2")
        .bind(key)
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    found(n)
}

pub async fn find_by_id(db: &Db, id: Uuid) -> StoreResult<Option<User>> {
    let row: Option<UserRow> = on_pool!(db, pool => sqlx::query_as(
        select_users!("WHERE id = $1"),
    )
    .bind(id)
    .fetch_optional(pool)
    .await)?;
    one(row)
}

pub async fn list(db: &Db) -> StoreResult<Vec<User>> {
    let rows: Vec<UserRow> = on_pool!(db, pool => sqlx::query_as(
        select_users!("ORDER BY created_at, username"),
    )
    .fetch_all(pool)
    .await)?;
    rows.into_iter().map(User::try_from).collect()
}

pub async fn count(db: &Db) -> StoreResult<i64> {
    let n: i64 = on_pool!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await)?;
    Ok(n)
}

/// Replaces the hash only if it is still `expected`, so a transparent rehash at login never
/// overwrites a password that was changed meanwhile.
pub async fn replace_password_hash(
    db: &Db,
    id: Uuid,
    expected: &str,
    new_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = on_pool!(db, pool => sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4",
    )
    .bind(new_hash)
    .bind(now)
    .bind(id)
    .bind(expected)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(result == 1)
}

pub async fn set_password_hash(
    db: &Db,
    id: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(hash)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    found(n)
}

pub async fn set_role(db: &Db, id: Uuid, role: Role, now: DateTime<Utc>) -> StoreResult<()> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(role.as_str())
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    found(n)
}

pub async fn set_active(db: &Db, id: Uuid, active: bool, now: DateTime<Utc>) -> StoreResult<()> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE users SET active = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(active)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))?;
    found(n)
}

pub async fn delete(db: &Db, id: Uuid) -> StoreResult<()> {
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    found(n)
}

/// The lockout gate's one atomic step: admits an attempt at a factor of the account unless it
/// is locked at `now`, counting the attempt as a failure in advance. The attempt that reaches
/// `threshold` locks the account at once until `provisional_until`, so no concurrent attempt
/// is admitted while its outcome is unknown. `None` when locked (nothing is counted); else the
/// count including this attempt.
pub async fn admit_attempt(
    db: &Db,
    id: Uuid,
    now: DateTime<Utc>,
    threshold: i32,
    provisional_until: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let n: Option<i32> = on_pool!(db, pool => sqlx::query_scalar(
        "UPDATE users SET failed_logins = failed_logins + 1, \
         locked_until = CASE WHEN failed_logins + 1 >= $3 THEN $4 ELSE locked_until END \
         WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2) RETURNING failed_logins",
    )
    .bind(id)
    .bind(now)
    .bind(threshold)
    .bind(provisional_until)
    .fetch_optional(pool)
    .await)?;
    Ok(n.map(i64::from))
}

/// Replaces the provisional lock of a failed attempt by its real end (if nothing replaced it
/// meanwhile).
pub async fn settle_lock(
    db: &Db,
    id: Uuid,
    provisional_until: DateTime<Utc>,
    until: DateTime<Utc>,
) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2 AND locked_until = $3")
        .bind(until)
        .bind(id)
        .bind(provisional_until)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Takes back an admitted attempt whose factor was right but did not complete a login (a
/// password before its second factor): its count and its provisional lock, nothing else.
pub async fn release_attempt(
    db: &Db,
    id: Uuid,
    provisional_until: DateTime<Utc>,
) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "UPDATE users SET failed_logins = CASE WHEN failed_logins > 0 THEN failed_logins - 1 ELSE 0 END, \
         locked_until = CASE WHEN locked_until = $2 THEN NULL ELSE locked_until END WHERE id = $1",
    )
    .bind(id)
    .bind(provisional_until)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Clears the failure count and any lock (after a successful login, or by an administrator).
pub async fn clear_failures(db: &Db, id: Uuid) -> StoreResult<()> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    found(n)
}

/// Invalidates every access token issued to the user so far.
/// Returns the new generation.
pub async fn bump_token_generation(db: &Db, id: Uuid) -> StoreResult<i64> {
    let generation: Option<i64> = on_pool!(db, pool => sqlx::query_scalar(
        "UPDATE users SET token_generation = token_generation + 1 WHERE id = $1 RETURNING token_generation",
    )
    .bind(id)
    .fetch_optional(pool)
    .await)?;
    generation.ok_or(StoreError::NotFound)
}

/// The names of the users `ids` (those that exist): `(id, username)`.
pub async fn usernames(db: &Db, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = on_pool!(db, pool => {
        let mut q = sqlx::QueryBuilder::new("SELECT id, username FROM users WHERE id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        list.push_unseparated(")");
        q.build_query_as().fetch_all(pool).await
    })?;
    Ok(rows)
}

/// The users with two-step verification on.
pub async fn with_mfa(db: &Db) -> StoreResult<Vec<Uuid>> {
    let rows = on_pool!(db, pool => sqlx::query_scalar("SELECT id FROM users WHERE mfa_enabled = $1")
        .bind(true)
        .fetch_all(pool)
        .await)?;
    Ok(rows)
}

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
    /// The API key (agent) holding the job while it runs.
    pub lease_owner: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The fencing token of the current lease: new at every claim, required from the agent for
    /// heartbeat, complete and fail, so a worker whose lease was lost cannot act on a later run.
    pub lease_token: Option<String>,
    pub result: Option<Json<Value>>,
    pub error: Option<String>,
    /// The labels an agent must have to claim the job: a JSON array of strings, sorted and
    /// without repeats; `None` when the job runs anywhere.
    pub requires: Option<Json<Value>>,
    /// How far the current run is, from 0 to 1, as its agent last reported it.
    pub progress: Option<f64>,
    /// What the agent said with its last progress report.
    pub progress_message: Option<String>,
    /// The exit status of the command the agent ran (`kyros agent`), when it reported one.
    pub exit_code: Option<i32>,
    /// The name of the agent that holds (or last held) the lease.
    pub agent_name: Option<String>,
}

macro_rules! select_jobs {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, description, status, priority, metadata, owner_id, version, attempts, \
             created_at, updated_at, started_at, completed_at, lease_owner, lease_expires_at, lease_token, result, error, \
             requires, progress, progress_message, exit_code, agent_name FROM jobs ",
            $tail
        )
    };
}

/// A row of `select_jobs!` read by [`super::sqlite_read`].
fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    use super::sqlite_read::{opt_json, opt_ts, opt_uuid, ts, uuid};
    Ok(JobRow {
        id: uuid(row, 0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        status: row.get(3)?,
        priority: row.get(4)?,
        metadata: opt_json(row, 5)?,
        owner_id: opt_uuid(row, 6)?,
        version: row.get(7)?,
        attempts: row.get(8)?,
        created_at: ts(row, 9)?,
        updated_at: ts(row, 10)?,
        started_at: opt_ts(row, 11)?,
        completed_at: opt_ts(row, 12)?,
        lease_owner: opt_uuid(row, 13)?,
        lease_expires_at: opt_ts(row, 14)?,
        lease_token: row.get(15)?,
        result: opt_json(row, 16)?,
        error: row.get(17)?,
        requires: opt_json(row, 18)?,
        progress: row.get(19)?,
        progress_message: row.get(20)?,
        exit_code: row.get(21)?,
        agent_name: row.get(22)?,
    })
}

pub async fn insert(db: &Db, job: &JobRow) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO jobs (id, name, description, status, priority, metadata, owner_id, version, attempts, created_at, updated_at, requires) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
    .bind(&job.requires)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Inserts `jobs` in one statement (a multi-row `INSERT` of the columns [`insert`] writes, one
/// round trip). For bulk loads (the seeding of `bench/scale_seed.rs`): at most
/// [`super::BULK_ROWS`] rows per call. A duplicate id fails the whole statement.
pub async fn insert_many(db: &Db, jobs: &[JobRow]) -> StoreResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    assert!(
        jobs.len() <= super::BULK_ROWS,
        "insert_many takes at most BULK_ROWS rows"
    );
    on_pool!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO jobs (id, name, description, status, priority, metadata, owner_id, version, attempts, created_at, updated_at, requires) ",
        );
        q.push_values(jobs, |mut b, job| {
            b.push_bind(job.id)
                .push_bind(&job.name)
                .push_bind(&job.description)
                .push_bind(&job.status)
                .push_bind(job.priority)
                .push_bind(&job.metadata)
                .push_bind(job.owner_id)
                .push_bind(job.version)
                .push_bind(job.attempts)
                .push_bind(job.created_at)
                .push_bind(job.updated_at)
                .push_bind(&job.requires);
        });
        q.build().execute(pool).await.map(|_| ())
    })?;
    Ok(())
}

pub async fn find(db: &Db, id: Uuid) -> StoreResult<Option<JobRow>> {
    if let Some(reader) = db.point_reader() {
        return reader.one(
            select_jobs!("WHERE id = ?1"),
            [id.as_bytes().as_slice()],
            job_from_row,
        );
    }
    let row = on_pool!(db, pool => sqlx::query_as(select_jobs!("WHERE id = $1")).bind(id).fetch_optional(pool).await)?;
    Ok(row)
}

/// The next job to claim from the shared queue (SQLite form; PostgreSQL adds `FOR UPDATE SKIP
/// LOCKED`): index `jobs_claim`.
/// `$1` is the agent's labels (a JSON array): a job is claimable when it requires no label or
/// only labels of that array.
pub const CLAIM_ANY_SQL: &str = select_jobs!(
    "WHERE status = 'pending' AND (requires IS NULL OR NOT EXISTS \
     (SELECT 1 FROM json_each(jobs.requires) r WHERE r.value NOT IN (SELECT value FROM json_each($1)))) \
     ORDER BY priority DESC, created_at, id LIMIT 1"
);
/// The next job of one owner to claim (SQLite form): index `jobs_owner_claim`. `$1` the owner,
/// `$2` the agent's labels.
pub const CLAIM_OWN_SQL: &str = select_jobs!(
    "WHERE status = 'pending' AND owner_id = $1 AND (requires IS NULL OR NOT EXISTS \
     (SELECT 1 FROM json_each(jobs.requires) r WHERE r.value NOT IN (SELECT value FROM json_each($2)))) \
     ORDER BY priority DESC, created_at, id LIMIT 1"
);

/// [`CLAIM_ANY_SQL`] on PostgreSQL: `$1` the agent's labels (JSONB containment), the row locked
/// and rows other claimers hold skipped.
pub const CLAIM_ANY_PG: &str = select_jobs!(
    "WHERE status = 'pending' AND (requires IS NULL OR requires <@ $1) \
     ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
);
/// [`CLAIM_OWN_SQL`] on PostgreSQL: `$1` the owner, `$2` the agent's labels.
pub const CLAIM_OWN_PG: &str = select_jobs!(
    "WHERE status = 'pending' AND owner_id = $1 AND (requires IS NULL OR requires <@ $2) \
     ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
);

/// Leases that ended before `$1` (at most 500 at a time): index `jobs_lease_expiry`.
pub const EXPIRED_LEASES_SQL: &str = select_jobs!(
    "WHERE lease_owner IS NOT NULL AND lease_expires_at < $1 AND status = 'running' LIMIT 500"
);
/// [`EXPIRED_LEASES_SQL`] on SQLite, which names its index: without statistics SQLite's planner
/// prefers the equality on `status` (`jobs_claim`) and walked every running job — over a second
/// per sweep and per claim with 200 000 running jobs (`bench/scale.sh`). `INDEXED BY` fails the
/// statement rather than plan without the index.
pub const EXPIRED_LEASES_SQLITE: &str = select_jobs!(
    "INDEXED BY jobs_lease_expiry \
     WHERE lease_owner IS NOT NULL AND lease_expires_at < $1 AND status = 'running' LIMIT 500"
);
/// The running jobs an agent holds: index `jobs_lease_owner`.
pub const LEASED_BY_SQL: &str =
    select_jobs!("WHERE lease_owner = $1 AND lease_owner IS NOT NULL AND status = 'running'");
/// [`LEASED_BY_SQL`] on SQLite, naming its index for the same reason.
pub const LEASED_BY_SQLITE: &str = select_jobs!(
    "INDEXED BY jobs_lease_owner \
     WHERE lease_owner = $1 AND lease_owner IS NOT NULL AND status = 'running'"
);

/// What a job list is ordered by (ties broken by id in the same direction, so pages are stable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortField {
    /// Submission time (the default, and the only order keyset pages follow).
    #[default]
    CreatedAt,
    UpdatedAt,
    Priority,
    /// The title (`name`), compared as stored.
    Title,
    Status,
}

impl SortField {
    fn column(self) -> &'static str {
        match self {
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
            SortField::Priority => "priority",
            SortField::Title => "name",
            SortField::Status => "status",
        }
    }
}

/// Which jobs a list reads: one status, one owner, a title search, a submission window, and
/// (keyset pagination, default order only) only those after a job in the list's order.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    pub owner: Option<Uuid>,
    /// The `(created_at, id)` of the last job of the previous page.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// A `LIKE` pattern matched against the lower-cased title ([`like_pattern`] builds it).
    pub title_like: Option<&'a str>,
    /// Submitted at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Submitted before.
    pub created_to: Option<DateTime<Utc>>,
    pub sort: SortField,
    /// Ascending instead of the default descending order.
    pub ascending: bool,
}

/// The `LIKE` pattern (escape character `\`) that finds `text` anywhere in a lower-cased title:
/// `%`, `_` and `\` of the text match themselves.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The `WHERE` conditions of `filter` from placeholder `$1` on, and the next placeholder
/// number. The order of the placeholders is the order [`bind_filter`] binds them in.
fn filter_conditions(filter: &ListFilter<'_>) -> (Vec<String>, usize) {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.status.is_some() {
        conditions.push(format!("status = ${}", next()));
    }
    if filter.owner.is_some() {
        conditions.push(format!("owner_id = ${}", next()));
    }
    if filter.title_like.is_some() {
        conditions.push(format!("LOWER(name) LIKE ${} ESCAPE '\\'", next()));
    }
    if filter.created_from.is_some() {
        conditions.push(format!("created_at >= ${}", next()));
    }
    if filter.created_to.is_some() {
        conditions.push(format!("created_at < ${}", next()));
    }
    (conditions, n)
}

/// The SQL of [`list`] for `filter`: only the conditions that apply, so that each combination
/// has an index in the list's order (`jobs_page`, `jobs_owner_page`, `jobs_status_page`) and a
/// keyset page reads its own rows only. Placeholders in the order [`list`] binds them.
pub fn list_sql(filter: &ListFilter<'_>) -> String {
    let (mut conditions, mut n) = filter_conditions(filter);
    let mut next = || {
        n += 1;
        n
    };
    if filter.after.is_some() {
        let (at, id) = (next(), next());
        conditions.push(format!("(created_at, id) < (${at}, ${id})"));
    }
    let limit = next();
    let offset = next();
    let mut sql = String::from(select_jobs!(""));
    if !conditions.is_empty() {
        sql.push_str("WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    let direction = if filter.ascending { "ASC" } else { "DESC" };
    let column = filter.sort.column();
    if filter.sort == SortField::CreatedAt {
        sql.push_str(&format!(
            " ORDER BY created_at {direction}, id {direction} LIMIT ${limit} OFFSET ${offset}"
        ));
    } else {
        sql.push_str(&format!(
            " ORDER BY {column} {direction}, created_at {direction}, id {direction} LIMIT ${limit} OFFSET ${offset}"
        ));
    }
    sql
}

/// Binds the values of [`filter_conditions`].
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let mut query = $query;
        let filter = $filter;
        if let Some(status) = filter.status {
            query = query.bind(status);
        }
        if let Some(owner) = filter.owner {
            query = query.bind(owner);
        }
        if let Some(like) = filter.title_like {
            query = query.bind(like);
        }
        if let Some(from) = filter.created_from {
            query = query.bind(from);
        }
        if let Some(to) = filter.created_to {
            query = query.bind(to);
        }
        query
    }};
}

/// Newest first (ties broken by id, so pages are stable) unless `filter` sorts otherwise,
/// `limit` jobs after skipping `skip`.
pub async fn list(
    db: &Db,
    filter: ListFilter<'_>,
    skip: i64,
    limit: i64,
) -> StoreResult<Vec<JobRow>> {
    let sql = list_sql(&filter);
    let rows = on_pool!(db, pool => {
        // Built from this module's own fragments only; every value is bound.
        let mut query = bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())), &filter);
        if let Some((at, id)) = filter.after {
            query = query.bind(at).bind(id);
        }
        query.bind(limit).bind(skip).fetch_all(pool).await
    })?;
    Ok(rows)
}

/// How many jobs match `filter` (its paging and order ignored).
pub async fn count(db: &Db, filter: ListFilter<'_>) -> StoreResult<i64> {
    let (conditions, _) = filter_conditions(&filter);
    let mut sql = String::from("SELECT COUNT(*) FROM jobs");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    let n: i64 = on_pool!(db, pool => {
        // Built from this module's own fragments only; every value is bound.
        bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())), &filter)
            .fetch_one(pool)
            .await
    })?;
    Ok(n)
}

/// Jobs per status (of one owner, when given): `(status, count)`, statuses without jobs left out.
pub async fn count_by_status(db: &Db, owner: Option<Uuid>) -> StoreResult<Vec<(String, i64)>> {
    let rows = on_pool!(db, pool => match owner {
        Some(owner) => sqlx::query_as(
            "SELECT status, COUNT(*) FROM jobs WHERE owner_id = $1 GROUP BY status",
        )
        .bind(owner)
        .fetch_all(pool)
        .await,
        None => sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            .fetch_all(pool)
            .await,
    })?;
    Ok(rows)
}

/// The pending job submitted first (of one owner, when given): the head of the backlog's age.
pub async fn oldest_pending(db: &Db, owner: Option<Uuid>) -> StoreResult<Option<JobRow>> {
    let row = on_pool!(db, pool => match owner {
        Some(owner) => sqlx::query_as(select_jobs!(
            "WHERE status = 'pending' AND owner_id = $1 ORDER BY created_at, id LIMIT 1"
        ))
        .bind(owner)
        .fetch_optional(pool)
        .await,
        None => sqlx::query_as(select_jobs!(
            "WHERE status = 'pending' ORDER BY created_at, id LIMIT 1"
        ))
        .fetch_optional(pool)
        .await,
    })?;
    Ok(row)
}

/// Which time a series counts jobs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesTime {
    /// Submissions, by `created_at`.
    Created,
    /// Completions and failures, by `completed_at`.
    Finished,
}

/// Jobs per `bucket_secs`-long bucket (bucket = seconds since the epoch / `bucket_secs`) and
/// status since `from`, of one owner when given: `(bucket, status, count)`. Counted by the
/// database (index `jobs_page` for submissions, `jobs_finished` for completions).
pub async fn series(
    db: &Db,
    time: SeriesTime,
    owner: Option<Uuid>,
    from: DateTime<Utc>,
    bucket_secs: i64,
) -> StoreResult<Vec<(i64, String, i64)>> {
    let column = match time {
        SeriesTime::Created => "created_at",
        SeriesTime::Finished => "completed_at",
    };
    let bucket = match db {
        Db::Sqlite(_) => format!("CAST(strftime('%s', {column}) AS INTEGER) / $2"),
        Db::Postgres(_) => format!("CAST(FLOOR(EXTRACT(EPOCH FROM {column}) / $2) AS BIGINT)"),
    };
    let statuses = match time {
        SeriesTime::Created => "",
        SeriesTime::Finished => " AND status IN ('completed', 'failed')",
    };
    let owner_condition = if owner.is_some() {
        " AND owner_id = $3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {bucket} AS bucket, status, COUNT(*) FROM jobs \
         WHERE {column} >= $1{statuses}{owner_condition} GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let rows = on_pool!(db, pool => {
        // Built from this function's own fragments only; every value is bound.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(from)
            .bind(bucket_secs);
        if let Some(owner) = owner {
            query = query.bind(owner);
        }
        query.fetch_all(pool).await
    })?;
    Ok(rows)
}

/// Applies a status change if the job is still at `version`; false when someone changed it first.
pub async fn update_status(db: &Db, job: &JobRow, expected_version: i32) -> StoreResult<bool> {
    let n = on_pool!(db, pool => bind_update(sqlx::query(UPDATE_STATUS), job, expected_version)
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

/// The status-change statement of [`update_status`] and [`claim_next`].
const UPDATE_STATUS: &str = "UPDATE jobs SET status = $1, started_at = $2, completed_at = $3, updated_at = $4, attempts = $5, \
     lease_owner = $6, lease_expires_at = $7, result = $8, error = $9, lease_token = $12, \
     progress = $13, progress_message = $14, exit_code = $15, agent_name = $16, version = version + 1 \
     WHERE id = $10 AND version = $11";

/// Hands the next pending job (highest priority, then oldest; of `owner` only, when given;
/// requiring no label outside `labels`) to whoever calls, as `start` turns it (the orchestrator's state machine and lease; `None` leaves
/// it) — atomically:
/// no job is ever handed out twice, and `None` means no job was waiting (never "someone else
/// was faster"). PostgreSQL locks the row it picks and skips rows other claimers hold
/// (`FOR UPDATE SKIP LOCKED`); SQLite picks and writes under its write lock (`BEGIN
/// IMMEDIATE`), so claimers take turns.
pub async fn claim_next(
    db: &Db,
    owner: Option<Uuid>,
    labels: &[String],
    start: impl Fn(&JobRow) -> Option<JobRow>,
) -> StoreResult<Option<JobRow>> {
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let row: Option<JobRow> = match owner {
                Some(owner) => sqlx::query_as(CLAIM_OWN_PG).bind(owner).bind(Json(labels)),
                None => sqlx::query_as(CLAIM_ANY_PG).bind(Json(labels)),
            }
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.commit().await?;
                return Ok(None);
            };
            let Some(mut next) = start(&row) else {
                tx.commit().await?;
                return Ok(None);
            };
            bind_update(sqlx::query(UPDATE_STATUS), &next, row.version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            next.version = row.version + 1;
            Ok(Some(next))
        }
        Db::Sqlite(super::SqliteDb { pool, .. }) => {
            // The pick and the write in one write transaction: `BEGIN IMMEDIATE` takes SQLite's
            // write lock before the read, so concurrent claimers queue for it and each one picks
            // the head the previous one left. Picking outside the lock and writing conditionally
            // made claimers race for the same head; one that lost 16 races in a row answered
            // "no job waiting" (204) with thousands waiting — a third of the claims of
            // bench/scale.sh at 32 connections.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            // One statement per form, each matching its index (jobs_claim, jobs_owner_claim).
            let row: Option<JobRow> = match owner {
                Some(owner) => sqlx::query_as(CLAIM_OWN_SQL).bind(owner).bind(Json(labels)),
                None => sqlx::query_as(CLAIM_ANY_SQL).bind(Json(labels)),
            }
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.commit().await?;
                return Ok(None);
            };
            let Some(mut next) = start(&row) else {
                tx.commit().await?;
                return Ok(None);
            };
            let n = bind_update(sqlx::query(UPDATE_STATUS), &next, row.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            // Under the write lock nobody can have changed the row since it was read.
            debug_assert_eq!(n, 1);
            next.version = row.version + 1;
            Ok(Some(next))
        }
    }
}

fn bind_update<'q, DB: sqlx::Database>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    job: &'q JobRow,
    expected_version: i32,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<DateTime<Utc>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Uuid>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Json<Value>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(&job.status)
        .bind(job.started_at)
        .bind(job.completed_at)
        .bind(job.updated_at)
        .bind(job.attempts)
        .bind(job.lease_owner)
        .bind(job.lease_expires_at)
        .bind(&job.result)
        .bind(&job.error)
        .bind(job.id)
        .bind(expected_version)
        .bind(&job.lease_token)
        .bind(job.progress)
        .bind(&job.progress_message)
        .bind(job.exit_code)
        .bind(&job.agent_name)
}

/// Running jobs whose lease ran out.
pub async fn expired_leases(db: &Db, now: DateTime<Utc>) -> StoreResult<Vec<JobRow>> {
    let rows = match db {
        Db::Sqlite(sqlite) => {
            sqlx::query_as(EXPIRED_LEASES_SQLITE)
                .bind(now)
                .fetch_all(&sqlite.pool)
                .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as(EXPIRED_LEASES_SQL)
                .bind(now)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows)
}

/// Running jobs held by an agent.
pub async fn leased_by(db: &Db, agent: Uuid) -> StoreResult<Vec<JobRow>> {
    let rows = match db {
        Db::Sqlite(sqlite) => {
            sqlx::query_as(LEASED_BY_SQLITE)
                .bind(agent)
                .fetch_all(&sqlite.pool)
                .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as(LEASED_BY_SQL)
                .bind(agent)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows)
}

/// An agent as recorded: the API key it claims with, and what it said about itself at its last
/// claim or heartbeat.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub key_id: Uuid,
    /// The name the agent gave (`kyros agent --name`), or its key's name.
    pub name: String,
    pub owner_id: Option<Uuid>,
    pub last_seen_at: DateTime<Utc>,
    /// Its labels (a JSON array of strings).
    pub labels: Option<Json<Value>>,
    pub version: Option<String>,
    pub host: Option<String>,
    pub runs_completed: i64,
    pub runs_failed: i64,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// What an agent says about itself when it claims or heartbeats; `None` fields keep the recorded
/// value.
#[derive(Debug, Clone, Default)]
pub struct AgentInfo {
    pub name: String,
    pub labels: Option<Vec<String>>,
    pub version: Option<String>,
    pub host: Option<String>,
}

/// Records that the agent `key_id` of `owner_id` was seen at `now`, with what it said.
pub async fn touch_agent(
    db: &Db,
    key_id: Uuid,
    info: &AgentInfo,
    owner_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO agents (key_id, name, owner_id, last_seen_at, labels, version, host) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (key_id) DO UPDATE SET name = $2, owner_id = $3, last_seen_at = $4, \
         labels = COALESCE($5, agents.labels), version = COALESCE($6, agents.version), \
         host = COALESCE($7, agents.host)",
    )
    .bind(key_id)
    .bind(&info.name)
    .bind(owner_id)
    .bind(now)
    .bind(info.labels.as_ref().map(Json))
    .bind(&info.version)
    .bind(&info.host)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Counts a finished run of the agent (`completed` or failed) at `at`.
pub async fn record_run(
    db: &Db,
    key_id: Uuid,
    completed: bool,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let sql = if completed {
        "UPDATE agents SET runs_completed = runs_completed + 1, last_run_at = $2 WHERE key_id = $1"
    } else {
        "UPDATE agents SET runs_failed = runs_failed + 1, last_run_at = $2 WHERE key_id = $1"
    };
    on_pool!(db, pool => sqlx::query(sql)
        .bind(key_id)
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// The agents, most recently seen first (at most 1 000).
pub async fn agents(db: &Db) -> StoreResult<Vec<AgentRow>> {
    let rows = on_pool!(db, pool => sqlx::query_as(
        "SELECT key_id, name, owner_id, last_seen_at, labels, version, host, runs_completed, \
         runs_failed, last_run_at FROM agents ORDER BY last_seen_at DESC, key_id LIMIT 1000",
    )
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// The agent recorded for API key `key_id`.
pub async fn agent(db: &Db, key_id: Uuid) -> StoreResult<Option<AgentRow>> {
    let row = on_pool!(db, pool => sqlx::query_as(
        "SELECT key_id, name, owner_id, last_seen_at, labels, version, host, runs_completed, \
         runs_failed, last_run_at FROM agents WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await)?;
    Ok(row)
}

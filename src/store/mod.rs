//! Database access. One schema, migrations for both engines, the same queries on both
//! (SQLite understands the `$N` placeholders PostgreSQL uses).

pub mod api_keys;
pub mod audit;
pub mod events;
pub mod identities;
pub mod jobs;
pub mod mfa;
pub mod output;
pub mod redis;
pub mod sessions;
pub mod sqlite_read;
pub mod tasks;
pub mod tokens;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{Settings, create_private_dir};

pub const SQLITE_FILE_NAME: &str = "kyros.db";

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// The SQLite database: the sqlx pool (writes and most reads) and, for a database file, the
/// [`sqlite_read::Reader`] of the request path's point reads.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pub pool: SqlitePool,
    pub reader: Option<std::sync::Arc<sqlite_read::Reader>>,
}

/// Rows per call of the bulk-load functions ([`jobs::insert_many`], [`events::append_many`]):
/// 2 000 rows of at most 11 columns stay under SQLite's 32 766 bind parameters.
pub const BULK_ROWS: usize = 2_000;

/// After a bulk load (the scale benchmark's seeding): SQLite folds its write-ahead log into the
/// database file (`wal_checkpoint(TRUNCATE)`), PostgreSQL refreshes the planner's statistics
/// (`ANALYZE`) — what a service that grew its data over time would already have.
pub async fn maintain_after_bulk_load(db: &Db) -> StoreResult<()> {
    match db {
        Db::Sqlite(sqlite) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&sqlite.pool)
                .await?;
        }
        Db::Postgres(pool) => {
            sqlx::query("ANALYZE").execute(pool).await?;
        }
    }
    Ok(())
}

/// Bytes of write-ahead log SQLite keeps on disk after it resets the log (`PRAGMA
/// journal_size_limit`): 64 MiB. Without it the file keeps the largest size it ever reached.
pub const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How often a running service folds SQLite's write-ahead log into the database file
/// ([`checkpoint_wal`]): every 30 s.
pub const WAL_CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// Folds SQLite's write-ahead log into the database file and truncates it
/// (`PRAGMA wal_checkpoint(TRUNCATE)`); nothing on PostgreSQL. Answers whether the log was
/// fully written back (`false`: a reader or writer held it for the busy timeout, 5 s; the next
/// pass tries again).
///
/// SQLite's automatic checkpoint is `PASSIVE`: it never waits, and it restarts the log only
/// when the log is idle. Under a constant stream of requests the log is never idle, and it
/// grew without bound (30 GB during a `bench/scale.sh` seeding). A `TRUNCATE` checkpoint waits,
/// within the busy timeout, for the readers of the log to finish (the request path's reads
/// take microseconds), then starts the log again from zero. Source: sqlite.org/wal.html
/// ("Avoiding Excessively Large WAL Files") and sqlite.org/pragma.html#pragma_wal_checkpoint.
pub async fn checkpoint_wal(db: &Db) -> StoreResult<bool> {
    let Db::Sqlite(sqlite) = db else {
        return Ok(true);
    };
    // (busy, log frames, frames checkpointed); busy = 1 when it could not finish.
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&sqlite.pool)
        .await?;
    Ok(busy == 0)
}

impl Db {
    /// The synchronous reader of the request path's point reads: SQLite files only.
    pub fn point_reader(&self) -> Option<&sqlite_read::Reader> {
        match self {
            Db::Sqlite(db) => db.reader.as_deref(),
            Db::Postgres(_) => None,
        }
    }
}

/// Runs the same body against whichever pool is configured; the body is compiled once per engine.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.pool;
                $body
            }
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; the value names the field.
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let text = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
                let field = if text.contains("email") {
                    "email"
                } else if text.contains("username") {
                    "username"
                } else {
                    "record"
                };
                StoreError::Conflict(field)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How a store failure reaches a client: 503 with `Retry-After` while the database is
/// unreachable, else a 500 — never its text.
impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                crate::error::ApiError::unavailable("Service temporarily unavailable", cause)
            }
            other => crate::error::ApiError::internal(other),
        }
    }
}

/// `NotFound` when an update or delete by id touched no row.
pub fn found(rows_affected: u64) -> StoreResult<()> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

impl Db {
    /// PostgreSQL when DATABASE_URL says so, otherwise SQLite (the URL's file, or
    /// `kyros.db` in the data directory).
    pub async fn connect(settings: &Settings) -> anyhow::Result<Db> {
        match settings.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") => {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot connect to PostgreSQL: {}", redact_db_error(&e))
                    })?;
                Ok(Db::Postgres(pool))
            }
            url => {
                let options = match url {
                    Some(url) => SqliteConnectOptions::from_str(url)
                        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid SQLite URL"))?,
                    None => {
                        create_private_dir(&settings.data_dir)?;
                        SqliteConnectOptions::new()
                            .filename(settings.data_dir.join(SQLITE_FILE_NAME))
                    }
                };
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
                let reader =
                    sqlite_read::Reader::new(options.get_filename()).map(std::sync::Arc::new);
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot open the SQLite database: {e}"))?;
                Ok(Db::Sqlite(SqliteDb { pool, reader }))
            }
        }
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Pings the database within `timeout`. The log line names the kind of failure only.
    pub async fn check(&self, timeout: std::time::Duration) -> crate::model::DbCheck {
        let start = std::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, self.ping()).await;
        let latency = start.elapsed();
        let healthy = match outcome {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                let kind = match e {
                    StoreError::Unavailable(_) => "unavailable",
                    _ => "error",
                };
                tracing::warn!(kind, engine = self.engine(), "database ping failed");
                false
            }
            Err(_) => {
                tracing::warn!(engine = self.engine(), "database ping timed out");
                false
            }
        };
        crate::model::DbCheck { healthy, latency }
    }

    /// Connections of the pool: (open, idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        on_pool!(self, pool => (pool.size(), pool.num_idle()))
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(SqliteDb { pool, .. }) => {
                sqlx::migrate!("src/store/migrations/sqlite")
                    .run(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::migrate!("src/store/migrations/postgres")
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Connection errors can carry the URL (with its password); keep only the kind of failure.
fn redact_db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => format!("{}", io.kind()),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Configuration(_) => "invalid DATABASE_URL".into(),
        other => {
            let text = other.to_string();
            if text.contains("://") {
                "connection failed".into()
            } else {
                text
            }
        }
    }
}

//! Point reads of the request path on SQLite, run on the calling thread.
//!
//! sqlx's SQLite driver runs every connection on a thread of its own: a query is a message to
//! that thread and a wake-up back, two futex hand-offs and two context switches, and the profile
//! of an authenticated `GET /api/v1/jobs/{id}` showed more than half of the server's CPU in
//! them (`docs/benchmarks.md`). The few reads every request makes — a job by id, a session by
//! token hash, an API key by lookup id — are primary-key or unique-index lookups that SQLite
//! answers in microseconds, so they run here, synchronously, on read-only connections of the same
//! database file (WAL mode: a reader sees every committed write and never blocks the writer).
//! Everything else, and every write, stays on the sqlx pool; the store functions keep one API
//! for both engines and choose the path inside.
//!
//! The columns are decoded as sqlx encodes them: UUIDs as 16-byte blobs, timestamps as RFC 3339
//! text, JSON as text.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use uuid::Uuid;

use super::StoreError;

/// Idle read connections kept (one per worker thread is enough; more are opened under load
/// and closed when returned to a full pool).
const IDLE_MAX: usize = 8;

/// Read-only connections to the service's SQLite file.
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    /// A reader of the database file at `path` (no connection is opened yet). `None` for an
    /// in-memory database, which another connection cannot see.
    pub fn new(path: &Path) -> Option<Reader> {
        let name = path.to_string_lossy();
        if name.is_empty() || name == ":memory:" || name.starts_with("file::memory:") {
            return None;
        }
        Some(Reader {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Runs `f` on an idle connection (opened when none is idle).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(unavailable)?,
        };
        let out = f(&conn).map_err(other);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_MAX
        {
            idle.push(conn);
        }
        out
    }

    /// One row of `sql` (a cached prepared statement) with `params`, decoded by `decode`.
    pub fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        decode: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(sql)?
                .query_row(params, decode)
                .optional()
        })
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn other(e: rusqlite::Error) -> StoreError {
    StoreError::Other(e.to_string())
}

fn conversion(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

/// A UUID column (a 16-byte blob, as sqlx writes it).
pub fn uuid(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let bytes: Vec<u8> = row.get(i)?;
    Uuid::from_slice(&bytes).map_err(|e| conversion(i, e))
}

pub fn opt_uuid(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    let bytes: Option<Vec<u8>> = row.get(i)?;
    bytes
        .map(|b| Uuid::from_slice(&b).map_err(|e| conversion(i, e)))
        .transpose()
}

fn parse_ts(i: usize, s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| conversion(i, e))
}

/// A timestamp column (RFC 3339 text, as sqlx writes it).
pub fn ts(row: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let s: String = row.get(i)?;
    parse_ts(i, &s)
}

pub fn opt_ts(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| parse_ts(i, &s)).transpose()
}

/// A JSON column (text).
pub fn opt_json(
    row: &Row<'_>,
    i: usize,
) -> rusqlite::Result<Option<sqlx::types::Json<serde_json::Value>>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| {
        serde_json::from_str(&s)
            .map(sqlx::types::Json)
            .map_err(|e| conversion(i, e))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_memory_database_has_no_reader() {
        assert!(Reader::new(Path::new(":memory:")).is_none());
        assert!(Reader::new(Path::new("")).is_none());
        assert!(Reader::new(Path::new("/tmp/kyros.db")).is_some());
    }

    #[test]
    fn columns_decode_as_sqlx_encodes_them() {
        let conn = Connection::open_in_memory().expect("open");
        let id = Uuid::new_v4();
        let at = "2026-11-29T18:42:39.218815+00:00";
        let (u, t, n, j) = conn
            .query_row(
                "SELECT ?1, ?2, NULL, '{\"a\":1}'",
                rusqlite::params![id.as_bytes().to_vec(), at],
                |row| {
                    Ok((
                        uuid(row, 0)?,
                        ts(row, 1)?,
                        opt_ts(row, 2)?,
                        opt_json(row, 3)?,
                    ))
                },
            )
            .expect("row");
        assert_eq!(u, id);
        assert_eq!(t.to_rfc3339(), "2026-11-29T18:42:39.218815+00:00");
        assert_eq!(n, None);
        assert_eq!(j.map(|j| j.0), Some(serde_json::json!({"a": 1})));
    }
}

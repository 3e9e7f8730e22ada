//! The `job_output` table: the lines a job's agent sent while it ran (`kyros agent` streams the
//! command's stdout and stderr), numbered per job (`seq`, from 1), with the counters on the job
//! row (`output_seq`, `output_bytes`, `output_truncated`) that bound them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, StoreResult};
use crate::on_pool;

/// A stored line.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutputLine {
    /// The line's number in the job's output, from 1, in the order the agent sent them.
    pub seq: i64,
    /// The run that printed it (`attempts + 1` of the job at the time).
    pub attempt: i32,
    /// `stdout`, `stderr` or `system` (the service's own marker lines).
    pub stream: String,
    /// When the agent read the line.
    pub at: DateTime<Utc>,
    pub line: String,
}

/// What [`append`] kept.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The lines as stored (with their numbers); the marker line included when this call used
    /// up the budget.
    pub lines: Vec<OutputLine>,
    /// Lines of the call that were not stored (over the budget).
    pub dropped: usize,
    /// Whether the job's output is truncated (now or before).
    pub truncated: bool,
}

/// The line stored once, instead of everything after it, when a job's output passes its budget.
pub fn truncation_marker(max_bytes: i64) -> String {
    format!(
        "[output truncated: this job's output reached the limit of {max_bytes} bytes; later lines were dropped]"
    )
}

/// Appends `lines` (stream, time, text) to the output of job `job_id` if its lease token is
/// still `lease_token` and it is running: `None` otherwise (nothing is written). Lines are kept
/// in order while the job's total stays within `max_bytes` (each line counts its UTF-8 length
/// plus one); the first line that does not fit is replaced by [`truncation_marker`] and the job
/// is marked truncated, after which every line is dropped. One transaction with the job's row
/// locked (PostgreSQL `FOR UPDATE`, SQLite `BEGIN IMMEDIATE`), so concurrent appends of one job
/// number their lines without gaps or repeats.
pub async fn append(
    db: &Db,
    job_id: Uuid,
    lease_token: &str,
    attempt: i32,
    lines: &[(String, DateTime<Utc>, String)],
    max_bytes: i64,
) -> StoreResult<Option<Appended>> {
    let (begin, read) = match db {
        Db::Sqlite(_) => (
            "BEGIN IMMEDIATE",
            "SELECT output_seq, output_bytes, output_truncated FROM jobs \
             WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        ),
        Db::Postgres(_) => (
            "BEGIN",
            "SELECT output_seq, output_bytes, output_truncated FROM jobs \
             WHERE id = $1 AND lease_token = $2 AND status = 'running' FOR UPDATE",
        ),
    };
    let appended = on_pool!(db, pool => {
        let mut tx = pool.begin_with(begin).await?;
        let counters: Option<(i64, i64, bool)> = sqlx::query_as(read)
            .bind(job_id)
            .bind(lease_token)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((mut seq, mut bytes, mut truncated)) = counters else {
            tx.commit().await?;
            return Ok(None);
        };
        let mut kept = Vec::new();
        let mut dropped = 0;
        for (stream, at, line) in lines {
            if truncated {
                dropped += 1;
                continue;
            }
            let size = line.len() as i64 + 1;
            if bytes + size > max_bytes {
                truncated = true;
                dropped += 1;
                seq += 1;
                kept.push(OutputLine {
                    seq,
                    attempt,
                    stream: "system".to_owned(),
                    at: *at,
                    line: truncation_marker(max_bytes),
                });
                continue;
            }
            bytes += size;
            seq += 1;
            kept.push(OutputLine {
                seq,
                attempt,
                stream: stream.clone(),
                at: *at,
                line: line.clone(),
            });
        }
        for chunk in kept.chunks(super::BULK_ROWS / 4) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO job_output (job_id, seq, attempt, stream, at, line) ",
            );
            q.push_values(chunk, |mut b, l| {
                b.push_bind(job_id)
                    .push_bind(l.seq)
                    .push_bind(l.attempt)
                    .push_bind(&l.stream)
                    .push_bind(l.at)
                    .push_bind(&l.line);
            });
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE jobs SET output_seq = $1, output_bytes = $2, output_truncated = $3 WHERE id = $4",
        )
        .bind(seq)
        .bind(bytes)
        .bind(truncated)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Appended {
            lines: kept,
            dropped,
            truncated,
        }
    });
    Ok(Some(appended))
}

/// The job's counters: `(lines, bytes, truncated)`; `None` without such a job.
pub async fn counters(db: &Db, job_id: Uuid) -> StoreResult<Option<(i64, i64, bool)>> {
    let row = on_pool!(db, pool => sqlx::query_as(
        "SELECT output_seq, output_bytes, output_truncated FROM jobs WHERE id = $1",
    )
    .bind(job_id)
    .fetch_optional(pool)
    .await)?;
    Ok(row)
}

/// At most `limit` lines of the job after line `after_seq`, in order (primary key range).
pub async fn after(
    db: &Db,
    job_id: Uuid,
    after_seq: i64,
    limit: i64,
) -> StoreResult<Vec<OutputLine>> {
    let rows = on_pool!(db, pool => sqlx::query_as(
        "SELECT seq, attempt, stream, at, line FROM job_output \
         WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(job_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await)?;
    Ok(rows)
}

/// Deletes output lines written before `cutoff` (retention); the number deleted.
pub async fn purge_before(db: &Db, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM job_output WHERE at < $1")
        .bind(cutoff)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n)
}

//! Seeds a database for the scale rows of `bench/scale.sh` with the service's own store code:
//! owners (users who cannot log in: their password hash is no hash), jobs in mixed states spread
//! over them and over the last 30 days, and orchestrator events about those jobs. Jobs and events
//! go in [`BULK_ROWS`] at a time (`store::jobs::insert_many`, `store::events::append_many`).
//!
//!   cargo run --release --example scale_seed -- --jobs 1000000 --owners 10000 --events 1000000
//!   cargo run --release --example scale_seed -- --jobs 40000 --owners 1 --events 0 --status pending
//!
//! `--status S` gives every job that status (default: the five states in turn).
//!
//! The database is the one `kyros serve` would open (`DATABASE_URL`, else SQLite in
//! `KYROS_DATA_DIR`); migrations run first. Prints `key=value` lines: counts and seconds.

use std::time::Instant;

use chrono::{Duration, Utc};
use futures_util::stream::{self, StreamExt};
use kyros::config::Settings;
use kyros::model::Role;
use kyros::store::events::EventRow;
use kyros::store::jobs::JobRow;
use kyros::store::users::NewUser;
use kyros::store::{BULK_ROWS, Db};
use uuid::Uuid;

const STATES: [&str; 5] = ["pending", "running", "completed", "failed", "cancelled"];
/// Concurrent multi-row inserts on PostgreSQL (it overlaps them); SQLite serialises writes, so
/// it gets one at a time rather than writers waiting on each other's locks.
const PG_CONCURRENCY: usize = 4;
/// Rows between two maintenance passes: under a constant stream of writes SQLite's automatic
/// checkpoint never finds the log idle, and the write-ahead log grows without bound (30 GB for
/// 2 M rows here) unless it is checkpointed between chunks; PostgreSQL refreshes its statistics.
const CHUNK: usize = 500_000;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs = arg("--jobs", 1_000_000);
    let owners = arg("--owners", 10_000).max(1);
    let events = arg("--events", 1_000_000);
    let args: Vec<String> = std::env::args().collect();
    let status: Option<&'static str> =
        match args.iter().position(|a| a == "--status") {
            None => None,
            Some(i) => {
                let wanted = args.get(i + 1).map(String::as_str).unwrap_or_default();
                let known = STATES.iter().copied().find(|s| *s == wanted);
                Some(known.ok_or_else(|| {
                    anyhow::anyhow!("--status must be one of {}", STATES.join(", "))
                })?)
            }
        };
    let settings = Settings::load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = Db::connect(&settings).await?;
    db.migrate().await?;
    let concurrency = match db {
        Db::Sqlite(_) => 1,
        Db::Postgres(_) => PG_CONCURRENCY,
    };
    let now = Utc::now();
    // Owner names unique to this run, so a database can be seeded more than once.
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();

    let started = Instant::now();
    let owner_ids: Vec<Uuid> = stream::iter(0..owners)
        .map(|i| {
            let db = db.clone();
            let run = run.clone();
            async move {
                let name = format!("scale-{run}-{i}");
                kyros::store::users::create(
                    &db,
                    NewUser {
                        username: name.clone(),
                        username_key: name.clone(),
                        email: format!("{name}@example.org"),
                        password_hash: "!".into(),
                        role: Role::User,
                        active: true,
                    },
                    now,
                )
                .await
                .map(|u| u.id)
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("owners={owners}");
    println!("owners_secs={:.1}", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut job_ids: Vec<Uuid> = Vec::with_capacity(jobs);
    for chunk_start in (0..jobs).step_by(CHUNK) {
        let chunk_end = (chunk_start + CHUNK).min(jobs);
        let batches: Vec<Vec<JobRow>> = (chunk_start..chunk_end)
            .step_by(BULK_ROWS)
            .map(|b| {
                (b..(b + BULK_ROWS).min(chunk_end))
                    .map(|i| {
                        // Spread over 30 days, oldest first, so that created_at orders like the ids.
                        let at = now - Duration::seconds(30 * 86_400)
                            + Duration::milliseconds(
                                (i as i64) * 2_592_000_000 / jobs.max(1) as i64,
                            );
                        JobRow {
                            id: Uuid::new_v4(),
                            name: format!("scale job {i}"),
                            description: None,
                            status: status.unwrap_or(STATES[i % STATES.len()]).into(),
                            priority: (i % 7) as i32,
                            metadata: None,
                            owner_id: Some(owner_ids[i % owner_ids.len()]),
                            version: 1,
                            attempts: 0,
                            created_at: at,
                            updated_at: at,
                            started_at: None,
                            completed_at: None,
                            lease_owner: None,
                            lease_expires_at: None,
                            lease_token: None,
                            result: None,
                            error: None,
                            requires: None,
                            progress: None,
                            progress_message: None,
                            exit_code: None,
                            agent_name: None,
                        }
                    })
                    .collect()
            })
            .collect();
        job_ids.extend(batches.iter().flatten().map(|j| j.id));
        stream::iter(batches)
            .map(|batch| {
                let db = db.clone();
                async move { kyros::store::jobs::insert_many(&db, &batch).await }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
        kyros::store::maintain_after_bulk_load(&db).await?;
    }
    println!("jobs={jobs}");
    println!("jobs_secs={:.1}", started.elapsed().as_secs_f64());

    let started = Instant::now();
    for chunk_start in (0..events).step_by(CHUNK) {
        let chunk_end = (chunk_start + CHUNK).min(events);
        stream::iter((chunk_start..chunk_end).step_by(BULK_ROWS))
            .map(|b| {
                let rows: Vec<EventRow> = (b..(b + BULK_ROWS).min(chunk_end))
                    .map(|i| {
                        let job = job_ids.get(i % job_ids.len().max(1)).copied();
                        EventRow {
                            id: 0,
                            at: now,
                            stream: "orchestrator".into(),
                            event: "job_created".into(),
                            actor: None,
                            target: job.map(|j| j.to_string()),
                            task_id: job.map(|j| j.to_string()),
                            run_id: None,
                            owner_id: Some(owner_ids[i % owner_ids.len()]),
                            payload: sqlx::types::Json(serde_json::json!({"seq": i})),
                        }
                    })
                    .collect();
                let db = db.clone();
                async move { kyros::store::events::append_many(&db, &rows).await }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
        kyros::store::maintain_after_bulk_load(&db).await?;
    }
    println!("events={events}");
    println!("events_secs={:.1}", started.elapsed().as_secs_f64());

    // Leave the database as a long-running service would have it: SQLite's write-ahead log
    // folded into the file (a seeded WAL of gigabytes would make the first requests pay for the
    // checkpoint), PostgreSQL's statistics current.
    let started = Instant::now();
    kyros::store::maintain_after_bulk_load(&db).await?;
    println!("maintenance_secs={:.1}", started.elapsed().as_secs_f64());
    Ok(())
}

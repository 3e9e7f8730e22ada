//! `kyros agent`: a worker that runs jobs with a command. It claims jobs with its API key
//! (`KYROS_AGENT_KEY` or `KYROS_AGENT_KEY_FILE`, never argv), up to `--concurrency` at once,
//! saying who it is (name, labels, version, host) so that it is handed only jobs whose
//! `requires` it has; each job runs as described in [`job`]. When no job waits it asks again
//! after `--poll-secs` (jittered); when the service is away, busy (429) or failing (5xx) it
//! backs off ([`client`]). On SIGTERM or SIGINT it stops claiming, lets running jobs finish for
//! `--grace-secs`, then stops their commands and releases their leases (the jobs go back to
//! `pending` without counting an attempt); a second signal gives up on the service at once.
//! An agent never runs one job twice at once: a job claimed again while its earlier run is
//! still stopping waits for that run to end. Running jobs are followed over the service's
//! WebSocket ([`live`]), so that a cancel stops the command at once.
//!
//! An entry point: it speaks to the service over HTTP only, like any other agent would.

pub mod client;
pub mod job;
pub mod live;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use client::{CallError, Client};
use job::Runner;

/// How the agent was asked to run.
#[derive(Debug)]
pub struct Options {
    /// The service, `http(s)://host:port`.
    pub server: String,
    /// The agent's name (default: the host name).
    pub name: Option<String>,
    pub labels: Vec<String>,
    /// Jobs run at once, at least 1.
    pub concurrency: usize,
    /// From the stop signal to stopping and releasing running jobs.
    pub grace: Duration,
    /// From SIGTERM to SIGKILL when a job's command is stopped.
    pub kill_grace: Duration,
    /// Between two claims that found no job (jittered by ±25 %).
    pub poll: Duration,
    /// Heartbeat interval (default: a third of the lease, 1 to 10 s).
    pub heartbeat: Option<Duration>,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The key is missing, unreadable or refused; the message says which.
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Setup(String),
}

/// The agent's key: `KYROS_AGENT_KEY`, or the first line of the file `KYROS_AGENT_KEY_FILE`.
pub fn key_from_env() -> Result<SecretString, WorkerError> {
    if let Ok(key) = std::env::var("KYROS_AGENT_KEY")
        && !key.trim().is_empty()
    {
        return Ok(SecretString::from(key.trim().to_owned()));
    }
    if let Ok(path) = std::env::var("KYROS_AGENT_KEY_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            WorkerError::Key(format!("KYROS_AGENT_KEY_FILE could not be read: {e}"))
        })?;
        let key = text.lines().next().unwrap_or("").trim().to_owned();
        if key.is_empty() {
            return Err(WorkerError::Key("KYROS_AGENT_KEY_FILE is empty".into()));
        }
        return Ok(SecretString::from(key));
    }
    Err(WorkerError::Key(
        "set KYROS_AGENT_KEY or KYROS_AGENT_KEY_FILE to an API key with the jobs:claim scope"
            .into(),
    ))
}

/// The machine's name (`uname -n`).
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Waits for SIGTERM or SIGINT, `count` times.
async fn signals(stop: watch::Sender<u32>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.send_modify(|n| *n += 1);
    }
}

/// A random share of `d` from 75 % to 125 %.
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::random_range(ms * 3 / 4..=ms * 5 / 4 + 1))
}

/// Runs the agent until it is told to stop (see the module's documentation).
pub async fn run(options: Options, key: SecretString) -> Result<(), WorkerError> {
    if options.command.is_empty() {
        return Err(WorkerError::Setup(
            "give the command to run after --, e.g. kyros agent --server URL -- ./run-job.sh"
                .into(),
        ));
    }
    let watcher = live::Watcher::start(&options.server, key.clone());
    let client = Client::new(&options.server, key).map_err(WorkerError::Setup)?;
    let host = host_name();
    let name = options.name.clone().unwrap_or_else(|| host.clone());
    let registration = json!({
        "name": name,
        "labels": options.labels,
        "version": env!("CARGO_PKG_VERSION"),
        "host": host,
    });
    let runner = Arc::new(Runner {
        client: client.clone(),
        command: options.command.clone(),
        server: options.server.clone(),
        kill_grace: options.kill_grace,
        heartbeat: options.heartbeat,
        watcher,
    });

    // `signalled` counts stop signals; `stopping` (first) ends claiming, `abort` (second) ends
    // every wait on the service, `release` (after the grace) stops and releases running jobs.
    let (signalled_tx, signalled) = watch::channel(0u32);
    tokio::spawn(signals(signalled_tx));
    let (stopping_tx, mut stopping) = watch::channel(false);
    let (abort_tx, abort) = watch::channel(false);
    let (release_tx, release) = watch::channel(false);
    {
        let mut signalled = signalled.clone();
        let grace = options.grace;
        tokio::spawn(async move {
            if signalled.wait_for(|n| *n >= 1).await.is_err() {
                return;
            }
            tracing::info!(
                grace_secs = grace.as_secs(),
                "stopping: no new jobs; running jobs may finish within the grace"
            );
            stopping_tx.send_replace(true);
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = signalled.wait_for(|n| *n >= 2) => {}
            }
            release_tx.send_replace(true);
            if signalled.wait_for(|n| *n >= 2).await.is_ok() {
                abort_tx.send_replace(true);
            }
        });
    }

    tracing::info!(server = %options.server, %name, labels = ?options.labels, concurrency = options.concurrency, "agent started");
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    // The jobs running now, each with the signal that its run ended.
    let running: Arc<Mutex<HashMap<String, watch::Receiver<bool>>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failures = 0u32;
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let mut stop_claims = stopping.clone();
        let answer = client
            .call(
                Method::POST,
                "/api/v1/agents/claim",
                Some(&registration),
                None,
                &mut stop_claims,
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(CallError::Stopped) => break,
            Err(CallError::Unavailable(_)) => continue,
        };
        match answer.status {
            StatusCode::OK => {
                failures = 0;
                let job = answer.body;
                let id = job["id"].as_str().unwrap_or_default().to_owned();
                let earlier = running.lock().ok().and_then(|r| r.get(&id).cloned());
                let (ended_tx, ended_rx) = watch::channel(false);
                let runner = Arc::clone(&runner);
                let running_now = Arc::clone(&running);
                let (release, abort) = (release.clone(), abort.clone());
                tasks.spawn(async move {
                    if let Some(mut earlier) = earlier {
                        // The same job again (its earlier lease was lost): that run is being
                        // stopped; this one starts when it has ended.
                        let _ = earlier.wait_for(|e| *e).await;
                    }
                    if let Ok(mut r) = running_now.lock() {
                        r.insert(id.clone(), ended_rx);
                    }
                    let outcome = runner.run(job, release, abort).await;
                    tracing::info!(job = %id, ?outcome, "run ended");
                    ended_tx.send_replace(true);
                    if let Ok(mut r) = running_now.lock()
                        && r.get(&id).is_some_and(|rx| *rx.borrow())
                    {
                        r.remove(&id);
                    }
                    drop(permit);
                });
            }
            StatusCode::NO_CONTENT => {
                failures = 0;
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(jitter(options.poll)) => {}
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(WorkerError::Key(format!(
                    "the service refused the agent's key ({}): {}",
                    answer.status,
                    answer.detail()
                )));
            }
            status => {
                failures += 1;
                drop(permit);
                let wait = client::backoff(failures, None);
                tracing::warn!(%status, detail = %answer.detail(), "claim refused; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
        }
        // Finished runs are collected as they end.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!("agent stopped");
    Ok(())
}

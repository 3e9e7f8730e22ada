//! One claimed job, run by `kyros agent`: the command in its own process group with the job on
//! stdin, its output streamed to the service in batches, heartbeats (with progress) well inside
//! the lease, and the outcome reported — or the command stopped (SIGTERM to the group, SIGKILL
//! after the grace) when the lease is lost (the job was cancelled or taken over) or the agent
//! stops and releases it.

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use super::client::{Answer, CallError, Client};

/// The longest line sent; longer lines are cut and end with [`CUT_MARK`].
pub const LINE_MAX_BYTES: usize = 16 * 1024;
/// What ends a line that was cut at [`LINE_MAX_BYTES`].
pub const CUT_MARK: &str = " […]";
/// Lines of a batch at most (the service takes up to 1 000).
pub const BATCH_LINES: usize = 500;
/// Bytes of a batch at most (well under the service's body limit).
pub const BATCH_BYTES: usize = 256 * 1024;
/// How long the first line of a batch waits for others.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Lines read but not yet sent, per job: when the service is slow or away, the command's
/// writes block (back-pressure) instead of the agent's memory growing.
pub const BUFFER_LINES: usize = 2048;
/// Lines of each stream kept for the result or the failure message.
pub const TAIL_LINES: usize = 20;
/// The largest result file read (the service takes 64 KiB of JSON).
pub const RESULT_MAX_BYTES: u64 = 64 * 1024;
/// A stdout line `::progress::<0..1> <message>` reports progress instead of being output (the
/// form of GitHub Actions' workflow commands).
pub const PROGRESS_PREFIX: &str = "::progress::";

/// What the agent needs to run a job.
#[derive(Debug)]
pub struct Runner {
    pub client: Client,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The service's address, given to the command as `KYROS_SERVER`.
    pub server: String,
    /// From SIGTERM to SIGKILL when the command is stopped.
    pub kill_grace: Duration,
    /// Heartbeat interval; default a third of the lease, from 1 to 10 s.
    pub heartbeat: Option<Duration>,
    /// The live channel that tells of cancels and deletions at once.
    pub watcher: super::live::Watcher,
}

/// How a run ended, for the agent's log and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    /// The lease was lost (the job cancelled, deleted or taken over): the command was stopped.
    Lost,
    /// The agent stopped: the command was stopped and the job given back.
    Released,
    /// The agent was told to stop at once before it could report.
    Abandoned,
}

/// A line read from the command.
#[derive(Debug, Clone)]
struct Line {
    stream: &'static str,
    at: DateTime<Utc>,
    line: String,
}

/// The last lines of each stream.
#[derive(Debug, Default)]
struct Tail {
    stdout: VecDeque<String>,
    stderr: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, stream: &str, line: &str) {
        let lines = if stream == "stderr" {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }
}

/// `(fraction, message)` of a `::progress::` line.
pub fn parse_progress(line: &str) -> Option<(f64, String)> {
    let rest = line.strip_prefix(PROGRESS_PREFIX)?.trim();
    let (number, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let mut fraction: f64 = number.trim_end_matches('%').parse().ok()?;
    if number.ends_with('%') {
        fraction /= 100.0;
    }
    fraction.is_finite().then_some((
        fraction.clamp(0.0, 1.0),
        message.trim().chars().take(1024).collect(),
    ))
}

/// Splits a pipe into lines (at most [`LINE_MAX_BYTES`] each, longer ones cut), with no more
/// than one line in memory however long the command's lines are.
async fn read_lines(
    mut pipe: impl AsyncRead + Unpin,
    stream: &'static str,
    tx: mpsc::Sender<Line>,
    tail: Arc<Mutex<Tail>>,
    progress: watch::Sender<Option<(f64, String)>>,
    truncated: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let emit = |line: &mut Vec<u8>, cut: &mut bool| {
        let mut text = String::from_utf8_lossy(line).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        if *cut {
            text.push_str(CUT_MARK);
        }
        line.clear();
        *cut = false;
        text
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for part in buf[..n].split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match part.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (part, false),
            };
            let room = LINE_MAX_BYTES.saturating_sub(line.len());
            line.extend_from_slice(&body[..body.len().min(room)]);
            cut |= body.len() > room;
            if ends {
                let text = emit(&mut line, &mut cut);
                if !deliver(stream, text, &tx, &tail, &progress, &truncated).await {
                    return;
                }
            }
        }
    }
    if !line.is_empty() {
        let text = emit(&mut line, &mut cut);
        deliver(stream, text, &tx, &tail, &progress, &truncated).await;
    }
}

/// Hands one line on; false when nobody is receiving any more.
async fn deliver(
    stream: &'static str,
    text: String,
    tx: &mpsc::Sender<Line>,
    tail: &Mutex<Tail>,
    progress: &watch::Sender<Option<(f64, String)>>,
    truncated: &AtomicBool,
) -> bool {
    if stream == "stdout"
        && let Some(p) = parse_progress(&text)
    {
        progress.send_replace(Some(p));
        return true;
    }
    if let Ok(mut tail) = tail.lock() {
        tail.push(stream, &text);
    }
    if truncated.load(Ordering::Relaxed) {
        // The service keeps no more of this job's output: read on (so the command is never
        // blocked on a full pipe) and keep only the tail.
        return true;
    }
    tx.send(Line {
        stream,
        at: Utc::now(),
        line: text,
    })
    .await
    .is_ok()
}

/// Whether an answer says the lease is gone (the job cancelled, deleted, or held by a later
/// claim).
fn lease_lost(answer: &Answer) -> bool {
    matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::CONFLICT)
}

/// Sends the output in batches; marks the lease lost or the output truncated from the answers.
async fn ship(
    client: Client,
    path: String,
    token: String,
    mut rx: mpsc::Receiver<Line>,
    lost: watch::Sender<bool>,
    truncated: Arc<AtomicBool>,
    mut abort: watch::Receiver<bool>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let mut bytes = first.line.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    bytes += line.line.len();
                    batch.push(line);
                }
                _ => break,
            }
        }
        if *lost.borrow() || truncated.load(Ordering::Relaxed) {
            continue;
        }
        let lines: Vec<Value> = batch
            .iter()
            .map(|l| json!({"stream": l.stream, "at": l.at, "line": l.line}))
            .collect();
        let body = json!({"lease_token": token, "lines": lines});
        match client
            .call(Method::POST, &path, Some(&body), None, &mut abort)
            .await
        {
            Ok(answer) if answer.ok() => {
                if answer.body["truncated"].as_bool() == Some(true) {
                    truncated.store(true, Ordering::Relaxed);
                }
            }
            Ok(answer) if lease_lost(&answer) => {
                lost.send_replace(true);
            }
            Ok(answer) => {
                tracing::warn!(status = %answer.status, detail = %answer.detail(), "output refused");
            }
            Err(_) => return,
        }
    }
}

/// Heartbeats every `every` (and soon after a progress change, at most once a second), until
/// `done`; marks the lease lost when the service says so. A failed heartbeat is tried again at
/// the next tick.
#[allow(clippy::too_many_arguments)]
async fn heartbeats(
    client: Client,
    path: String,
    token: String,
    every: Duration,
    mut progress: watch::Receiver<Option<(f64, String)>>,
    lost: watch::Sender<bool>,
    mut done: watch::Receiver<bool>,
    mut abort: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + every;
    let mut sent: Option<(f64, String)> = None;
    let mut progress_open = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            changed = progress.changed(), if progress_open => {
                if changed.is_err() {
                    // The readers ended; heartbeats go on at their pace until the run is over.
                    progress_open = false;
                    continue;
                }
                // Reports of a burst of progress lines go out together.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = wait_true(&mut done) => return,
        }
        let current = progress.borrow().clone();
        let mut body = json!({"lease_token": token});
        if let Some((fraction, message)) = &current
            && current != sent
        {
            body["progress"] = json!(fraction);
            if !message.is_empty() {
                body["message"] = json!(message);
            }
        }
        match client
            .call(Method::POST, &path, Some(&body), Some(1), &mut abort)
            .await
        {
            Ok(answer) if answer.ok() => sent = current,
            Ok(answer) if lease_lost(&answer) => {
                lost.send_replace(true);
                return;
            }
            Ok(answer) => {
                tracing::warn!(status = %answer.status, detail = %answer.detail(), "heartbeat refused")
            }
            Err(CallError::Stopped) => return,
            Err(CallError::Unavailable(reason)) => {
                tracing::warn!(%reason, "heartbeat not delivered; trying again")
            }
        }
        next = tokio::time::Instant::now() + every;
    }
}

/// Until `rx` is true (or its sender is gone).
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Sends `signal` to the process group `pgid`; a group already gone is not an error.
fn signal_group(pgid: u32, signal: rustix::process::Signal) {
    let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, signal);
}

/// SIGTERM to the command's process group, SIGKILL after `grace` if it has not exited.
async fn terminate(child: &mut Child, pgid: u32, grace: Duration) -> Option<ExitStatus> {
    signal_group(pgid, rustix::process::Signal::TERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal_group(pgid, rustix::process::Signal::KILL);
            child.wait().await.ok()
        }
    }
}

/// A private directory for the command's result file (mode 0700), removed with the value.
struct Scratch(PathBuf);

impl Scratch {
    fn new(job: &str) -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "kyros-agent-{job}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The result of a successful run: the JSON the command wrote to `$KYROS_RESULT_FILE`, else
/// `{exit_code, output_tail}`; an unreadable result file is an error message.
fn result_of(file: &std::path::Path, tail: &Tail) -> Result<Value, String> {
    match std::fs::metadata(file) {
        Ok(meta) if meta.len() > RESULT_MAX_BYTES => Err(format!(
            "the result file is larger than {RESULT_MAX_BYTES} bytes"
        )),
        Ok(_) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("the result file could not be read: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("the result file is not JSON: {e}"))
        }
        Err(_) => Ok(json!({
            "exit_code": 0,
            "output_tail": tail.stdout.iter().collect::<Vec<_>>(),
        })),
    }
}

/// The error message of a failed run: what ended it and the tail of stderr, at most 4 096
/// characters (the service's limit).
fn failure_message(status: Option<ExitStatus>, tail: &Tail) -> (String, Option<i32>) {
    let (head, code) = match status {
        Some(s) if s.code().is_some() => {
            let code = s.code().unwrap_or(1);
            (format!("exit code {code}"), Some(code))
        }
        Some(s) => match s.signal() {
            Some(sig) => (format!("killed by signal {sig}"), Some(128 + sig)),
            None => ("ended without an exit status".to_owned(), None),
        },
        None => ("the command could not be waited for".to_owned(), None),
    };
    let mut message = head;
    if !tail.stderr.is_empty() {
        message.push('\n');
        message.push_str(&tail.stderr.iter().cloned().collect::<Vec<_>>().join("\n"));
    }
    if message.chars().count() > 4096 {
        // Keep the end: the last lines of stderr say most.
        let skip = message.chars().count() - 4096;
        message = message.chars().skip(skip).collect();
    }
    (message, code)
}

impl Runner {
    /// Runs the claimed `job` (the claim's answer) to its end. `release` asks for the command
    /// to be stopped and the job given back (the agent is stopping); `abort` gives up on the
    /// service at once (a second signal).
    pub async fn run(
        &self,
        job: Value,
        mut release: watch::Receiver<bool>,
        abort: watch::Receiver<bool>,
    ) -> Outcome {
        let id = job["id"].as_str().unwrap_or_default().to_owned();
        let token = job["lease_token"].as_str().unwrap_or_default().to_owned();
        let attempt = job["attempts"].as_i64().unwrap_or(0) + 1;
        let lease = lease_length(&job);
        let every = self
            .heartbeat
            .unwrap_or_else(|| (lease / 3).clamp(Duration::from_secs(1), Duration::from_secs(10)));
        let base = format!("/api/v1/agents/jobs/{id}");
        tracing::info!(job = %id, attempt, "running");

        let scratch = match Scratch::new(&id) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("the agent could not create a directory for the job: {e}");
                return self.fail(&base, &token, &message, None, abort).await;
            }
        };
        let result_file = scratch.0.join("result.json");
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("KYROS_AGENT_KEY")
            .env_remove("KYROS_AGENT_KEY_FILE")
            .env("KYROS_JOB_ID", &id)
            .env("KYROS_JOB_ATTEMPT", attempt.to_string())
            .env("KYROS_JOB_NAME", job["name"].as_str().unwrap_or_default())
            .env("KYROS_RESULT_FILE", &result_file)
            .env("KYROS_SERVER", &self.server)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let message = format!("the command could not be started: {e}");
                return self.fail(&base, &token, &message, None, abort).await;
            }
        };
        let pgid = child.id().unwrap_or(0);

        // The job on stdin, without the lease token (the lease is the agent's).
        let mut input = job.clone();
        if let Value::Object(map) = &mut input {
            map.remove("lease_token");
        }
        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                let _ = stdin.write_all(input.to_string().as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
            });
        }

        let (tx, rx) = mpsc::channel(BUFFER_LINES);
        let tail = Arc::new(Mutex::new(Tail::default()));
        let truncated = Arc::new(AtomicBool::new(false));
        let (progress_tx, progress_rx) = watch::channel(None);
        let (lost_tx, mut lost_rx) = watch::channel(false);
        self.watcher.add(&id, lost_tx.clone());
        let (done_tx, done_rx) = watch::channel(false);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(
                out,
                "stdout",
                tx.clone(),
                Arc::clone(&tail),
                progress_tx.clone(),
                Arc::clone(&truncated),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(
                err,
                "stderr",
                tx.clone(),
                Arc::clone(&tail),
                progress_tx.clone(),
                Arc::clone(&truncated),
            )));
        }
        drop((tx, progress_tx));
        let shipper = tokio::spawn(ship(
            self.client.clone(),
            format!("{base}/output"),
            token.clone(),
            rx,
            lost_tx.clone(),
            Arc::clone(&truncated),
            abort.clone(),
        ));
        let beats = tokio::spawn(heartbeats(
            self.client.clone(),
            format!("{base}/heartbeat"),
            token.clone(),
            every,
            progress_rx,
            lost_tx,
            done_rx,
            abort.clone(),
        ));

        enum Ended {
            Exited(Option<ExitStatus>),
            Lost,
            Release,
        }
        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status.ok()),
            _ = wait_true(&mut lost_rx) => Ended::Lost,
            _ = wait_true(&mut release) => Ended::Release,
        };
        let (status, mut stopped) = match ended {
            Ended::Exited(status) => (status, None),
            Ended::Lost => {
                tracing::info!(job = %id, "lease lost (cancelled or taken over): stopping the command");
                (
                    terminate(&mut child, pgid, self.kill_grace).await,
                    Some(Outcome::Lost),
                )
            }
            Ended::Release => {
                tracing::info!(job = %id, "the agent is stopping: stopping the command");
                (
                    terminate(&mut child, pgid, self.kill_grace).await,
                    Some(Outcome::Released),
                )
            }
        };
        // Whatever the command started in its group goes with it (its pipes close).
        signal_group(pgid, rustix::process::Signal::KILL);
        for reader in readers {
            let abort_handle = reader.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .is_err()
            {
                abort_handle.abort();
            }
        }
        let _ = shipper.await;
        done_tx.send_replace(true);
        let _ = beats.await;
        self.watcher.remove(&id);
        if *lost_rx.borrow() && stopped.is_none() {
            stopped = Some(Outcome::Lost);
        }

        let tail = match Arc::try_unwrap(tail) {
            Ok(m) => m.into_inner().unwrap_or_default(),
            Err(shared) => std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner())),
        };
        match stopped {
            Some(Outcome::Lost) => Outcome::Lost,
            Some(_) => {
                let body = json!({"lease_token": token});
                let mut abort = abort;
                match self
                    .client
                    .call(
                        Method::POST,
                        &format!("{base}/release"),
                        Some(&body),
                        Some(5),
                        &mut abort,
                    )
                    .await
                {
                    Ok(answer) if answer.ok() => {
                        tracing::info!(job = %id, "released");
                        Outcome::Released
                    }
                    Ok(answer) if lease_lost(&answer) => Outcome::Lost,
                    _ => Outcome::Abandoned,
                }
            }
            None if status.is_some_and(|s| s.success()) => match result_of(&result_file, &tail) {
                Ok(result) => self.complete(&base, &token, result, abort).await,
                Err(message) => self.fail(&base, &token, &message, Some(0), abort).await,
            },
            None => {
                let (message, code) = failure_message(status, &tail);
                self.fail(&base, &token, &message, code, abort).await
            }
        }
    }

    async fn complete(
        &self,
        base: &str,
        token: &str,
        result: Value,
        mut abort: watch::Receiver<bool>,
    ) -> Outcome {
        let body = json!({"lease_token": token, "result": result, "exit_code": 0});
        self.report(
            &format!("{base}/complete"),
            &body,
            &mut abort,
            Outcome::Completed,
        )
        .await
    }

    async fn fail(
        &self,
        base: &str,
        token: &str,
        message: &str,
        exit_code: Option<i32>,
        mut abort: watch::Receiver<bool>,
    ) -> Outcome {
        let body = json!({"lease_token": token, "error": message, "exit_code": exit_code});
        self.report(&format!("{base}/fail"), &body, &mut abort, Outcome::Failed)
            .await
    }

    /// Reports the outcome, trying until the service answers (it may be restarting).
    async fn report(
        &self,
        path: &str,
        body: &Value,
        abort: &mut watch::Receiver<bool>,
        outcome: Outcome,
    ) -> Outcome {
        match self
            .client
            .call(Method::POST, path, Some(body), None, abort)
            .await
        {
            Ok(answer) if answer.ok() => {
                tracing::info!(%path, "reported");
                outcome
            }
            Ok(answer) if lease_lost(&answer) => {
                tracing::warn!(%path, detail = %answer.detail(), "the lease was lost before the outcome was reported");
                Outcome::Lost
            }
            Ok(answer) => {
                tracing::warn!(%path, status = %answer.status, detail = %answer.detail(), "the outcome was refused");
                Outcome::Abandoned
            }
            Err(_) => Outcome::Abandoned,
        }
    }
}

/// The lease's length from the claim's answer (`lease_expires_at − started_at`, both the
/// service's clock); 60 s when they are missing.
fn lease_length(job: &Value) -> Duration {
    let at = |field: &str| {
        job[field]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    };
    match (at("started_at"), at("lease_expires_at")) {
        (Some(start), Some(end)) => (end - start).to_std().unwrap_or(Duration::from_secs(60)),
        _ => Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_parsed() {
        assert_eq!(
            parse_progress("::progress::0.25 copying files"),
            Some((0.25, "copying files".to_owned()))
        );
        assert_eq!(
            parse_progress("::progress::50%"),
            Some((0.5, String::new()))
        );
        assert_eq!(
            parse_progress("::progress::7 over"),
            Some((1.0, "over".into()))
        );
        assert_eq!(parse_progress("::progress::NaN"), None);
        assert_eq!(parse_progress("progress 0.5"), None);
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_is_read() {
        let long = "x".repeat(LINE_MAX_BYTES * 3);
        let text = format!("first\r\n{long}\nlast");
        let (tx, mut rx) = mpsc::channel(16);
        let (progress, _) = watch::channel(None);
        read_lines(
            text.as_bytes(),
            "stdout",
            tx,
            Arc::default(),
            progress,
            Arc::default(),
        )
        .await;
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l.line);
        }
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1].len(), LINE_MAX_BYTES + CUT_MARK.len());
        assert!(lines[1].ends_with(CUT_MARK));
        assert_eq!(lines[2], "last");
    }
}

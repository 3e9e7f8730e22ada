//! The agent's live view of its jobs: one WebSocket to the service (`/ws`, the API key in
//! `X-API-Key`) subscribed to each running job. A job cancelled or deleted in the console stops
//! its command at once instead of at the next heartbeat (which still finds out, should the
//! socket be down). Reconnects with the client's backoff; subscriptions are made again after a
//! reconnect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::backoff;

/// The jobs followed: each running job's "lease lost" signal, by job id.
#[derive(Clone, Default)]
pub struct Watcher {
    jobs: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    /// New subscriptions for the socket task (`None`: no socket).
    subscribe: Option<mpsc::UnboundedSender<String>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

/// Whether a live event ends the agent's right to run the job: a cancel, a deletion, or a
/// status change away from `running` that the agent did not make.
pub fn ends_the_run(event: &Value) -> bool {
    match event["event"].as_str() {
        Some("job_deleted") => true,
        Some("job_status_updated") => event["new_status"].as_str() != Some("running"),
        _ => false,
    }
}

impl Watcher {
    /// Starts the socket task for the service at `base` (`http(s)://…`).
    pub fn start(base: &str, key: SecretString) -> Watcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = Watcher {
            jobs: Arc::default(),
            subscribe: Some(tx),
        };
        let url = format!(
            "{}/ws",
            base.trim_end_matches('/')
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        tokio::spawn(follow(url, key, Arc::clone(&watcher.jobs), rx));
        watcher
    }

    /// Follows job `id`: `lost` is set when the service says the run is over.
    pub fn add(&self, id: &str, lost: watch::Sender<bool>) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(id.to_owned(), lost);
        }
        if let Some(tx) = &self.subscribe {
            let _ = tx.send(id.to_owned());
        }
    }

    /// Stops following job `id`.
    pub fn remove(&self, id: &str) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(id);
        }
    }
}

fn subscription(id: &str) -> Message {
    Message::text(json!({"type": "subscribe", "job_id": id}).to_string())
}

async fn follow(
    url: String,
    key: SecretString,
    jobs: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    mut subscribe: mpsc::UnboundedReceiver<String>,
) {
    let mut failures = 0u32;
    loop {
        let request = url.as_str().into_client_request().map(|mut r| {
            if let Ok(v) = key.expose_secret().parse() {
                r.headers_mut().insert("x-api-key", v);
            }
            r
        });
        let connected = match request {
            Ok(r) => {
                tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(r))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => return,
        };
        let Some((mut socket, _)) = connected else {
            failures += 1;
            let wait = backoff(failures, None);
            tracing::debug!(
                retry_in_ms = wait.as_millis() as u64,
                "live channel unavailable"
            );
            tokio::time::sleep(wait).await;
            continue;
        };
        failures = 0;
        let followed: Vec<String> = jobs
            .lock()
            .map(|j| j.keys().cloned().collect())
            .unwrap_or_default();
        for id in followed {
            let _ = socket.send(subscription(&id)).await;
        }
        loop {
            tokio::select! {
                id = subscribe.recv() => match id {
                    Some(id) => {
                        if socket.send(subscription(&id)).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                        let event = &value["event"];
                        if value["type"] == "event" && ends_the_run(event)
                            && let Some(id) = event["task_id"].as_str()
                            && let Ok(jobs) = jobs.lock()
                            && let Some(lost) = jobs.get(id)
                        {
                            tracing::info!(job = %id, event = %event["event"], "the service ended the run");
                            lost.send_replace(true);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
        }
        tracing::debug!("live channel closed; reconnecting");
        tokio::time::sleep(backoff(1, None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_and_deletions_end_a_run() {
        assert!(ends_the_run(
            &json!({"event": "job_status_updated", "new_status": "cancelled"})
        ));
        assert!(ends_the_run(&json!({"event": "job_deleted"})));
        assert!(!ends_the_run(
            &json!({"event": "job_status_updated", "new_status": "running"})
        ));
        assert!(!ends_the_run(&json!({"event": "job_output"})));
        assert!(!ends_the_run(&json!({"event": "job_progress"})));
    }
}

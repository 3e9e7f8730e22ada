//! The agent's HTTP client: the API key in `X-API-Key`, JSON in and out, and one retry rule for
//! every call — connection failures, `429` and `5xx` are transient and retried with jittered
//! exponential backoff (full jitter over 0.5 s doubling to 30 s) that honours `Retry-After`;
//! any other answer is returned to the caller.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::watch;

/// The shortest and longest wait between two tries of a transient failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An answer of the service that was not transient.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// The JSON body (`Value::Null` when empty or not JSON).
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The `detail` of an error answer, for messages.
    pub fn detail(&self) -> String {
        match &self.body["detail"] {
            Value::String(s) => s.clone(),
            Value::Null => self.status.to_string(),
            other => other.to_string(),
        }
    }
}

/// Why a call gave up.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent is stopping (the `stop` signal fired while waiting to try again).
    #[error("stopping")]
    Stopped,
    /// The tries allowed were used up on transient failures.
    #[error("the service stayed unavailable: {0}")]
    Unavailable(String),
}

/// The client of one service, with one API key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// How long to wait before try number `attempt` (from 1): a random time between half of and
/// the whole exponential step, at least `Retry-After` when the service gave one.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let step = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(10).saturating_sub(1))
        .min(BACKOFF_MAX);
    let millis = step.as_millis() as u64;
    let jittered = Duration::from_millis(rand::random_range(millis / 2..=millis.max(1)));
    retry_after.map_or(jittered, |r| r.max(jittered))
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3; the HTTP-date form is not used by the service),
/// at most [`BACKOFF_MAX`] × 4.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(BACKOFF_MAX * 4))
}

impl Client {
    /// A client of the service at `base` (`http://host:port`, no trailing slash needed).
    pub fn new(base: &str, key: SecretString) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("kyros-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// One try: `Ok(answer)` for an answer that is not transient, `Err((reason, retry_after))`
    /// otherwise.
    async fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, (String, Option<Duration>)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-API-Key", self.key.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let reason = if e.is_connect() {
                "cannot connect".to_owned()
            } else if e.is_timeout() {
                "timed out".to_owned()
            } else {
                format!("request failed: {e}")
            };
            (reason, None)
        })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err((format!("the service answered {status}"), wait));
        }
        let bytes = response.bytes().await.map_err(|e| (e.to_string(), None))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Calls `method path` with `body`, retrying transient failures with [`backoff`] at most
    /// `tries` times (`None`: until `stop` fires). Gives up with [`CallError::Stopped`] as soon
    /// as `stop` is true while waiting.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        tries: Option<u32>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Answer, CallError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.once(&method, path, body).await {
                Ok(answer) => return Ok(answer),
                Err((reason, wait)) => {
                    if tries.is_some_and(|t| attempt >= t) {
                        return Err(CallError::Unavailable(reason));
                    }
                    let wait = backoff(attempt, wait);
                    tracing::warn!(%path, %reason, retry_in_ms = wait.as_millis() as u64, "the service is unavailable");
                    if *stop.borrow() {
                        return Err(CallError::Stopped);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return Err(CallError::Stopped),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        for attempt in 1..20 {
            let wait = backoff(attempt, None);
            let step = BACKOFF_MIN
                .saturating_mul(1u32 << attempt.min(10).saturating_sub(1))
                .min(BACKOFF_MAX);
            assert!(wait >= step / 2 && wait <= step, "{attempt}: {wait:?}");
        }
        assert!(backoff(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }
}

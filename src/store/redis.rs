//! The shared Redis connection, when REDIS_URL (or REDIS_HOST) is configured.
//!
//! The service never waits on a sick Redis: every call has a short timeout, a failure marks the
//! connection unhealthy (callers then use their local fallback at once), and a background probe
//! reconnects and marks it healthy again when Redis answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::RwLock;

const PROBE_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    manager: RwLock<Option<ConnectionManager>>,
    healthy: AtomicBool,
    failures: AtomicU64,
    timeout: Duration,
    prefix: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("healthy", &self.is_healthy())
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis is marked unavailable")]
    Unavailable,
    #[error("redis timed out")]
    Timeout,
    #[error("redis error: {0}")]
    Command(String),
}

impl Redis {
    /// Prepares the client and starts the probe; never fails because Redis is down.
    pub fn start(url: &SecretString, prefix: &str, timeout: Duration) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url.expose_secret())
            .map_err(|_| crate::config::ConfigError("REDIS_URL is not a valid Redis URL".into()))?;
        let redis = Redis {
            inner: Arc::new(Inner {
                client,
                manager: RwLock::new(None),
                healthy: AtomicBool::new(false),
                failures: AtomicU64::new(0),
                timeout,
                prefix: prefix.to_owned(),
            }),
        };
        let probe = redis.clone();
        tokio::spawn(async move { probe.probe_loop().await });
        Ok(redis)
    }

    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// Publishes on a prefixed channel. Tried even while the fast paths are marked down (one
    /// slow limiter call must not silence the fan-out of the next events), and a failure here
    /// leaves the health flag alone.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<(), RedisError> {
        let channel = self.key(channel);
        let payload = payload.to_owned();
        let conn = self
            .inner
            .manager
            .read()
            .await
            .clone()
            .ok_or(RedisError::Unavailable)?;
        self.failures_only(conn, |mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(|_| ())
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn key(&self, parts: &str) -> String {
        format!("{}{}", self.inner.prefix, parts)
    }

    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    /// How many calls failed or timed out since start (each one fell back locally).
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Connects (or checks the connection) once; true when Redis answered.
    pub async fn connect_now(&self) -> bool {
        let ok = self.probe_once().await;
        if ok {
            self.inner.healthy.store(true, Ordering::Release);
        }
        ok
    }

    async fn probe_once(&self) -> bool {
        let existing = self.inner.manager.read().await.clone();
        let mut manager = match existing {
            Some(m) => m,
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(
                        self.inner.timeout.max(Duration::from_millis(500)),
                    ))
                    .set_response_timeout(Some(self.inner.timeout))
                    .set_number_of_retries(1);
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    ConnectionManager::new_with_config(self.inner.client.clone(), config),
                )
                .await
                {
                    Ok(Ok(m)) => {
                        *self.inner.manager.write().await = Some(m.clone());
                        m
                    }
                    _ => return false,
                }
            }
        };
        let pong: Result<Result<String, _>, _> = tokio::time::timeout(
            self.inner.timeout.max(Duration::from_millis(500)),
            redis::cmd("PING").query_async(&mut manager),
        )
        .await;
        matches!(pong, Ok(Ok(ref p)) if p == "PONG")
    }

    async fn probe_loop(self) {
        loop {
            let was = self.is_healthy();
            if !was || self.inner.manager.read().await.is_none() {
                let ok = self.probe_once().await;
                if ok {
                    self.inner.healthy.store(true, Ordering::Release);
                    tracing::info!("redis is available; shared state is in use");
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    fn mark_failed(&self, why: &RedisError) {
        self.inner.failures.fetch_add(1, Ordering::Relaxed);
        if self.inner.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %why, "redis failed; falling back to local state until it answers again");
        }
    }

    /// A connection to use now, or `Unavailable` while Redis is marked down.
    pub async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if !self.is_healthy() {
            return Err(RedisError::Unavailable);
        }
        self.inner
            .manager
            .read()
            .await
            .clone()
            .ok_or(RedisError::Unavailable)
    }

    async fn failures_only<T, F, Fut>(
        &self,
        conn: ConnectionManager,
        op: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = match tokio::time::timeout(self.inner.timeout, op(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => RedisError::Command(e.to_string()),
            Err(_) => RedisError::Timeout,
        };
        self.inner.failures.fetch_add(1, Ordering::Relaxed);
        Err(result)
    }

    /// Runs one Redis operation with the short timeout; a failure marks Redis down.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        let result = match tokio::time::timeout(self.inner.timeout, op(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => RedisError::Command(e.to_string()),
            Err(_) => RedisError::Timeout,
        };
        self.mark_failed(&result);
        Err(result)
    }
}

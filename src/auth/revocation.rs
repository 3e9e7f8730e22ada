//! Access-token revocation. Two mechanisms, both checked on every authenticated request:
//!
//! * per token: the `jti` deny-list, persisted in the database; every instance keeps the
//!   unexpired entries in memory, learns new ones at once through Redis pub/sub when configured
//!   and, whatever happens to Redis, by polling the table twice a second;
//! * per user: the user's token generation (in the user row every request reads anyway); raising
//!   it revokes all tokens of that user — log out everywhere, disabling, password or role change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::store::redis::Redis;
use crate::store::tokens;
use crate::store::{Db, StoreResult};

const CHANNEL: &str = "revoked-tokens";
const POLL_EVERY: Duration = Duration::from_millis(500);

pub struct Revocations {
    denied: Mutex<HashMap<String, i64>>,
    last_seq: AtomicI64,
    db: Db,
    redis: Option<Redis>,
    clock: SharedClock,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("last_seq", &self.last_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// Loads the current deny-list and starts keeping it up to date.
    pub async fn start(
        db: Db,
        redis: Option<Redis>,
        clock: SharedClock,
    ) -> StoreResult<Arc<Revocations>> {
        let me = Arc::new(Revocations {
            denied: Mutex::new(HashMap::new()),
            last_seq: AtomicI64::new(0),
            db,
            redis,
            clock,
        });
        me.poll().await?;
        let poller = Arc::clone(&me);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL_EVERY).await;
                if let Err(e) = poller.poll().await {
                    tracing::warn!(error = %e, "could not refresh the token deny-list");
                }
            }
        });
        if me.redis.is_some() {
            let subscriber = Arc::clone(&me);
            tokio::spawn(async move { subscriber.subscribe_loop().await });
        }
        Ok(me)
    }

    fn insert(&self, jti: String, exp: i64) {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(jti, exp);
    }

    pub fn is_denied(&self, jti: &str) -> bool {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(jti)
    }

    /// Revokes one access token everywhere.
    pub async fn deny(
        &self,
        jti: &str,
        user_id: Option<Uuid>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        tokens::deny(&self.db, jti, user_id, expires_at, self.clock.now()).await?;
        self.insert(jti.to_owned(), expires_at.timestamp());
        if let Some(redis) = &self.redis {
            let _ = redis
                .publish(CHANNEL, &format!("{} {}", expires_at.timestamp(), jti))
                .await;
        }
        Ok(())
    }

    async fn poll(&self) -> StoreResult<()> {
        loop {
            let since = self.last_seq.load(Ordering::Acquire);
            let rows = tokens::denied_since(&self.db, since, 1000).await?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                break;
            };
            let full = rows.len() == 1000;
            for row in rows {
                self.insert(row.jti, row.expires_at.timestamp());
            }
            self.last_seq.fetch_max(last, Ordering::AcqRel);
            if !full {
                break;
            }
        }
        // Entries of expired tokens cannot matter any more (the validator refuses them anyway).
        let now = self.clock.now().timestamp() - 60;
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, exp| *exp > now);
        Ok(())
    }

    async fn subscribe_loop(self: Arc<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let channel = redis.key(CHANNEL);
        loop {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), redis.client().get_async_pubsub())
                    .await;
            if let Ok(Ok(mut pubsub)) = connected
                && pubsub.subscribe(&channel).await.is_ok()
            {
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if let Some((exp, jti)) = payload.split_once(' ')
                        && let Ok(exp) = exp.parse::<i64>()
                    {
                        self.insert(jti.to_owned(), exp);
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

//! The users that requests authenticate as, kept for a second. Every authenticated request
//! needs its user (active? role? token generation?); reading the row once per second per user
//! instead of once per request takes a database round trip off the hot path. Changes made
//! through this instance drop the entry at once; a change made on another instance is seen
//! within `TTL`, the same bound as a logout's propagation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::model::User;
use crate::store::users::{self};
use crate::store::{Db, StoreResult};

const TTL: Duration = Duration::from_secs(1);
/// Beyond this many entries the cache starts over (a bound, not an expected size).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct UserCache {
    entries: Mutex<HashMap<Uuid, (Instant, User)>>,
}

impl UserCache {
    /// The user `id`, from the cache when read less than `TTL` ago.
    pub async fn get(&self, db: &Db, id: Uuid) -> StoreResult<Option<User>> {
        self.get_within(db, id, TTL).await
    }

    /// The user `id`, from the cache when read less than `max_age` (at most `TTL`) ago.
    pub async fn get_within(
        &self,
        db: &Db,
        id: Uuid,
        max_age: Duration,
    ) -> StoreResult<Option<User>> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, user)) = entries.get(&id)
            && at.elapsed() < max_age.min(TTL)
        {
            return Ok(Some(user.clone()));
        }
        self.fresh(db, id).await
    }

    /// The user `id` read from the database now (and kept for the next requests).
    pub async fn fresh(&self, db: &Db, id: Uuid) -> StoreResult<Option<User>> {
        let user = users::find_by_id(db, id).await?;
        if let (Some(user), Ok(mut entries)) = (&user, self.entries.lock()) {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(id, (Instant::now(), user.clone()));
        }
        Ok(user)
    }

    /// Drops the entry of a user whose row changed.
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }
}

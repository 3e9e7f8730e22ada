//! The rows that API keys and browser sessions authenticate with, kept for a second so that a
//! request presenting a key or a session cookie costs no database read when the same credential
//! was accepted a moment ago (a bearer token needs none: it carries its claims).
//!
//! The cache only ever *skips a read for a credential that was good*: an entry is used when it is
//! younger than [`TTL`] and the revocation deny-list ([`super::revocation`]) knows nothing against
//! it — the key (`apikey:<id>`), the session (`session:<id>`), or the user's token generation the
//! session was read under (`gen:<user>:<n>`, denied by log-out-everywhere, password and role
//! changes, disabling). Everything else — a miss, an old entry, a denied handle, a session whose
//! idle limit looks reached or whose `last_seen_at` is due to be written — is decided by the row as
//! it is in the database, exactly as without the cache. (A key row's secret hash and expiry never
//! change, so what a cached key row refuses, the stored row refuses too.)
//!
//! Bounds: a revocation made through this instance is refused on the next request (the deny-list
//! is updated in memory before the revoking request answers). One made on another instance or by
//! the CLI reaches this instance through Redis pub/sub at once, or the half-second poll of the
//! revocation table, and in any case within [`TTL`] — the same bound as a logout's propagation and
//! the user cache's.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::store::api_keys::ApiKeyRow;
use crate::store::sessions::SessionRow;

/// How long an accepted credential's row is trusted without a read.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries per kind; beyond it the least useful are evicted (S3-FIFO), so memory stays bounded
/// (~1 KiB per entry) however many credentials are presented.
pub const CAPACITY: usize = 16_384;

/// A session row, and the token generation of its user when the row was read.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub row: SessionRow,
    pub generation: i64,
}

#[derive(Debug)]
pub struct CredentialCache {
    /// API key rows by lookup id (the public part of a key, `kyr_<lookup id>_<secret>`).
    keys: quick_cache::sync::Cache<String, (Instant, ApiKeyRow)>,
    /// Session rows by the keyed hash of the session token (the token itself is never kept).
    sessions: quick_cache::sync::Cache<String, (Instant, CachedSession)>,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            keys: quick_cache::sync::Cache::new(CAPACITY),
            sessions: quick_cache::sync::Cache::new(CAPACITY),
        }
    }
}

impl CredentialCache {
    /// The key row of `lookup_id` read less than [`TTL`] ago, if any (the caller still checks the
    /// secret, the deny-list and the expiry).
    pub fn key(&self, lookup_id: &str) -> Option<ApiKeyRow> {
        self.keys
            .get(lookup_id)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, row)| row)
    }

    /// Remembers a key row that was just read and accepted.
    pub fn put_key(&self, lookup_id: &str, row: ApiKeyRow) {
        self.keys
            .insert(lookup_id.to_owned(), (Instant::now(), row));
    }

    /// The session of `token_hash` read less than [`TTL`] ago, if any.
    pub fn session(&self, token_hash: &str) -> Option<CachedSession> {
        self.sessions
            .get(token_hash)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, s)| s)
    }

    /// Remembers a session row that was just read (or touched) and accepted.
    pub fn put_session(&self, token_hash: &str, session: CachedSession) {
        self.sessions
            .insert(token_hash.to_owned(), (Instant::now(), session));
    }

    /// Records on the cached row of `lookup_id` that its use at `at` was written to the database,
    /// so the next requests do not write it again (`last_used_at` is kept within a minute).
    pub fn key_used(&self, lookup_id: &str, at: chrono::DateTime<chrono::Utc>) {
        if let Some((read, mut row)) = self.keys.get(lookup_id) {
            row.last_used_at = Some(at);
            self.keys.insert(lookup_id.to_owned(), (read, row));
        }
    }

    /// Drops every entry of a key (after it is revoked here).
    pub fn forget_key(&self, id: Uuid) {
        self.keys.retain(|_, (_, row)| row.id != id);
    }

    /// Drops every entry of a session (after it is revoked here).
    pub fn forget_session(&self, id: Uuid) {
        self.sessions.retain(|_, (_, s)| s.row.id != id);
    }

    /// Drops every session of a user (after all of them are revoked here).
    pub fn forget_sessions_of(&self, user_id: Uuid) {
        self.sessions.retain(|_, (_, s)| s.row.user_id != user_id);
    }
}

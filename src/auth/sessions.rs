//! Server-side browser sessions: a random cookie value (only its keyed hash is stored), an idle
//! timeout and an absolute lifetime measured on the service clock, a new id at every login.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::credential_cache::CachedSession;
use crate::config::Settings;
use crate::crypto::{Purpose, random_bytes, token_hash};
use crate::model::User;
use crate::state::AppState;
use crate::store::StoreResult;
pub use crate::store::sessions::SessionRow;
use crate::store::sessions::{self, NewSession};

pub const SESSION_COOKIE: &str = "kyros_session";
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY_SECS: i64 = 60;

#[derive(Clone)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub absolute: Duration,
}

impl std::fmt::Debug for SessionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPolicy")
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .finish_non_exhaustive()
    }
}

impl SessionPolicy {
    pub fn new(settings: &Settings) -> Self {
        SessionPolicy {
            idle: Duration::minutes(settings.session_idle_minutes),
            absolute: Duration::hours(settings.session_absolute_hours),
        }
    }

    /// When this session stops being valid: the earlier of idle and absolute expiry.
    pub fn valid_until(&self, s: &SessionRow) -> DateTime<Utc> {
        (s.last_seen_at + self.idle).min(s.expires_at)
    }
}

/// Ends a session: its row, and — through the revocation deny-list, on every instance — every
/// channel it opened. False when it had ended already.
pub async fn revoke(state: &AppState, id: Uuid) -> StoreResult<bool> {
    let now = state.clock.now();
    let revoked = sessions::revoke(&state.db, id, now).await?;
    state.credentials.forget_session(id);
    state
        .revocations
        .deny(
            &super::liveness::session_handle(id),
            None,
            now + state.live().session_policy.absolute,
        )
        .await?;
    Ok(revoked)
}

/// The sessions of `owner` (every session when `None`), newest first.
pub async fn list(state: &AppState, owner: Option<Uuid>) -> StoreResult<Vec<SessionRow>> {
    sessions::list(&state.db, owner).await
}

/// The session with this id, if any.
pub async fn find(state: &AppState, id: Uuid) -> StoreResult<Option<SessionRow>> {
    sessions::find_by_id(&state.db, id).await
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub session: SessionRow,
    pub user: User,
}

pub struct Created {
    pub session: SessionRow,
    /// The cookie value; shown once, never stored.
    pub token: String,
}

pub async fn create(
    state: &AppState,
    user: &User,
    ip: Option<String>,
    user_agent: Option<String>,
) -> StoreResult<Created> {
    let now = state.clock.now();
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let hash = token_hash(state.live().keys.current(Purpose::SessionToken), &token);
    let id = Uuid::new_v4();
    let expires_at = now + state.live().session_policy.absolute;
    let user_agent = user_agent.map(|ua| ua.chars().take(512).collect::<String>());
    sessions::create(
        &state.db,
        NewSession {
            id,
            token_hash: &hash,
            user_id: user.id,
            now,
            expires_at,
            ip: ip.clone(),
            user_agent: user_agent.clone(),
        },
    )
    .await?;
    Ok(Created {
        session: SessionRow {
            id,
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            expires_at,
            revoked_at: None,
            ip,
            user_agent,
        },
        token,
    })
}

/// The live session a cookie value stands for, if any; refreshes its idle timer.
pub async fn authenticate(state: &AppState, token: &str) -> StoreResult<Option<LiveSession>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let hashes = state.live().keys.token_hashes(Purpose::SessionToken, token);
    let hash = hashes[0].clone();
    let now = state.clock.now();
    if let Some(live) = recently_accepted(state, &hash, now).await? {
        return Ok(Some(live));
    }
    // Under the current key; else under a retired one (key rotation), and then filed again
    // under the current key.
    let mut found = None;
    for (i, candidate) in hashes.iter().enumerate() {
        if let Some(session) = sessions::find_by_token_hash(&state.db, candidate).await? {
            if i > 0 {
                sessions::set_token_hash(&state.db, session.id, &hash).await?;
            }
            found = Some(session);
            break;
        }
    }
    let Some(mut session) = found else {
        return Ok(None);
    };
    if now >= state.live().session_policy.valid_until(&session) {
        return Ok(None);
    }
    let Some(user) = state.user_cache.get(&state.db, session.user_id).await? else {
        return Ok(None);
    };
    if !user.active {
        return Ok(None);
    }
    if (now - session.last_seen_at).num_seconds() >= TOUCH_EVERY_SECS {
        sessions::touch(&state.db, session.id, now).await?;
        session.last_seen_at = now;
    }
    state.credentials.put_session(
        &hash,
        CachedSession {
            row: session.clone(),
            generation: user.token_generation,
        },
    );
    Ok(Some(LiveSession { session, user }))
}

/// The session of `hash` from the credential cache when nothing has changed that the stored row
/// would have to judge (`auth::credential_cache`): not denied by the deny-list (the session, or
/// the user's token generation it was read under), the user active and still in that
/// generation, the idle limit not reached and no `last_seen_at` write due. `None` sends the
/// caller to the stored row.
async fn recently_accepted(
    state: &AppState,
    hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<LiveSession>> {
    let Some(cached) = state.credentials.session(hash) else {
        return Ok(None);
    };
    let session = cached.row;
    let denied = state
        .revocations
        .is_denied(&super::liveness::session_handle(session.id))
        || state
            .revocations
            .is_denied(&super::liveness::generation_handle(
                session.user_id,
                cached.generation,
            ));
    if denied
        || now >= state.live().session_policy.valid_until(&session)
        || (now - session.last_seen_at).num_seconds() >= TOUCH_EVERY_SECS
    {
        return Ok(None);
    }
    match state.user_cache.get(&state.db, session.user_id).await? {
        Some(user) if user.active && user.token_generation == cached.generation => {
            Ok(Some(LiveSession { session, user }))
        }
        _ => Ok(None),
    }
}

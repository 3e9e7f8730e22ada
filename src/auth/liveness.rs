//! Credential liveness: the one mechanism that keeps long-lived channels (WebSocket, SSE) honest.
//!
//! A channel holds the credential that opened it — a bearer token's `jti`, a session id, an API
//! key id, or, for a WebSocket ticket, the credential that minted the ticket — together with the
//! user's token generation at that moment. [`check`] re-evaluates it; channels call it every
//! [`CHECK_EVERY`]. It ends the channel when:
//!
//! * the credential was revoked — logout, a session ended, a key revoked: revocations are one
//!   deny-list of handles (`jti`, `session:<id>`, `apikey:<id>`), which every instance learns at
//!   once through Redis pub/sub and, whatever happens to Redis, by polling the table twice a
//!   second ([`super::revocation`]);
//! * the credential expired (token `exp`, key expiry, the session's idle or absolute limit);
//! * the user's token generation moved (log out everywhere, password change, role change,
//!   disabling): the generation that ended is a deny-list handle too (`gen:<user>:<generation>`),
//!   so this is learnt in memory, at once, on every instance; and, as a safety net for changes
//!   that bypass the services, the user row is re-read through the user cache every
//!   [`USER_REREAD_EVERY`] checks (gone or disabled users end the channel there too).
//!
//! Otherwise it returns the user as they are *now*, so a channel narrows what it delivers to the
//! current role (a demoted moderator stops receiving other users' job events). A check costs
//! memory look-ups, not a query, so ten thousand channels cost no database load. The bound from a
//! change on any instance to the channel's end is the deny-list's spread (Redis pub/sub, else the
//! half-second poll) plus [`CHECK_EVERY`]: about a second at worst.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::principal::{AuthMethod, CurrentUser};
use super::tokens::LEEWAY_SECS;
use crate::model::User;
use crate::state::AppState;

/// How often a channel re-evaluates its credential.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How old the user row a check reads may be.
pub const USER_MAX_AGE: Duration = Duration::from_millis(500);
/// The session row (for its idle limit, which requests elsewhere move) is re-read this often.
const SESSION_REREAD_EVERY: u32 = 20;
/// The user row is re-read (through the cache) every this many checks, besides at once when the
/// deny-list says the user's generation ended.
const USER_REREAD_EVERY: u32 = 4;

/// The revocation handle of a browser session in the deny-list.
pub fn session_handle(id: Uuid) -> String {
    format!("session:{id}")
}

/// The revocation handle of a user's token generation that ended (log out everywhere, password
/// or role change, disabling): every channel opened in it learns the change at once.
pub fn generation_handle(user_id: Uuid, generation: i64) -> String {
    format!("gen:{user_id}:{generation}")
}

/// The revocation handle of an API key in the deny-list.
pub fn api_key_handle(id: Uuid) -> String {
    format!("apikey:{id}")
}

/// What opened a channel.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A bearer access token.
    Bearer { jti: String, exp: i64 },
    /// A browser session.
    Session { id: Uuid },
    /// An API key; `expires_at` as when the channel opened.
    ApiKey {
        id: Uuid,
        expires_at: Option<DateTime<Utc>>,
    },
    /// A single-use WebSocket ticket, living as long as the credential that minted it (its
    /// revocation handle, if it has one).
    Ticket { minted_by: Option<String> },
}

impl Credential {
    /// The credential of an authenticated request.
    pub fn of(current: &CurrentUser) -> Credential {
        match (&current.method, &current.claims) {
            (AuthMethod::Session(id), _) => Credential::Session { id: *id },
            (AuthMethod::ApiKey { key_id, .. }, _) => Credential::ApiKey {
                id: *key_id,
                expires_at: None,
            },
            (AuthMethod::Bearer, Some(claims)) => Credential::Bearer {
                jti: claims.jti.clone(),
                exp: claims.exp,
            },
            // A bearer principal always has claims; without them only the user is checked.
            (AuthMethod::Bearer, None) => Credential::Ticket { minted_by: None },
        }
    }

    /// The deny-list handle that revokes this credential.
    pub fn handle(&self) -> Option<String> {
        match self {
            Credential::Bearer { jti, .. } => Some(jti.clone()),
            Credential::Session { id } => Some(session_handle(*id)),
            Credential::ApiKey { id, .. } => Some(api_key_handle(*id)),
            Credential::Ticket { minted_by } => minted_by.clone(),
        }
    }
}

/// A long-lived channel's hold on its credential.
#[derive(Debug, Clone)]
pub struct Channel {
    pub user_id: Uuid,
    pub credential: Credential,
    /// The user's token generation when the credential was proved.
    pub generation: i64,
    checks: u32,
    /// The user as last read.
    user: Option<User>,
}

/// The outcome of a check.
#[derive(Debug)]
pub enum Liveness {
    /// The channel lives on, for this user as they are now.
    Live(User),
    /// The channel must end; the reason is the WebSocket close reason (code 1008).
    Ended(&'static str),
    /// The store could not be asked: nothing changes until the next check.
    Unknown,
}

impl Channel {
    /// The channel of an authenticated request (its user's generation as of now). An API key's
    /// expiry is looked up once here.
    pub async fn open(state: &AppState, current: &CurrentUser) -> Channel {
        let mut credential = Credential::of(current);
        if let Credential::ApiKey { id, expires_at } = &mut credential
            && let Ok(Some(row)) = crate::store::api_keys::find_by_id(&state.db, *id).await
        {
            *expires_at = row.expires_at;
        }
        Channel::new(current.user.id, current.user.token_generation, credential)
    }

    pub fn new(user_id: Uuid, generation: i64, credential: Credential) -> Channel {
        Channel {
            user_id,
            credential,
            generation,
            checks: 0,
            user: None,
        }
    }
}

/// Re-evaluates a channel's credential (see the module documentation). A store failure keeps the
/// channel (the database being down is not a revocation); the next check tries again.
pub async fn check(state: &AppState, channel: &mut Channel) -> Liveness {
    channel.checks = channel.checks.wrapping_add(1);
    let now = state.clock.now();
    if let Some(handle) = channel.credential.handle()
        && state.revocations.is_denied(&handle)
    {
        return Liveness::Ended(match channel.credential {
            Credential::Session { .. } => "Session ended",
            Credential::ApiKey { .. } => "API key revoked",
            _ => "Token revoked",
        });
    }
    match &channel.credential {
        Credential::Bearer { exp, .. } if exp + LEEWAY_SECS <= now.timestamp() => {
            return Liveness::Ended("Token expired");
        }
        Credential::ApiKey {
            expires_at: Some(at),
            ..
        } if *at <= now => return Liveness::Ended("API key expired"),
        Credential::Session { id } if channel.checks.is_multiple_of(SESSION_REREAD_EVERY) => {
            match crate::store::sessions::find_by_id(&state.db, *id).await {
                Ok(Some(s))
                    if s.revoked_at.is_none()
                        && now < state.live().session_policy.valid_until(&s) => {}
                Ok(_) => return Liveness::Ended("Session ended"),
                Err(_) => {}
            }
        }
        _ => {}
    }
    // The user's generation ended (deny-list, in memory): a token or session channel ends; an
    // API key's re-reads its owner (it follows the owner's role and activity instead).
    let generation_ended = state
        .revocations
        .is_denied(&generation_handle(channel.user_id, channel.generation));
    let bound_to_generation = !matches!(channel.credential, Credential::ApiKey { .. });
    if generation_ended && bound_to_generation {
        return Liveness::Ended("Token revoked");
    }
    // Otherwise the user row is read through the cache now and then (a safety net for changes
    // that bypass the services), or at once when the generation moved.
    if !generation_ended
        && channel.user.is_some()
        && !channel.checks.is_multiple_of(USER_REREAD_EVERY)
    {
        return match &channel.user {
            Some(user) => Liveness::Live(user.clone()),
            None => Liveness::Unknown,
        };
    }
    let read = if generation_ended {
        state.user_cache.fresh(&state.db, channel.user_id).await
    } else {
        state
            .user_cache
            .get_within(&state.db, channel.user_id, USER_MAX_AGE)
            .await
    };
    let user = match read {
        Ok(Some(user)) => user,
        Ok(None) => return Liveness::Ended("User no longer active"),
        Err(_) => return Liveness::Unknown,
    };
    if !user.active {
        return Liveness::Ended("User no longer active");
    }
    if bound_to_generation && user.token_generation != channel.generation {
        return Liveness::Ended("Token revoked");
    }
    if !bound_to_generation {
        channel.generation = user.token_generation;
    }
    channel.user = Some(user.clone());
    Liveness::Live(user)
}

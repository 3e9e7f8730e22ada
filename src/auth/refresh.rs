//! Refresh tokens: opaque, high-entropy, stored only as a keyed hash, in families. Each use
//! rotates the token. Presenting an already-rotated token again is treated as theft: the whole
//! family is revoked — except once within a short grace period for the same client, which covers
//! two concurrent refreshes of one app (a third presentation is theft again, so the grace can
//! add at most one sibling to a family). Marking a token used is a single conditional UPDATE, so two
//! concurrent refreshes cannot both pass as the first.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::crypto::{Purpose, random_bytes, token_hash};
use crate::model::User;
use crate::state::AppState;
use crate::store::StoreResult;
use crate::store::tokens::{self, NewRefresh};
use crate::store::users::{self};

/// How long a rotated token may be presented again by the same client.
pub const GRACE_SECS: i64 = 10;

/// The keyed hash a new refresh token is stored under (the current key).
pub fn hash(state: &AppState, token: &str) -> String {
    token_hash(state.live().keys.current(Purpose::RefreshToken), token)
}

/// The stored row of a presented refresh token, under any key of the ring (key rotation).
async fn find(state: &AppState, token: &str) -> StoreResult<Option<tokens::RefreshRow>> {
    for candidate in state.live().keys.token_hashes(Purpose::RefreshToken, token) {
        if let Some(row) = tokens::find_refresh(&state.db, &candidate).await? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone)]
pub struct IssuedRefresh {
    pub token: String,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// A new refresh token, in `family` or in a new one.
pub async fn issue(
    state: &AppState,
    user: &User,
    family: Option<Uuid>,
) -> StoreResult<IssuedRefresh> {
    let now = state.clock.now();
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let family_id = family.unwrap_or_else(Uuid::new_v4);
    let expires_at = now + Duration::minutes(state.settings().refresh_token_expire_minutes);
    tokens::insert_refresh(
        &state.db,
        NewRefresh {
            id: Uuid::new_v4(),
            token_hash: &hash(state, &token),
            family_id,
            user_id: user.id,
            now,
            expires_at,
        },
    )
    .await?;
    Ok(IssuedRefresh {
        token,
        family_id,
        expires_at,
    })
}

#[derive(Debug)]
pub enum Rotation {
    /// The token was consumed; the caller issues the next one of `family_id`.
    Rotated {
        user: User,
        family_id: Uuid,
    },
    Invalid,
    /// A rotated token came back after the grace period, from another client, or a second time
    /// within it; its family is now revoked.
    Reused {
        user_id: Uuid,
        family_id: Uuid,
    },
}

pub async fn rotate(
    state: &AppState,
    token: &str,
    client_ip: Option<&str>,
) -> StoreResult<Rotation> {
    if token.is_empty() || token.len() > 256 {
        return Ok(Rotation::Invalid);
    }
    let Some(row) = find(state, token).await? else {
        return Ok(Rotation::Invalid);
    };
    let now = state.clock.now();
    if row.revoked_at.is_some()
        || row.expires_at <= now
        || tokens::family_revoked(&state.db, row.family_id).await?
    {
        return Ok(Rotation::Invalid);
    }
    if !tokens::mark_used(&state.db, row.id, now, client_ip).await? {
        // Already used. The same client within the grace period gets a sibling; anyone else,
        // or later, has replayed a stolen token.
        let fresh = find(state, token).await?;
        let in_grace = fresh.as_ref().is_some_and(|r| {
            r.revoked_at.is_none()
                && r.used_at
                    .is_some_and(|used| now - used <= Duration::seconds(GRACE_SECS))
                && r.used_ip.as_deref() == client_ip
        });
        // The grace admits one replay, not one per presentation: a second sibling would let a
        // replayed token multiply the family.
        let admitted = in_grace && tokens::use_grace(&state.db, row.id, now).await?;
        if !admitted {
            tokens::revoke_family(&state.db, row.family_id, now).await?;
            return Ok(Rotation::Reused {
                user_id: row.user_id,
                family_id: row.family_id,
            });
        }
    }
    let Some(user) = users::find_by_id(&state.db, row.user_id).await? else {
        return Ok(Rotation::Invalid);
    };
    if !user.active {
        return Ok(Rotation::Invalid);
    }
    Ok(Rotation::Rotated {
        user,
        family_id: row.family_id,
    })
}

/// Revokes the family of `token` if it belongs to `user`; true when something was revoked.
pub async fn revoke_own(state: &AppState, user: &User, token: &str) -> StoreResult<bool> {
    let Some(row) = find(state, token).await? else {
        return Ok(false);
    };
    if row.user_id != user.id {
        return Ok(false);
    }
    Ok(tokens::revoke_family(&state.db, row.family_id, state.clock.now()).await? > 0)
}

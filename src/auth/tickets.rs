//! WebSocket tickets: a browser cannot set headers on a WebSocket handshake, so a signed-in
//! person asks `POST /auth/ws-ticket` for a ticket and opens `/ws?ticket=…`. A ticket is opaque
//! (only its keyed hash is stored), works once, for [`TICKET_SECS`], and the socket it opens
//! lives as long as the credential that minted it (`auth::liveness`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;

use super::liveness::{Channel, Credential};
use super::principal::CurrentUser;
use crate::crypto::{Purpose, random_bytes, token_hash};
use crate::model::User;
use crate::state::AppState;
use crate::store::StoreResult;
use crate::store::tokens::{self, WsTicket};

/// How long a ticket may wait for its socket.
pub const TICKET_SECS: i64 = 60;

fn hash(state: &AppState, ticket: &str) -> String {
    token_hash(state.live().keys.current(Purpose::WsTicket), ticket)
}

/// A new ticket for `current`, bound to the credential of the request and the user's token
/// generation.
pub async fn mint(state: &AppState, current: &CurrentUser) -> StoreResult<String> {
    let ticket = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let expires = state.clock.now() + Duration::seconds(TICKET_SECS);
    let origin = WsTicket {
        user_id: current.user.id,
        minted_by: Credential::of(current).handle(),
        token_generation: current.user.token_generation,
    };
    tokens::insert_ws_ticket(&state.db, &hash(state, &ticket), &origin, expires).await?;
    Ok(ticket)
}

/// Uses a ticket up: its user and the channel its socket holds; `None` for an unknown, used or
/// expired ticket, or one whose user was disabled or logged out everywhere since.
pub async fn redeem(state: &AppState, ticket: &str) -> StoreResult<Option<(User, Channel)>> {
    let now = state.clock.now();
    // Under the current key, else a retired one: a ticket minted just before a key rotation.
    let mut found = None;
    for candidate in state.live().keys.token_hashes(Purpose::WsTicket, ticket) {
        if let Some(origin) = tokens::use_ws_ticket(&state.db, &candidate, now).await? {
            found = Some(origin);
            break;
        }
    }
    let Some(origin) = found else {
        return Ok(None);
    };
    let user = super::accounts::user_by_id(state, origin.user_id)
        .await?
        .filter(|u| u.active && u.token_generation == origin.token_generation);
    Ok(user.map(|user| {
        let channel = Channel::new(
            user.id,
            origin.token_generation,
            Credential::Ticket {
                minted_by: origin.minted_by,
            },
        );
        (user, channel)
    }))
}

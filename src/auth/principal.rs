//! Who is calling: extractors that authenticate a request or refuse it with 401.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::tokens::{AccessClaims, TokenError};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::users::{self, User};

/// An authenticated, active user and the claims of the token that proved it.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub claims: AccessClaims,
}

/// The token of an `Authorization: Bearer …` header (scheme compared case-insensitively).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("token rejected: {0}")]
    Token(#[from] TokenError),
    #[error("the token's user does not exist or is inactive")]
    UnknownUser,
}

/// The one path from an access token to a user, used by every entry point.
pub async fn user_from_token(state: &AppState, token: &str) -> Result<CurrentUser, ApiError> {
    match resolve(state, token).await {
        Ok(Ok(current)) => Ok(current),
        Ok(Err(failure)) => {
            tracing::info!(target: "auth", reason = %failure, "access token refused");
            Err(ApiError::invalid_credentials())
        }
        Err(store) => Err(store.into()),
    }
}

async fn resolve(
    state: &AppState,
    token: &str,
) -> Result<Result<CurrentUser, AuthFailure>, crate::store::StoreError> {
    let claims = match state.tokens.verify(token, state.clock.now()) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.into())),
    };
    let user = match claims.user_id {
        Some(id) => users::find_by_id(&state.db, id).await?,
        None => users::find_by_username(&state.db, &claims.sub).await?,
    };
    match user {
        Some(user) if user.active && user.username == claims.sub => {
            Ok(Ok(CurrentUser { user, claims }))
        }
        _ => Ok(Err(AuthFailure::UnknownUser)),
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(current) = parts.extensions.get::<CurrentUser>() {
            return Ok(current.clone());
        }
        let token = bearer_token(&parts.headers).ok_or_else(ApiError::invalid_credentials)?;
        let current = user_from_token(state, token).await?;
        parts.extensions.insert(current.clone());
        Ok(current)
    }
}

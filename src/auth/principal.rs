//! Who is calling. The `authenticate` middleware resolves the credentials of a request once —
//! an API key (`X-API-Key` or `Bearer kyr_…`) first, then a bearer token, else the session
//! cookie — so the rate limiter, CSRF and the handlers all
//! see the same answer; the `CurrentUser` extractor reads it or refuses with 401.

use axum::extract::{FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::sessions::{self, SESSION_COOKIE};
use super::tokens::{AccessClaims, TokenError};
use crate::audit::AuditEvent;
use crate::context::RequestContext;
use crate::cookies;
use crate::error::ApiError;
use crate::model::User;
use crate::state::AppState;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    /// A browser session; the value is the session id.
    Session(Uuid),
    /// An API key of an agent or service; `scopes` limit what it may do besides its owner's role.
    ApiKey {
        key_id: Uuid,
        scopes: super::api_keys::Scopes,
    },
}

/// An authenticated, active user and how they proved it.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub method: AuthMethod,
    /// The access token's claims, for bearer requests.
    pub claims: Option<AccessClaims>,
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
    #[error("the token was revoked")]
    Revoked,
}

/// The one path from an access token to a user, used by every entry point.
pub async fn user_from_token(
    state: &AppState,
    token: &str,
) -> Result<Result<CurrentUser, AuthFailure>, StoreError> {
    let claims = match state.live().tokens.verify(token, state.clock.now()) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.into())),
    };
    if state.revocations.is_denied(&claims.jti) {
        return Ok(Err(AuthFailure::Revoked));
    }
    let user = match claims.user_id {
        Some(id) => {
            let cached = state.user_cache.get(&state.db, id).await?;
            // A token newer than the cached row (a change made on another instance a moment
            // ago, then a new login) is checked against the row itself.
            match cached {
                Some(u)
                    if u.token_generation != claims.generation.unwrap_or(0)
                        || claims.role.as_deref() != Some(u.role.as_str()) =>
                {
                    state.user_cache.fresh(&state.db, id).await?
                }
                other => other,
            }
        }
        None => crate::auth::accounts::find_user(&state.db, &claims.sub).await?,
    };
    match user {
        Some(user) if user.token_generation != claims.generation.unwrap_or(0) => {
            Ok(Err(AuthFailure::Revoked))
        }
        Some(user) if user.active && user.username == claims.sub => Ok(Ok(CurrentUser {
            user,
            method: AuthMethod::Bearer,
            claims: Some(claims),
        })),
        _ => Ok(Err(AuthFailure::UnknownUser)),
    }
}

/// Middleware: resolves the caller once per request.
pub async fn authenticate(
    state: &AppState,
    mut request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let key = match super::api_keys::resolve(
        state,
        request.headers(),
        request.extensions().get::<RequestContext>(),
        request.uri().path(),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A presented key decides alone: a refused key never falls back to other credentials.
    let resolved = if let super::api_keys::Outcome::Accepted(current) = key {
        Some(*current)
    } else if matches!(key, super::api_keys::Outcome::Rejected) {
        None
    } else if let Some(token) = bearer_token(request.headers()) {
        match user_from_token(state, token).await {
            Ok(Ok(current)) => Some(current),
            Ok(Err(failure)) => {
                let ctx = request.extensions().get::<RequestContext>();
                state.audit.record(
                    AuditEvent::new("auth.token_rejected", "denied")
                        .context(ctx)
                        .details(
                            json!({"reason": failure.to_string(), "path": request.uri().path()}),
                        ),
                );
                None
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else if let Some(cookie) = cookies::get(request.headers(), SESSION_COOKIE) {
        match sessions::authenticate(state, &cookie).await {
            Ok(live) => live.map(|live| CurrentUser {
                method: AuthMethod::Session(live.session.id),
                user: live.user,
                claims: None,
            }),
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        None
    };
    if let Some(current) = resolved {
        request.extensions_mut().insert(current);
    }
    next(request).await
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(ApiError::invalid_credentials)
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for CurrentUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<CurrentUser>().cloned())
    }
}

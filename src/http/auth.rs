//! `/auth/*`: password login and the caller's profile.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::body::JsonObject;
use crate::auth::accounts::{self, AccountError};
pub use crate::auth::login::PasswordStep;
use crate::auth::login::{self, LoginError};
use crate::auth::mfa::{self, MfaError};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::UserPrincipal;
use crate::auth::refresh;
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::model::User;
use crate::security::rate_limit::limited_error;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-all", post(logout_all))
        .route("/auth/user", get(profile))
}

/// Marks a response that carries a credential as never to be stored by any cache.
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(field, msg) => ApiError::field(field, "value_error", msg),
            AccountError::Taken(field) => {
                ApiError::conflict(format!("A user with this {field} already exists"))
            }
            AccountError::NotFound => ApiError::not_found("User not found"),
            AccountError::Store(e) => e.into(),
            AccountError::Password(e) => ApiError::internal(e),
        }
    }
}

/// `{username, password}` from a JSON body, validated.
pub fn credentials(body: &JsonObject) -> Result<(String, SecretString), ApiError> {
    let mut fields = body.fields();
    let username = fields.string("username", accounts::NAME_MAX_CHARS * 4);
    let password = fields.string("password", PASSWORD_MAX_BYTES);
    fields.finish()?;
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, SecretString::from(p))),
        _ => Err(ApiError::internal("validated fields missing")),
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Limited(q) => limited_error(&q),
            LoginError::Refused => ApiError::unauthorized("Incorrect username or password"),
            LoginError::InvalidCode => ApiError::unauthorized("Invalid verification code"),
            LoginError::WrongCurrentPassword => ApiError::forbidden(e.to_string()),
            LoginError::ChallengeInvalid => {
                ApiError::unauthorized("Invalid or expired MFA challenge")
            }
            LoginError::Mfa(e) => mfa_error(e),
            LoginError::Account(e) => e.into(),
            LoginError::Store(e) => e.into(),
        }
    }
}

/// The password step of a login (`auth::login::password`), mapped to an API error.
pub async fn password_login(
    state: &AppState,
    ctx: Option<&RequestContext>,
    via: &'static str,
    username: &str,
    password: SecretString,
) -> Result<PasswordStep, ApiError> {
    Ok(login::password(state, ctx, via, username, password).await?)
}

async fn login(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let (username, password) = credentials(&body)?;
    let ctx = ctx.map(|Extension(c)| c);
    match password_login(&state, ctx.as_ref(), "token", &username, password).await? {
        PasswordStep::SecondFactor(user) => {
            mfa_challenge_response(&state, &user, mfa::LoginKind::Bearer).await
        }
        PasswordStep::Complete(user) => token_response(&state, &user, None).await,
    }
}

pub fn mfa_error(e: MfaError) -> ApiError {
    match e {
        MfaError::Store(s) => s.into(),
        MfaError::AlreadyEnabled => {
            ApiError::conflict("Multi-factor authentication is already enabled")
        }
        MfaError::NotEnrolled => {
            ApiError::bad_request("Multi-factor authentication is not enrolled")
        }
        MfaError::Corrupt => ApiError::internal("an MFA secret could not be read"),
    }
}

/// The first step's answer for a user with MFA: a challenge to complete at `/auth/mfa/verify`.
pub async fn mfa_challenge_response(
    state: &AppState,
    user: &User,
    kind: mfa::LoginKind,
) -> Result<Response, ApiError> {
    let token = mfa::challenge(state, user, kind).await?;
    Ok(no_store(
        Json(json!({
            "mfa_required": true,
            "mfa_token": token,
            "token_type": "mfa",
            "expires_in": mfa::CHALLENGE_SECS,
        }))
        .into_response(),
    ))
}

/// `{access_token, token_type, expires_in, refresh_token}`: a new access token and the next
/// refresh token of `family` (or of a new family).
pub async fn token_response(
    state: &AppState,
    user: &User,
    family: Option<Uuid>,
) -> Result<Response, ApiError> {
    let issued = state
        .tokens
        .issue(user, state.clock.now())
        .map_err(ApiError::internal)?;
    let refresh = refresh::issue(state, user, family).await?;
    Ok(no_store(
        Json(json!({
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "refresh_token": refresh.token,
        }))
        .into_response(),
    ))
}

fn invalid_refresh() -> ApiError {
    ApiError::unauthorized("Invalid or expired refresh token")
}

async fn refresh(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut fields = body.fields();
    let token = fields.string("refresh_token", 256);
    fields.finish()?;
    let token = token.ok_or_else(invalid_refresh)?;
    let ctx = ctx.map(|Extension(c)| c);
    match login::refresh(&state, ctx.as_ref(), &token).await? {
        Some((user, family_id)) => token_response(&state, &user, Some(family_id)).await,
        None => Err(invalid_refresh()),
    }
}

/// Logs out the caller: the access token of this request (or the browser session), and the
/// refresh family of the `refresh_token` in the body when it is the caller's.
async fn logout(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    let refresh_token = match &body {
        Some(body) => {
            let mut fields = body.fields();
            let t = fields.optional_string("refresh_token", 256);
            fields.finish()?;
            t
        }
        None => None,
    };
    let ctx = ctx.map(|Extension(c)| c);
    let out = login::logout(&state, ctx.as_ref(), &current, refresh_token.as_deref()).await?;
    // `token_revoked` keeps the original's meaning: whether the *refresh token* sent was
    // revoked (false for an unknown or foreign one); `access_revoked` tells about this
    // request's own credential (the access token or the browser session).
    Ok(Json(json!({
        "message": "Logged out successfully",
        "token_revoked": out.refresh_family_revoked,
        "access_revoked": out.access_revoked,
    }))
    .into_response())
}

/// Logs the caller out everywhere: every access token, refresh token and browser session.
async fn logout_all(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
) -> Result<Response, ApiError> {
    let ctx = ctx.map(|Extension(c)| c);
    login::logout_all(&state, ctx.as_ref(), &current.user).await?;
    Ok(Json(json!({"message": "Logged out everywhere"})).into_response())
}

async fn profile(current: CurrentUser) -> Json<serde_json::Value> {
    let user = current.user;
    Json(json!({
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "role": user.role,
        "active": user.active,
        "created_at": user.created_at,
    }))
}

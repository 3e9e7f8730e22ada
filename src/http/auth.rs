//! `/auth/*`: password login, token refresh, logout and the caller's profile.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, Message, access, login_type};
use super::extract::Json;
use crate::auth::accounts::AccountError;
pub use crate::auth::login::PasswordStep;
use crate::auth::login::{self, LoginError};
use crate::auth::mfa::{self, MfaError};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::UserPrincipal;
use crate::auth::refresh;
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::model::{Role, User};
use crate::security::rate_limit::limited_error;
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(access(
            Access::Public,
            login_type(
                ApiRouter::new()
                    .routes(routes!(login))
                    .routes(routes!(refresh)),
            ),
        ))
        .merge(access(
            Access::Login,
            ApiRouter::new()
                .routes(routes!(logout))
                .routes(routes!(logout_all)),
        ))
        .merge(access(
            Access::Any,
            ApiRouter::new().routes(routes!(profile)),
        ))
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

/// The 422 entry of a password longer than the service accepts: the schema counts characters,
/// the limit is in bytes (`PASSWORD_MAX_BYTES`).
pub fn password_bytes_error(field: &str, password: &str) -> Option<FieldError> {
    (password.len() > PASSWORD_MAX_BYTES).then(|| {
        FieldError::body(
            field,
            "string_too_long",
            format!("String should have at most {PASSWORD_MAX_BYTES} bytes"),
        )
    })
}

/// A username and a password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// The username (compared as RFC 8265 usernames are).
    #[schema(max_length = 1020)]
    pub username: String,
    /// The password: at most 1024 bytes of UTF-8.
    #[schema(max_length = 1024, format = Password)]
    pub password: String,
}

impl Credentials {
    /// The username and the password, once the password's byte length is checked.
    pub fn checked(self) -> Result<(String, SecretString), ApiError> {
        if let Some(e) = password_bytes_error("password", &self.password) {
            return Err(ApiError::validation(vec![e]));
        }
        Ok((self.username, SecretString::from(self.password)))
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

/// A new access token and the next refresh token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// The access token (HS512 JWT), for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single-use: exchanged at `POST /auth/refresh` for the next pair.
    pub refresh_token: String,
}

/// The first login step's answer for an account with multi-factor authentication: a challenge to
/// complete at `POST /auth/mfa/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always `true`.
    pub mfa_required: bool,
    /// The challenge, sent back with the code.
    pub mfa_token: String,
    /// Always `mfa`.
    #[schema(example = "mfa")]
    pub token_type: String,
    /// Seconds the challenge stays valid.
    pub expires_in: i64,
}

/// The answer of a bearer login: tokens, or a second-factor challenge.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Tokens(TokenPair),
    MfaRequired(MfaChallenge),
}

/// Log in with a username and password (bearer tokens).
///
/// The answer is an access token and a refresh token, or, for an account with multi-factor
/// authentication, a challenge to complete at `POST /auth/mfa/verify`.
#[utoipa::path(
    post, path = "/auth/login", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in (tokens), or a second factor is needed (challenge)",
         body = LoginAnswer,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Incorrect username or password", body = ErrorEnvelope),
    ),
)]
async fn login(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    let (username, password) = body.checked()?;
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
        axum::Json(MfaChallenge {
            mfa_required: true,
            mfa_token: token,
            token_type: "mfa".into(),
            expires_in: mfa::CHALLENGE_SECS,
        })
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
        .live()
        .tokens
        .issue(user, state.clock.now())
        .map_err(ApiError::internal)?;
    let refresh = refresh::issue(state, user, family).await?;
    Ok(no_store(
        axum::Json(TokenPair {
            access_token: issued.token,
            token_type: "bearer".into(),
            expires_in: issued.expires_in,
            refresh_token: refresh.token,
        })
        .into_response(),
    ))
}

fn invalid_refresh() -> ApiError {
    ApiError::unauthorized("Invalid or expired refresh token")
}

/// A refresh token to exchange.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the last token pair.
    #[schema(max_length = 256)]
    pub refresh_token: String,
}

/// Exchange a refresh token for a new token pair.
///
/// Refresh tokens are single-use: presenting one a second time ends its whole family.
#[utoipa::path(
    post, path = "/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The next token pair", body = TokenPair,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Invalid or expired refresh token", body = ErrorEnvelope),
    ),
)]
async fn refresh(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    Json(body): Json<RefreshRequest>,
) -> Result<Response, ApiError> {
    let ctx = ctx.map(|Extension(c)| c);
    match login::refresh(&state, ctx.as_ref(), &body.refresh_token).await? {
        Some((user, family_id)) => token_response(&state, &user, Some(family_id)).await,
        None => Err(invalid_refresh()),
    }
}

/// Optionally, the refresh token whose family ends with the logout.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutRequest {
    /// A refresh token of the caller's; its family is revoked too.
    #[schema(max_length = 256)]
    pub refresh_token: Option<String>,
}

/// The answer of a logout.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutAnswer {
    pub message: String,
    /// Whether the refresh token sent was revoked (false for none, an unknown or a foreign one).
    pub token_revoked: bool,
    /// Whether this request's own credential (access token or browser session) was revoked.
    pub access_revoked: bool,
}

/// Log out.
///
/// Ends the access token of this request (or the browser session), and the refresh family of
/// the `refresh_token` in the body when it is the caller's.
#[utoipa::path(
    post, path = "/auth/logout", tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "optional"),
    responses(
        (status = 200, description = "Logged out", body = LogoutAnswer),
    ),
)]
async fn logout(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    body: Option<Json<LogoutRequest>>,
) -> Result<axum::Json<LogoutAnswer>, ApiError> {
    let refresh_token = body.and_then(|Json(b)| b.refresh_token);
    let ctx = ctx.map(|Extension(c)| c);
    let out = login::logout(&state, ctx.as_ref(), &current, refresh_token.as_deref()).await?;
    // `token_revoked` keeps the original's meaning: whether the *refresh token* sent was
    // revoked (false for an unknown or foreign one); `access_revoked` tells about this
    // request's own credential (the access token or the browser session).
    Ok(axum::Json(LogoutAnswer {
        message: "Logged out successfully".into(),
        token_revoked: out.refresh_family_revoked,
        access_revoked: out.access_revoked,
    }))
}

/// Log out everywhere.
///
/// Ends every access token, refresh token and browser session of the caller.
#[utoipa::path(
    post, path = "/auth/logout-all", tag = "auth",
    responses(
        (status = 200, description = "Logged out everywhere", body = Message),
    ),
)]
async fn logout_all(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
) -> Result<axum::Json<Message>, ApiError> {
    let ctx = ctx.map(|Extension(c)| c);
    login::logout_all(&state, ctx.as_ref(), &current.user).await?;
    Ok(Message::new("Logged out everywhere"))
}

/// The caller's account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// The caller's profile (for an API key: its owner's).
#[utoipa::path(
    get, path = "/auth/user", tag = "auth",
    responses(
        (status = 200, description = "The caller's account", body = Profile),
    ),
)]
async fn profile(current: CurrentUser) -> axum::Json<Profile> {
    let user = current.user;
    axum::Json(Profile {
        id: user.id,
        username: user.username,
        email: user.email,
        role: user.role,
        active: user.active,
        created_at: user.created_at,
    })
}

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
use crate::audit::AuditEvent;
use crate::auth::accounts::{self, AccountError, LoginOutcome};
use crate::auth::mfa::{self, MfaError};
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::auth::rbac::UserPrincipal;
use crate::auth::refresh::{self, Rotation};
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::model::User;
use crate::security::rate_limit::{Policy, Verdict, limited_error};
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

/// What a correct password leads to.
#[derive(Debug)]
pub enum PasswordStep {
    /// The login is complete.
    Complete(User),
    /// A second factor is enrolled: answer with a challenge.
    SecondFactor(User),
}

/// Checks a password login and audits the outcome; every refusal is the same 401.
pub async fn password_login(
    state: &AppState,
    ctx: Option<&RequestContext>,
    via: &'static str,
    username: &str,
    password: SecretString,
) -> Result<PasswordStep, ApiError> {
    // The per-account budget, before any hashing work; unknown names are counted the same way,
    // and names that are the same name (RFC 8265) share one budget.
    let name_key = accounts::username_key(username).unwrap_or_else(|| username.to_lowercase());
    let account = format!("acct:{name_key}");
    if let Verdict::Limited(q) = state.limiter.check(Policy::AuthAccount, &account).await {
        state.audit.record(
            AuditEvent::new("ratelimit.exceeded", "denied")
                .context(ctx)
                .attempted(username)
                .details(json!({"policy": "acct", "key_kind": "acct", "path": via})),
        );
        return Err(limited_error(&q));
    }
    match accounts::authenticate(state, username, password).await? {
        LoginOutcome::Accepted(user) => {
            state.audit.record(
                AuditEvent::new("auth.login", "success")
                    .context(ctx)
                    .user(&user)
                    .details(json!({"via": via})),
            );
            Ok(PasswordStep::Complete(user))
        }
        LoginOutcome::SecondFactorRequired(user) => {
            state.audit.record(
                AuditEvent::new("auth.login", "challenge")
                    .context(ctx)
                    .user(&user)
                    .details(json!({"via": via, "factor": "totp"})),
            );
            Ok(PasswordStep::SecondFactor(user))
        }
        LoginOutcome::Refused { reason, user } => {
            let event = AuditEvent::new("auth.login", "failure")
                .context(ctx)
                .details(json!({"via": via, "reason": reason}));
            state.audit.record(match &user {
                Some(user) => event.user(user),
                None => event.attempted(username),
            });
            Err(ApiError::unauthorized("Incorrect username or password"))
        }
    }
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
    let ip = ctx.as_ref().map(|c| c.client_ip.to_string());
    match refresh::rotate(&state, &token, ip.as_deref()).await? {
        Rotation::Rotated { user, family_id } => {
            state.audit.record(
                AuditEvent::new("auth.refresh", "success")
                    .context(ctx.as_ref())
                    .user(&user)
                    .details(json!({"family_id": family_id})),
            );
            token_response(&state, &user, Some(family_id)).await
        }
        Rotation::Reused { user_id, family_id } => {
            let mut event = AuditEvent::new("auth.refresh_reuse", "denied")
                .context(ctx.as_ref())
                .details(json!({"family_id": family_id, "action": "family revoked"}));
            event.actor_id = Some(user_id);
            state.audit.record(event);
            Err(invalid_refresh())
        }
        Rotation::Invalid => {
            state.audit.record(
                AuditEvent::new("auth.refresh", "failure")
                    .context(ctx.as_ref())
                    .details(json!({"reason": "invalid, expired or revoked"})),
            );
            Err(invalid_refresh())
        }
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
    let mut revoked = false;
    match &current.method {
        AuthMethod::Session(id) => {
            revoked |= crate::auth::sessions::revoke(&state, *id).await?;
        }
        _ => {
            if let Some(claims) = &current.claims {
                let exp = chrono::DateTime::from_timestamp(claims.exp, 0)
                    .unwrap_or_else(|| state.clock.now());
                state
                    .revocations
                    .deny(&claims.jti, Some(current.user.id), exp)
                    .await?;
                revoked = true;
            }
        }
    }
    let family_revoked = match refresh_token {
        Some(t) => refresh::revoke_own(&state, &current.user, &t).await?,
        None => false,
    };
    state.audit.record(
        AuditEvent::new("auth.logout", "success")
            .context(ctx.map(|Extension(c)| c).as_ref())
            .user(&current.user)
            .details(json!({"access_revoked": revoked, "refresh_family_revoked": family_revoked})),
    );
    // `token_revoked` keeps the original's meaning: whether the *refresh token* sent was
    // revoked (false for an unknown or foreign one); `access_revoked` tells about this
    // request's own credential (the access token or the browser session).
    Ok(Json(json!({
        "message": "Logged out successfully",
        "token_revoked": family_revoked,
        "access_revoked": revoked,
    }))
    .into_response())
}

/// Logs the caller out everywhere: every access token, refresh token and browser session.
async fn logout_all(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
) -> Result<Response, ApiError> {
    accounts::revoke_everything(&state, &current.user).await?;
    state.audit.record(
        AuditEvent::new("auth.logout_all", "success")
            .context(ctx.map(|Extension(c)| c).as_ref())
            .user(&current.user),
    );
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

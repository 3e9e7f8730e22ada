//! `/auth/*`: password login and the caller's profile.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::json;

use super::body::JsonObject;
use crate::auth::accounts::{self, AccountError, LoginOutcome};
use crate::auth::principal::CurrentUser;
use crate::config::PASSWORD_MAX_BYTES;
use crate::error::ApiError;
use crate::security::audit::AuditEvent;
use crate::security::client_ip::RequestContext;
use crate::security::rate_limit::{Policy, Verdict, limited_error};
use crate::state::AppState;
use crate::store::users::User;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
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

/// Checks a password login and audits the outcome; every refusal is the same 401.
pub async fn password_login(
    state: &AppState,
    ctx: Option<&RequestContext>,
    via: &'static str,
    username: &str,
    password: SecretString,
) -> Result<User, ApiError> {
    // The per-account budget, before any hashing work; unknown names are counted the same way.
    let account = format!("acct:{}", username.to_lowercase());
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
            Ok(user)
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
    let user = password_login(&state, ctx.as_ref(), "token", &username, password).await?;
    let issued = state
        .tokens
        .issue(&user, state.clock.now())
        .map_err(ApiError::internal)?;
    Ok(no_store(
        Json(json!({
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
        }))
        .into_response(),
    ))
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

//! `POST /auth/password`: a person changes their own password. The current password is required
//! (a stolen session alone cannot take the account over); a wrong one counts towards the lockout.
//! Every token and session of the account ends; a browser that made the change gets a fresh
//! session, a bearer client logs in again.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::auth::no_store;
use super::body::JsonObject;
use super::sessions::session_response;
use crate::audit::{Actor, AuditEvent};
use crate::auth::accounts::{self, AccountError};
use crate::auth::password::Verification;
use crate::auth::principal::AuthMethod;
use crate::auth::rbac::UserPrincipal;
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::security::rate_limit::{Policy, Verdict, limited_error};
use crate::state::AppState;

pub const PASSWORD_PATH: &str = "/auth/password";

pub fn routes() -> Router<AppState> {
    Router::new().route(PASSWORD_PATH, post(change_password))
}

async fn change_password(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut fields = body.fields();
    let old = fields.string("current_password", PASSWORD_MAX_BYTES);
    let new = fields.string("new_password", PASSWORD_MAX_BYTES);
    fields.finish()?;
    let (Some(old), Some(new)) = (old, new) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let ctx = ctx.map(|Extension(c)| c);
    let user = current.user;
    // Guessing the current password through a hijacked session is limited like a login.
    if let Verdict::Limited(q) = state
        .limiter
        .check(Policy::AuthAccount, &format!("password:{}", user.id))
        .await
    {
        return Err(limited_error(&q));
    }
    let attempt = match accounts::admit(&state, &user).await? {
        accounts::Gate::Admitted(attempt) => Some(attempt),
        accounts::Gate::Locked => None,
    };
    let verdict = match &attempt {
        Some(_) => state
            .hasher
            .verify(
                SecretString::from(old.clone()),
                Some(user.password_hash.clone()),
            )
            .await
            .map_err(ApiError::internal)?,
        None => Verification::Invalid,
    };
    match (attempt, &verdict) {
        (Some(attempt), Verification::Valid { .. }) => attempt.passed(&state).await?,
        (attempt, _) => {
            let reason = match attempt {
                Some(attempt) => {
                    attempt.failed(&state, &user).await?;
                    "wrong current password"
                }
                None => "locked",
            };
            state.audit.record(
                AuditEvent::new("auth.password_change", "failure")
                    .context(ctx.as_ref())
                    .user(&user)
                    .details(json!({"reason": reason})),
            );
            return Err(ApiError::forbidden("The current password is incorrect"));
        }
    }
    if old == new {
        return Err(ApiError::field(
            "new_password",
            "value_error",
            "The new password must differ from the current one",
        ));
    }
    let new = SecretString::from(new);
    accounts::validate_new_password(new.expose_secret()).map_err(|e| match e {
        AccountError::Invalid(_, msg) => ApiError::field("new_password", "value_error", msg),
        other => other.into(),
    })?;
    accounts::set_password(&state, &user, new, Actor::User(&user, ctx.as_ref())).await?;
    if let AuthMethod::Session(_) = current.method {
        // The old session ended with all the others; this browser continues in a new one.
        return session_response(&state, None, ctx.as_ref(), &headers, &user).await;
    }
    Ok(no_store(
        (
            StatusCode::OK,
            Json(json!({
                "detail": "Password changed. Every session and token of this account has ended; log in again.",
            })),
        )
            .into_response(),
    ))
}

//! `POST /auth/password`: a person changes their own password. The current password is required
//! (a stolen session alone cannot take the account over); a wrong one counts towards the lockout.
//! Every token and session of the account ends; a browser that made the change gets a fresh
//! session, a bearer client logs in again.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use secrecy::SecretString;
use serde_json::json;

use super::auth::no_store;
use super::body::JsonObject;
use super::sessions::session_response;
use crate::auth::login;
use crate::auth::principal::AuthMethod;
use crate::auth::rbac::UserPrincipal;
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::ApiError;
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
    login::change_password(
        &state,
        ctx.as_ref(),
        &user,
        SecretString::from(old),
        SecretString::from(new),
    )
    .await?;
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

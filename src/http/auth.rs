//! `/auth/*`: password login and the caller's profile.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::json;

use super::body::JsonObject;
use crate::auth::accounts::{self, AccountError};
use crate::auth::principal::CurrentUser;
use crate::config::PASSWORD_MAX_BYTES;
use crate::error::ApiError;
use crate::state::AppState;

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

async fn login(State(state): State<AppState>, body: JsonObject) -> Result<Response, ApiError> {
    let mut fields = body.fields();
    let username = fields.string("username", accounts::NAME_MAX_CHARS * 4);
    let password = fields.string("password", PASSWORD_MAX_BYTES);
    fields.finish()?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let user = accounts::authenticate(&state, &username, SecretString::from(password)).await?;
    let Some(user) = user else {
        tracing::info!(target: "auth", "password login refused");
        return Err(ApiError::unauthorized("Incorrect username or password"));
    };
    let issued = state
        .tokens
        .issue(&user, state.clock.now())
        .map_err(ApiError::internal)?;
    tracing::info!(target: "auth", user_id = %user.id, "password login");
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

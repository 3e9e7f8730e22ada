//! `POST /auth/password`: a person changes their own password. The current password is required
//! (a stolen session alone cannot take the account over); a wrong one counts towards the lockout.
//! Every token and session of the account ends; a browser that made the change gets a fresh
//! session, a bearer client logs in again.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, ErrorEnvelope, access, login_type};
use super::auth::{no_store, password_bytes_error};
use super::extract::Json;
use super::sessions::{SessionLogin, session_response};
use crate::auth::login;
use crate::auth::principal::AuthMethod;
use crate::auth::rbac::UserPrincipal;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    access(
        Access::Login,
        login_type(ApiRouter::new().routes(routes!(change_password))),
    )
}

/// The current password and the new one.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    /// At most 1024 bytes of UTF-8.
    #[schema(max_length = 1024, format = Password)]
    pub current_password: String,
    /// Must meet the password policy and differ from the current one; at most 1024 bytes.
    #[schema(max_length = 1024, format = Password)]
    pub new_password: String,
}

/// The answer to a bearer client: log in again.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    pub detail: String,
}

/// The answer of a password change: for a browser session, its new session; for a bearer
/// client, a message (it logs in again).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PasswordChangeAnswer {
    Session(SessionLogin),
    LogInAgain(PasswordChanged),
}

/// Change the caller's password.
///
/// The current password is required. Every session and token of the account ends; a browser
/// session continues in a new session (new cookies), a bearer client logs in again.
#[utoipa::path(
    post, path = "/auth/password", tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed", body = PasswordChangeAnswer,
         headers(("Set-Cookie" = String, description = "for a browser session: its new session and CSRF cookies"),
                 ("Cache-Control" = String, description = "no-store"))),
        (status = 403, description = "The current password is incorrect", body = ErrorEnvelope),
    ),
)]
async fn change_password(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    let errors: Vec<_> = [
        password_bytes_error("current_password", &body.current_password),
        password_bytes_error("new_password", &body.new_password),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let ctx = ctx.map(|Extension(c)| c);
    let user = current.user;
    login::change_password(
        &state,
        ctx.as_ref(),
        &user,
        SecretString::from(body.current_password),
        SecretString::from(body.new_password),
    )
    .await?;
    if let AuthMethod::Session(_) = current.method {
        // The old session ended with all the others; this browser continues in a new one.
        return session_response(&state, None, ctx.as_ref(), &headers, &user).await;
    }
    Ok(no_store(
        (
            StatusCode::OK,
            axum::Json(PasswordChanged {
                detail: "Password changed. Every session and token of this account has ended; log in again.".into(),
            }),
        )
            .into_response(),
    ))
}

//! `/auth/mfa/*`: TOTP enrolment, confirmation, the second login step, and turning it off.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::auth::{mfa_error, no_store, token_response};
use super::body::JsonObject;
use super::sessions::session_response;
use crate::audit::AuditEvent;
use crate::auth::login::{self, SecondFactor};
use crate::auth::mfa::{self, LoginKind};
use crate::auth::password::Verification;
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::UserPrincipal;
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/mfa", get(status))
        .route("/auth/mfa/enroll", post(enroll))
        .route("/auth/mfa/confirm", post(confirm))
        .route("/auth/mfa/disable", post(disable))
        .route("/auth/mfa/verify", post(verify))
}

fn invalid_code() -> ApiError {
    ApiError::unauthorized("Invalid verification code")
}

fn ctx_of(ctx: Option<Extension<RequestContext>>) -> Option<RequestContext> {
    ctx.map(|Extension(c)| c)
}

async fn status(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let (enabled, left) = mfa::status(&state, &current.user).await?;
    Ok(Json(
        json!({"enabled": enabled, "recovery_codes_left": left}),
    ))
}

async fn enroll(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
) -> Result<Response, ApiError> {
    let e = mfa::enroll(&state, &current.user)
        .await
        .map_err(mfa_error)?;
    Ok(no_store(
        Json(json!({
            "secret": e.secret_base32,
            "otpauth_uri": e.otpauth_uri,
            "qr_svg": e.qr_svg,
            "issuer": mfa::ISSUER,
            "digits": 6,
            "period": mfa::STEP_SECS,
        }))
        .into_response(),
    ))
}

fn code_field(body: &JsonObject) -> Result<String, ApiError> {
    let mut fields = body.fields();
    let code = fields.string("code", 16);
    fields.finish()?;
    code.ok_or_else(invalid_code)
}

async fn confirm(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let code = code_field(&body)?;
    let ctx = ctx_of(ctx);
    match mfa::confirm(&state, &current.user, &code)
        .await
        .map_err(mfa_error)?
    {
        Some(codes) => {
            state.audit.record(
                AuditEvent::new("mfa.enabled", "success")
                    .context(ctx.as_ref())
                    .user(&current.user),
            );
            Ok(no_store(
                Json(json!({"enabled": true, "recovery_codes": codes})).into_response(),
            ))
        }
        None => {
            state.audit.record(
                AuditEvent::new("mfa.confirm", "failure")
                    .context(ctx.as_ref())
                    .user(&current.user)
                    .details(json!({"reason": "invalid code"})),
            );
            // The caller is signed in; only the code is wrong (a 401 would read as signed out).
            Err(ApiError::bad_request("Invalid verification code"))
        }
    }
}

async fn disable(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    body: JsonObject,
) -> Result<StatusCode, ApiError> {
    let mut fields = body.fields();
    let password = fields.string("password", PASSWORD_MAX_BYTES);
    let code = fields.string("code", 16);
    fields.finish()?;
    let (Some(password), Some(code)) = (password, code) else {
        return Err(invalid_code());
    };
    let ctx = ctx_of(ctx);
    let password_ok = state
        .hasher
        .verify(
            SecretString::from(password),
            Some(current.user.password_hash.clone()),
        )
        .await
        .map_err(ApiError::internal)?;
    let code_ok = matches!(password_ok, Verification::Valid { .. })
        && mfa::verify_code(&state, &current.user, &code)
            .await
            .map_err(mfa_error)?;
    if !code_ok {
        state.audit.record(
            AuditEvent::new("mfa.disable", "failure")
                .context(ctx.as_ref())
                .user(&current.user)
                .details(json!({"reason": "invalid password or code"})),
        );
        return Err(ApiError::forbidden("Invalid password or verification code"));
    }
    mfa::disable(&state, &current.user).await?;
    state.audit.record(
        AuditEvent::new("mfa.disabled", "success")
            .context(ctx.as_ref())
            .user(&current.user),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The second login step: `{mfa_token, code}` or `{mfa_token, recovery_code}`.
async fn verify(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut fields = body.fields();
    let token = fields.string("mfa_token", 200);
    let code = fields.optional_string("code", 16);
    let recovery = fields.optional_string("recovery_code", 64);
    fields.finish()?;
    let ctx = ctx_of(ctx);
    let factor = match (code, recovery) {
        (Some(code), _) => SecondFactor::Code(code),
        (None, Some(rc)) => SecondFactor::RecoveryCode(rc),
        (None, None) => SecondFactor::Missing,
    };
    let (user, kind) = login::second_factor(&state, ctx.as_ref(), token.as_deref(), factor).await?;
    match kind {
        LoginKind::Bearer => token_response(&state, &user, None).await,
        LoginKind::Session => {
            session_response(&state, current, ctx.as_ref(), &headers, &user).await
        }
    }
}

//! `/auth/mfa/*`: TOTP enrolment, confirmation, the second login step, and turning it off.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, ErrorEnvelope, access, login_type};
use super::auth::{TokenPair, mfa_error, no_store, password_bytes_error, token_response};
use super::extract::Json;
use super::sessions::{SessionLogin, session_response};
use crate::audit::AuditEvent;
use crate::auth::login::{self, SecondFactor};
use crate::auth::mfa::{self, LoginKind};
use crate::auth::password::Verification;
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::UserPrincipal;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(access(
            Access::Any,
            ApiRouter::new().routes(routes!(status)),
        ))
        .merge(access(
            Access::Login,
            ApiRouter::new()
                .routes(routes!(enroll))
                .routes(routes!(confirm))
                .routes(routes!(disable)),
        ))
        .merge(access(
            Access::Public,
            login_type(ApiRouter::new().routes(routes!(verify))),
        ))
}

fn ctx_of(ctx: Option<Extension<RequestContext>>) -> Option<RequestContext> {
    ctx.map(|Extension(c)| c)
}

/// Whether multi-factor authentication is on.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    pub enabled: bool,
    /// Unused recovery codes (0 when off).
    pub recovery_codes_left: i64,
}

/// Whether multi-factor authentication is on.
///
/// For the caller (for an API key: its owner).
#[utoipa::path(
    get, path = "/auth/mfa", tag = "mfa",
    responses(
        (status = 200, description = "The state", body = MfaStatus),
    ),
)]
async fn status(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<axum::Json<MfaStatus>, ApiError> {
    let (enabled, left) = mfa::status(&state, &current.user).await?;
    Ok(axum::Json(MfaStatus {
        enabled,
        recovery_codes_left: left,
    }))
}

/// A new TOTP secret, to add to an authenticator app and confirm with a first code.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrollment {
    /// The secret, base32.
    pub secret: String,
    /// The `otpauth://` URI of the secret.
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG).
    pub qr_svg: String,
    pub issuer: String,
    /// Digits of a code.
    pub digits: u32,
    /// Seconds a code is valid.
    pub period: i64,
}

/// Start enrolling in multi-factor authentication (TOTP).
///
/// A new secret, not in force until confirmed at `POST /auth/mfa/confirm`.
#[utoipa::path(
    post, path = "/auth/mfa/enroll", tag = "mfa",
    responses(
        (status = 200, description = "The secret", body = Enrollment,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 409, description = "Already enabled", body = ErrorEnvelope),
    ),
)]
async fn enroll(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
) -> Result<Response, ApiError> {
    let e = mfa::enroll(&state, &current.user)
        .await
        .map_err(mfa_error)?;
    Ok(no_store(
        axum::Json(Enrollment {
            secret: e.secret_base32,
            otpauth_uri: e.otpauth_uri,
            qr_svg: e.qr_svg,
            issuer: mfa::ISSUER.into(),
            digits: 6,
            period: mfa::STEP_SECS,
        })
        .into_response(),
    ))
}

/// A code from the authenticator app.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeRequest {
    #[schema(max_length = 16, example = "123456")]
    pub code: String,
}

/// Multi-factor authentication is on: the recovery codes, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaEnabled {
    /// Always `true`.
    pub enabled: bool,
    /// Single-use codes that replace a TOTP code when the authenticator is lost.
    pub recovery_codes: Vec<String>,
}

/// Confirm the enrolment with a first code.
///
/// Multi-factor authentication is on from now; the answer has the recovery codes, shown once.
#[utoipa::path(
    post, path = "/auth/mfa/confirm", tag = "mfa",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Enabled; the recovery codes", body = MfaEnabled,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Invalid verification code, or not enrolled", body = ErrorEnvelope),
        (status = 409, description = "Already enabled", body = ErrorEnvelope),
    ),
)]
async fn confirm(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Json(body): Json<CodeRequest>,
) -> Result<Response, ApiError> {
    let ctx = ctx_of(ctx);
    match mfa::confirm(&state, &current.user, &body.code)
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
                axum::Json(MfaEnabled {
                    enabled: true,
                    recovery_codes: codes,
                })
                .into_response(),
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

/// The password and a current code, to turn multi-factor authentication off.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DisableRequest {
    /// The account's password (at most 1024 bytes).
    #[schema(max_length = 1024, format = Password)]
    pub password: String,
    /// A code from the authenticator app.
    #[schema(max_length = 16)]
    pub code: String,
}

/// Turn multi-factor authentication off.
///
/// The password and a current code are required.
#[utoipa::path(
    post, path = "/auth/mfa/disable", tag = "mfa",
    request_body = DisableRequest,
    responses(
        (status = 204, description = "Disabled"),
        (status = 400, description = "Not enrolled", body = ErrorEnvelope),
        (status = 403, description = "Invalid password or verification code", body = ErrorEnvelope),
    ),
)]
async fn disable(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Json(body): Json<DisableRequest>,
) -> Result<StatusCode, ApiError> {
    if let Some(e) = password_bytes_error("password", &body.password) {
        return Err(ApiError::validation(vec![e]));
    }
    let ctx = ctx_of(ctx);
    let password_ok = state
        .hasher
        .verify(
            SecretString::from(body.password),
            Some(current.user.password_hash.clone()),
        )
        .await
        .map_err(ApiError::internal)?;
    let code_ok = matches!(password_ok, Verification::Valid { .. })
        && mfa::verify_code(&state, &current.user, &body.code)
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

/// The second login step: the challenge and a TOTP code or a recovery code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The challenge of the first step.
    #[schema(max_length = 200)]
    pub mfa_token: String,
    /// A code from the authenticator app.
    #[schema(max_length = 16)]
    pub code: Option<String>,
    /// A recovery code, instead of `code`.
    #[schema(max_length = 64)]
    pub recovery_code: Option<String>,
}

/// The answer of the second step: what the first step would have answered without MFA.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyAnswer {
    /// For `POST /auth/login`.
    Tokens(TokenPair),
    /// For `POST /auth/session` (with its cookies).
    Session(SessionLogin),
}

/// Complete a login with a second factor.
///
/// `{mfa_token, code}` or `{mfa_token, recovery_code}`. A bearer login gets its tokens, a
/// session login its session and cookies.
#[utoipa::path(
    post, path = "/auth/mfa/verify", tag = "mfa",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Logged in", body = VerifyAnswer,
         headers(("Set-Cookie" = String, description = "for a session login: the session and CSRF cookies"),
                 ("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Invalid verification code, or invalid or expired challenge",
         body = ErrorEnvelope),
    ),
)]
async fn verify(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Json(body): Json<VerifyRequest>,
) -> Result<Response, ApiError> {
    let ctx = ctx_of(ctx);
    let factor = match (body.code, body.recovery_code) {
        (Some(code), _) => SecondFactor::Code(code),
        (None, Some(rc)) => SecondFactor::RecoveryCode(rc),
        (None, None) => SecondFactor::Missing,
    };
    let (user, kind) =
        login::second_factor(&state, ctx.as_ref(), Some(&body.mfa_token), factor).await?;
    match kind {
        LoginKind::Bearer => token_response(&state, &user, None).await,
        LoginKind::Session => {
            session_response(&state, current, ctx.as_ref(), &headers, &user).await
        }
    }
}

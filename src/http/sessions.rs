//! Browser sessions: cookie login beside the bearer login, logout, the session list and
//! revocation, and the CSRF token for scripts.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, access, login_type};
use super::auth::{
    Credentials, MfaChallenge, PasswordStep, mfa_challenge_response, no_store, password_login,
};
use super::extract::{Json, Path, Query};
use crate::audit::AuditEvent;
use crate::auth::mfa;
use crate::auth::principal::{AuthMethod, CurrentUser};
use crate::auth::rbac::UserPrincipal;
use crate::auth::sessions::{self, SESSION_COOKIE};
use crate::auth::sessions::{self as service, SessionRow};
use crate::context::RequestContext;
use crate::cookies;
use crate::error::ApiError;
use crate::model::Role;
use crate::security::csrf::{CSRF_COOKIE, attach_token};
use crate::state::AppState;

/// Logging in with a session cookie (`POST /auth/session`): no CSRF token can exist yet, so only
/// the origin is checked (`csrf::origin_guard`, attached in `src/http/mod.rs`).
pub fn csrf_exempt_routes() -> ApiRouter {
    access(
        Access::Public,
        login_type(ApiRouter::new().routes(routes!(login))),
    )
}

pub fn routes() -> ApiRouter {
    access(
        Access::Login,
        ApiRouter::new()
            .routes(routes!(logout))
            .routes(routes!(list))
            .routes(routes!(revoke))
            .routes(routes!(csrf_token)),
    )
}

/// A browser session, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// When it ends if unused (idle timeout), at the latest `absolute_expires_at`.
    pub expires_at: DateTime<Utc>,
    /// When it ends however much it is used.
    pub absolute_expires_at: DateTime<Utc>,
    /// The address it was created from.
    pub ip: Option<String>,
    /// The browser it was created by.
    pub user_agent: Option<String>,
    /// Whether it is the session of this request.
    pub current: bool,
}

fn session_view(state: &AppState, s: &SessionRow, current: Option<Uuid>) -> SessionView {
    SessionView {
        id: s.id,
        user_id: s.user_id,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: state.live().session_policy.valid_until(s),
        absolute_expires_at: s.expires_at,
        ip: s.ip.clone(),
        user_agent: s.user_agent.clone(),
        current: Some(s.id) == current,
    }
}

fn not_a_session() -> ApiError {
    ApiError::unauthorized("This request is not authenticated by a session")
}

fn clear_cookies(response: &mut Response, secure: bool) {
    cookies::set(response, &cookies::clear(SESSION_COOKIE, secure, true));
    cookies::set(response, &cookies::clear(CSRF_COOKIE, secure, false));
}

/// The user a session belongs to, in the login answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionUser {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
}

/// A new browser session: its cookies are in `Set-Cookie`; the CSRF token is also in the body
/// (and in `X-CSRF-Token`) for scripts to send back on unsafe requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionLogin {
    pub user: SessionUser,
    pub session_id: Uuid,
    /// To send in `X-CSRF-Token` on unsafe requests.
    pub csrf_token: String,
    /// When the session ends if unused.
    pub expires_at: DateTime<Utc>,
    /// When it ends however much it is used.
    pub absolute_expires_at: DateTime<Utc>,
    /// Idle time after which the session ends.
    pub idle_timeout_seconds: i64,
}

/// The answer of a session login: the session, or a second-factor challenge.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SessionLoginAnswer {
    Session(SessionLogin),
    MfaRequired(MfaChallenge),
}

/// Log in with a username and password (browser session).
///
/// The answer sets the session and CSRF cookies, or, for an account with multi-factor
/// authentication, is a challenge to complete at `POST /auth/mfa/verify`. Any session this
/// browser had ends.
#[utoipa::path(
    post, path = "/auth/session", tag = "sessions",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in (session), or a second factor is needed (challenge)",
         body = SessionLoginAnswer,
         headers(("Set-Cookie" = String, description = "the session cookie (HttpOnly) and the CSRF token cookie"),
                 ("X-CSRF-Token" = String, description = "the CSRF token"),
                 ("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Incorrect username or password", body = ErrorEnvelope),
        (status = 403, description = "Cross-origin request refused", body = ErrorEnvelope),
    ),
)]
async fn login(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    let (username, password) = body.checked()?;
    let ctx = ctx.map(|Extension(c)| c);
    match password_login(&state, ctx.as_ref(), "session", &username, password).await? {
        PasswordStep::SecondFactor(user) => {
            mfa_challenge_response(&state, &user, mfa::LoginKind::Session).await
        }
        PasswordStep::Complete(user) => {
            session_response(&state, current, ctx.as_ref(), &headers, &user).await
        }
    }
}

/// Creates a session for `user` (ending the one this browser had) and answers with its cookies.
pub async fn session_response(
    state: &AppState,
    current: Option<CurrentUser>,
    ctx: Option<&RequestContext>,
    headers: &HeaderMap,
    user: &crate::model::User,
) -> Result<Response, ApiError> {
    let ctx = ctx.cloned();
    let now = state.clock.now();
    // A new id at every login; the session this browser had before is ended (no fixation).
    if let Some(CurrentUser {
        method: AuthMethod::Session(old),
        ..
    }) = current
    {
        crate::auth::sessions::revoke(state, old).await?;
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let created = sessions::create(
        state,
        user,
        ctx.as_ref().map(|c| c.client_ip.to_string()),
        user_agent,
    )
    .await?;
    state.audit.record(
        AuditEvent::new("session.created", "success")
            .context(ctx.as_ref())
            .user(user)
            .details(json!({"session_id": created.session.id})),
    );
    let secure = state.settings().enforce_https;
    let csrf = state.live().csrf.issue(created.session.id, now);
    let mut response = no_store(
        axum::Json(SessionLogin {
            user: SessionUser {
                id: user.id,
                username: user.username.clone(),
                email: user.email.clone(),
                role: user.role,
            },
            session_id: created.session.id,
            csrf_token: csrf.clone(),
            expires_at: state.live().session_policy.valid_until(&created.session),
            absolute_expires_at: created.session.expires_at,
            idle_timeout_seconds: state.live().session_policy.idle.num_seconds(),
        })
        .into_response(),
    );
    let lifetime = state.live().session_policy.absolute.num_seconds();
    cookies::set(
        &mut response,
        &cookies::session(SESSION_COOKIE, &created.token, secure, lifetime),
    );
    attach_token(
        &mut response,
        &csrf,
        secure,
        state.live().csrf.max_age_secs(),
    );
    Ok(response)
}

/// Log out of this browser session.
///
/// The session ends and its cookies are cleared.
#[utoipa::path(
    delete, path = "/auth/session", tag = "sessions",
    responses(
        (status = 204, description = "Logged out",
         headers(("Set-Cookie" = String, description = "clears the session and CSRF cookies"))),
        (status = 401, description = "Not authenticated by a session", body = ErrorEnvelope),
    ),
)]
async fn logout(
    State(state): State<AppState>,
    current: CurrentUser,
    ctx: Option<Extension<RequestContext>>,
) -> Result<Response, ApiError> {
    let AuthMethod::Session(id) = current.method else {
        return Err(not_a_session());
    };
    crate::auth::sessions::revoke(&state, id).await?;
    state.audit.record(
        AuditEvent::new("session.revoked", "success")
            .context(ctx.map(|Extension(c)| c).as_ref())
            .user(&current.user)
            .details(json!({"session_id": id, "reason": "logout"})),
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_cookies(&mut response, state.settings().enforce_https);
    Ok(response)
}

/// Whose sessions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's sessions (someone else's: administrators only). Default: the caller's.
    user_id: Option<Uuid>,
    /// Every user's sessions (administrators only).
    all: Option<bool>,
}

fn is_live(state: &AppState, s: &SessionRow, now: DateTime<Utc>) -> bool {
    now < state.live().session_policy.valid_until(s)
}

/// The live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// List live browser sessions.
///
/// The caller's own; a user's, or everyone's, for administrators.
#[utoipa::path(
    get, path = "/auth/sessions", tag = "sessions",
    params(ListQuery),
    responses(
        (status = 200, description = "The sessions", body = SessionList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<SessionList>, ApiError> {
    let is_admin = current.user.role == Role::Admin;
    let filter = match (q.all.unwrap_or(false), q.user_id) {
        (true, _) if is_admin => None,
        (false, Some(id)) => {
            if id != current.user.id && !is_admin {
                return Err(ApiError::forbidden(
                    "Only administrators can list other users' sessions",
                ));
            }
            Some(id)
        }
        (true, _) => {
            return Err(ApiError::forbidden(
                "Only administrators can list every session",
            ));
        }
        (false, None) => Some(current.user.id),
    };
    let now = state.clock.now();
    let current_id = match current.method {
        AuthMethod::Session(id) => Some(id),
        AuthMethod::Bearer | AuthMethod::ApiKey { .. } => None,
    };
    let sessions = service::list(&state, filter)
        .await?
        .iter()
        .filter(|s| is_live(&state, s, now))
        .map(|s| session_view(&state, s, current_id))
        .collect();
    Ok(axum::Json(SessionList { sessions }))
}

/// End a browser session.
///
/// The caller's own; anyone's for administrators. Ending the session of this request also
/// clears its cookies.
#[utoipa::path(
    delete, path = "/auth/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "the session id")),
    responses(
        (status = 204, description = "Ended",
         headers(("Set-Cookie" = String, description = "clears the cookies when it was this request's session"))),
        (status = 404, description = "No such live session, or not the caller's", body = ErrorEnvelope),
    ),
)]
async fn revoke(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("Session not found");
    let session = service::find(&state, id).await?.ok_or_else(not_found)?;
    let now = state.clock.now();
    // Someone else's session is invisible unless you are an administrator.
    if session.revoked_at.is_some()
        || !is_live(&state, &session, now)
        || !crate::auth::policy::may_manage_credentials_of(&current.user, session.user_id)
    {
        return Err(not_found());
    }
    service::revoke(&state, id).await?;
    state.audit.record(
        AuditEvent::new("session.revoked", "success")
            .context(ctx.map(|Extension(c)| c).as_ref())
            .user(&current.user)
            .details(json!({"session_id": id, "owner_id": session.user_id, "reason": "revoked"})),
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if current.method == AuthMethod::Session(id) {
        clear_cookies(&mut response, state.settings().enforce_https);
    }
    Ok(response)
}

/// A fresh CSRF token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CsrfToken {
    /// To send in `X-CSRF-Token` on unsafe requests.
    pub csrf_token: String,
}

/// A fresh CSRF token for this browser session.
///
/// Also set as its cookie and in `X-CSRF-Token`.
#[utoipa::path(
    get, path = "/auth/csrf", tag = "sessions",
    responses(
        (status = 200, description = "The token", body = CsrfToken,
         headers(("Set-Cookie" = String, description = "the CSRF token cookie"),
                 ("X-CSRF-Token" = String, description = "the CSRF token"),
                 ("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Not authenticated by a session", body = ErrorEnvelope),
    ),
)]
async fn csrf_token(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, ApiError> {
    let AuthMethod::Session(id) = current.method else {
        return Err(not_a_session());
    };
    let token = state.live().csrf.issue(id, state.clock.now());
    let mut response = no_store(
        axum::Json(CsrfToken {
            csrf_token: token.clone(),
        })
        .into_response(),
    );
    attach_token(
        &mut response,
        &token,
        state.settings().enforce_https,
        state.live().csrf.max_age_secs(),
    );
    Ok(response)
}

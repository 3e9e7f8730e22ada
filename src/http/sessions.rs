//! Browser sessions: cookie login beside the bearer login, logout, the session list and
//! revocation, and the CSRF token for scripts.

use super::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{PasswordStep, credentials, mfa_challenge_response, no_store, password_login};
use super::body::JsonObject;
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
pub fn csrf_exempt_routes() -> Router<AppState> {
    Router::new().route("/auth/session", post(login))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/session", delete(logout))
        .route("/auth/sessions", get(list))
        .route("/auth/sessions/{id}", delete(revoke))
        .route("/auth/csrf", get(csrf_token))
}

fn session_json(state: &AppState, s: &SessionRow, current: Option<Uuid>) -> Value {
    json!({
        "id": s.id,
        "user_id": s.user_id,
        "created_at": s.created_at,
        "last_seen_at": s.last_seen_at,
        "expires_at": state.session_policy.valid_until(s),
        "absolute_expires_at": s.expires_at,
        "ip": s.ip,
        "user_agent": s.user_agent,
        "current": Some(s.id) == current,
    })
}

fn not_a_session() -> ApiError {
    ApiError::unauthorized("This request is not authenticated by a session")
}

fn clear_cookies(response: &mut Response, secure: bool) {
    cookies::set(response, &cookies::clear(SESSION_COOKIE, secure, true));
    cookies::set(response, &cookies::clear(CSRF_COOKIE, secure, false));
}

async fn login(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let (username, password) = credentials(&body)?;
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
    let secure = state.settings.enforce_https;
    let csrf = state.csrf.issue(created.session.id, now);
    let mut response = no_store(
        Json(json!({
            "user": {"id": user.id, "username": user.username, "email": user.email, "role": user.role},
            "session_id": created.session.id,
            "csrf_token": csrf,
            "expires_at": state.session_policy.valid_until(&created.session),
            "absolute_expires_at": created.session.expires_at,
            "idle_timeout_seconds": state.session_policy.idle.num_seconds(),
        }))
        .into_response(),
    );
    let lifetime = state.session_policy.absolute.num_seconds();
    cookies::set(
        &mut response,
        &cookies::session(SESSION_COOKIE, &created.token, secure, lifetime),
    );
    attach_token(&mut response, &csrf, secure, state.csrf.max_age_secs());
    Ok(response)
}

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
    clear_cookies(&mut response, state.settings.enforce_https);
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    all: Option<bool>,
}

fn is_live(state: &AppState, s: &SessionRow, now: DateTime<Utc>) -> bool {
    now < state.session_policy.valid_until(s)
}

async fn list(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let is_admin = current.user.role == Role::Admin;
    let filter = match (q.all.unwrap_or(false), q.user_id.as_deref()) {
        (true, _) if is_admin => None,
        (false, Some(id)) => {
            let id = Uuid::parse_str(id).map_err(|_| {
                ApiError::validation(vec![crate::error::FieldError::query(
                    "user_id",
                    "uuid_parsing",
                    "Input should be a valid UUID",
                )])
            })?;
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
    let sessions: Vec<Value> = service::list(&state, filter)
        .await?
        .iter()
        .filter(|s| is_live(&state, s, now))
        .map(|s| session_json(&state, s, current_id))
        .collect();
    Ok(Json(json!({ "sessions": sessions })))
}

async fn revoke(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("Session not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
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
        clear_cookies(&mut response, state.settings.enforce_https);
    }
    Ok(response)
}

async fn csrf_token(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, ApiError> {
    let AuthMethod::Session(id) = current.method else {
        return Err(not_a_session());
    };
    let token = state.csrf.issue(id, state.clock.now());
    let mut response = no_store(Json(json!({ "csrf_token": token })).into_response());
    attach_token(
        &mut response,
        &token,
        state.settings.enforce_https,
        state.csrf.max_age_secs(),
    );
    Ok(response)
}

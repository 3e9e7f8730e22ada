//! `/api/v1/admin/*`: user administration and the audit log, for administrators. Every change
//! is audited.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonResponse};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::extract::{Json, Path, Query};
use crate::audit::AuditFilter;
use crate::audit::{Actor, AuditEvent};
use crate::auth::accounts::{self, CreateUser};
use crate::auth::mfa;
use crate::auth::rbac::Admin;
use crate::config::PASSWORD_MAX_BYTES;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::model::{Role, User};
use crate::state::AppState;

pub const AUDIT_PAGE_MAX: i64 = 500;

pub fn routes() -> ApiRouter {
    access(
        Access::Admin,
        ApiRouter::new()
            .routes(routes!(list_users, create_user))
            .routes(routes!(update_user))
            .routes(routes!(unlock))
            .routes(routes!(reset_mfa))
            .routes(routes!(revoke_tokens))
            .routes(routes!(audit_log))
            .routes(routes!(audit_events))
            .routes(routes!(settings))
            .routes(routes!(reload_settings)),
    )
}

/// The settings in effect on this instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// 1 at start-up, +1 per applied reload.
    pub generation: u64,
    /// Every setting: its value unless it is a secret (secrets show only whether they are set),
    /// where it came from, and whether a change applies on reload or only on restart.
    pub settings: Vec<crate::reload::SettingView>,
}

/// The effective settings of this instance (secrets are never shown).
#[utoipa::path(
    get, path = "/api/v1/admin/settings", tag = "admin",
    responses((status = 200, description = "The settings in effect", body = SettingsView)),
)]
async fn settings(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> JsonResponse<SettingsView> {
    let live = state.live();
    JsonResponse(SettingsView {
        generation: live.generation,
        settings: crate::reload::views(&live.settings),
    })
}

/// Read the configuration file and the secret files again and apply what changed, on this
/// instance and (over the event bus) on every other one. Audited as `settings.reload`.
#[utoipa::path(
    post, path = "/api/v1/admin/settings/reload", tag = "admin",
    responses(
        (status = 200, description = "Applied: the new generation, what changed, what needs a restart", body = crate::reload::ReloadReport),
        (status = 422, description = "The new settings are invalid; nothing changed", body = ErrorEnvelope),
    ),
)]
async fn reload_settings(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
) -> Result<JsonResponse<crate::reload::ReloadReport>, ApiError> {
    let actor = Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c));
    crate::reload::reload_everywhere(&state, actor)
        .await
        .map(JsonResponse)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.0))
}

/// A user account as administrators see it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Consecutive failed logins since the last success or unlock.
    pub failed_logins: i32,
    /// The end of the current login lockout, if any.
    pub locked_until: Option<DateTime<Utc>>,
    /// Whether two-step verification is on (an administrator can reset it only then).
    pub mfa_enabled: bool,
    /// The version of this representation: send it as `If-Match` with a change, to get 412
    /// instead of overwriting someone else's change.
    pub etag: String,
}

impl UserView {
    /// The view of `u`, with its MFA state and version.
    fn of(u: &User, mfa_enabled: bool) -> Self {
        let mut view = UserView {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            role: u.role,
            active: u.active,
            created_at: u.created_at,
            updated_at: u.updated_at,
            failed_logins: u.failed_logins,
            locked_until: u.locked_until,
            mfa_enabled,
            etag: String::new(),
        };
        view.etag = etag_of(&view);
        view
    }
}

/// The ETag of a user's representation without its `etag` field.
fn etag_of(view: &UserView) -> String {
    let mut value = serde_json::to_value(view).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut value {
        map.remove("etag");
    }
    crate::orchestrator::etag::etag(&value)
}

/// The view of one user, reading its MFA state.
async fn view_of(state: &AppState, u: &User) -> Result<UserView, ApiError> {
    let with_mfa = mfa::users_with_mfa(state).await?;
    Ok(UserView::of(u, with_mfa.contains(&u.id)))
}

/// Every user account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserView>,
}

/// The user of an administrator's request, or 404 `User not found`.
pub(super) async fn target(state: &AppState, id: Uuid) -> Result<User, ApiError> {
    accounts::user_by_id(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))
}

/// List every user account.
#[utoipa::path(
    get, path = "/api/v1/admin/users", tag = "admin",
    responses((status = 200, description = "The users", body = UserList)),
)]
async fn list_users(
    State(state): State<AppState>,
    _: Admin,
) -> Result<JsonResponse<UserList>, ApiError> {
    let with_mfa = mfa::users_with_mfa(&state).await?;
    let items = accounts::list_users(&state)
        .await?
        .iter()
        .map(|u| UserView::of(u, with_mfa.contains(&u.id)))
        .collect();
    Ok(JsonResponse(UserList { items }))
}

/// A user account to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserCreate {
    /// Letters, digits and `. _ - @ +`; a name the PRECIS UsernameCaseMapped profile accepts
    /// (RFC 8265), unique in that comparison form.
    #[schema(min_length = 1, max_length = 255)]
    pub username: String,
    /// An address like `name@example.org` (a dot in the domain, no whitespace).
    #[schema(format = Email, max_length = 255)]
    pub email: String,
    /// The initial password: at least 8 characters, at most 1024 bytes in UTF-8.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Default `user`.
    pub role: Option<Role>,
}

/// Create a user account (audited as `user.created`).
#[utoipa::path(
    post, path = "/api/v1/admin/users", tag = "admin",
    request_body = UserCreate,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 409, description = "A user with this username already exists", body = ErrorEnvelope),
    ),
)]
async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Json(body): Json<UserCreate>,
) -> Result<Response, ApiError> {
    // What the schema cannot say: the password's limit is in bytes.
    if body.password.len() > PASSWORD_MAX_BYTES {
        return Err(ApiError::validation(vec![FieldError::body(
            "password",
            "string_too_long",
            format!("String should have at most {PASSWORD_MAX_BYTES} bytes"),
        )]));
    }
    let user = accounts::create_user(
        &state,
        CreateUser {
            username: body.username,
            email: body.email,
            password: SecretString::from(body.password),
            role: body.role.unwrap_or(Role::User),
        },
        Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c)),
    )
    .await?;
    // As stored (the database's time precision), so that its etag is the one a list tells.
    let stored = target(&state, user.id).await?;
    Ok((
        StatusCode::CREATED,
        JsonResponse(UserView::of(&stored, false)),
    )
        .into_response())
}

/// A change of a user account; absent (or null) fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserUpdate {
    /// The new role (revokes the user's tokens).
    pub role: Option<Role>,
    /// `false` disables the account (and revokes its tokens), `true` enables it.
    pub active: Option<bool>,
}

/// Change a user's role or active flag (audited). Administrators cannot demote or disable
/// themselves (409). `If-Match` with the user's `etag` → 412 when the user changed meanwhile.
#[utoipa::path(
    patch, path = "/api/v1/admin/users/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "the user id"),
           ("If-Match" = Option<String>, Header, description = "the etag the change is based on")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The user after the change", body = UserView),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 409, description = "An administrator demoting or disabling themselves", body = ErrorEnvelope),
        (status = 412, description = "The user changed since the given etag", body = ErrorEnvelope),
    ),
)]
async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<UserUpdate>,
) -> Result<JsonResponse<UserView>, ApiError> {
    let user = target(&state, id).await?;
    let current = view_of(&state, &user).await?;
    if let Some(given) = headers.get(axum::http::header::IF_MATCH) {
        let given = given.to_str().unwrap_or("");
        if !crate::orchestrator::etag::matches(given, &current.etag) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "Precondition failed: the resource has changed",
            ));
        }
    }
    let UserUpdate { role, active } = body;
    if user.id == admin.user.id && (role.is_some_and(|r| r != Role::Admin) || active == Some(false))
    {
        return Err(ApiError::conflict(
            "Administrators cannot demote or disable themselves",
        ));
    }
    let actor = Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c));
    if let Some(role) = role {
        accounts::set_role(&state, &user, role, actor).await?;
    }
    if let Some(active) = active {
        accounts::set_active(&state, &user, active, actor).await?;
    }
    let updated = target(&state, user.id).await?;
    Ok(JsonResponse(view_of(&state, &updated).await?))
}

/// Lift a user's login lockout (audited).
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/unlock", tag = "admin",
    params(("id" = Uuid, Path, description = "the user id")),
    responses(
        (status = 204, description = "Unlocked"),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ),
)]
async fn unlock(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let user = target(&state, id).await?;
    let actor = Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c));
    accounts::unlock(&state, &user, actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn audit_action(state: &AppState, event: &'static str, actor: Actor<'_>, user: &User) {
    state.audit.record(
        AuditEvent::new(event, "success").by(actor).details(
            json!({"target_user_id": user.id, "target": user.username, "via": actor.via()}),
        ),
    );
}

/// Remove a user's MFA (audited as `mfa.reset`).
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/reset-mfa", tag = "admin",
    params(("id" = Uuid, Path, description = "the user id")),
    responses(
        (status = 204, description = "MFA removed"),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ),
)]
async fn reset_mfa(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let user = target(&state, id).await?;
    if !mfa::reset(&state, &user).await? {
        return Err(ApiError::conflict(
            "Two-step verification is not enabled for this user",
        ));
    }
    let actor = Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c));
    audit_action(&state, "mfa.reset", actor, &user);
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke all of a user's tokens and sessions (audited as `tokens.revoked`).
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/revoke-tokens", tag = "admin",
    params(("id" = Uuid, Path, description = "the user id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ),
)]
async fn revoke_tokens(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let user = target(&state, id).await?;
    accounts::revoke_everything(&state, &user).await?;
    let actor = Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c));
    audit_action(&state, "tokens.revoked", actor, &user);
    Ok(StatusCode::NO_CONTENT)
}

/// Filters and paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this event, e.g. `auth.login`.
    event: Option<String>,
    /// Only this outcome: `success`, `failure` or `denied`.
    outcome: Option<String>,
    /// Only rows of this actor (name).
    actor: Option<String>,
    /// Only rows of this actor (user id).
    #[param(value_type = Option<Uuid>)]
    actor_id: Option<String>,
    /// Only rows at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    since: Option<String>,
    /// Only rows at or before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    until: Option<String>,
    /// Only rows older than this id: the `next_before` of the previous page.
    before: Option<i64>,
    /// At most this many rows (default 100; values outside 1–500 are clamped).
    limit: Option<i64>,
}

/// One audit row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub event: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub actor_id: Option<Uuid>,
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    /// The event's own details.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::validation(vec![FieldError::query(
                        name,
                        "datetime_parsing",
                        "Input should be an RFC 3339 date-time",
                    )])
                })
        })
        .transpose()
}

/// The names of the audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventNames {
    /// Every event name the service writes, sorted.
    pub events: Vec<&'static str>,
}

/// Every audit event name the service writes (`audit::EVENTS`): what the audit log can be
/// filtered by.
#[utoipa::path(
    get, path = "/api/v1/admin/audit/events", tag = "admin",
    responses((status = 200, description = "The event names", body = AuditEventNames)),
)]
async fn audit_events(_: Admin) -> JsonResponse<AuditEventNames> {
    JsonResponse(AuditEventNames {
        events: crate::audit::EVENTS.to_vec(),
    })
}

/// The audit log: newest first, filtered, paginated with `before` (an id).
#[utoipa::path(
    get, path = "/api/v1/admin/audit", tag = "admin",
    params(AuditQuery),
    responses((status = 200, description = "A page of audit rows", body = AuditPage)),
)]
async fn audit_log(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<JsonResponse<AuditPage>, ApiError> {
    let actor_id = q
        .actor_id
        .as_deref()
        .map(|v| {
            Uuid::parse_str(v).map_err(|_| {
                ApiError::validation(vec![FieldError::query(
                    "actor_id",
                    "uuid_parsing",
                    "Input should be a valid UUID",
                )])
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, AUDIT_PAGE_MAX);
    let filter = AuditFilter {
        event: q.event,
        outcome: q.outcome,
        actor: q.actor,
        actor_id,
        since: time_param("since", q.since.as_deref())?,
        until: time_param("until", q.until.as_deref())?,
        before_id: q.before,
    };
    let rows = state.audit.query(&filter, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let items = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: r.at,
            event: r.event,
            outcome: r.outcome,
            actor_id: r.actor_id,
            actor: r.actor,
            client_ip: r.client_ip,
            request_id: r.request_id,
            details: r.details.0,
        })
        .collect();
    Ok(JsonResponse(AuditPage { items, next_before }))
}

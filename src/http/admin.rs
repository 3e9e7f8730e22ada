//! `/api/v1/admin/*`: user administration and the audit log, for administrators. Every change
//! is audited.

use super::extract::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::body::JsonObject;
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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", get(list_users).post(create_user))
        .route("/api/v1/admin/users/{id}", patch(update_user))
        .route("/api/v1/admin/users/{id}/{action}", post(user_action))
        .route("/api/v1/admin/audit", get(audit_log))
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "role": u.role,
        "active": u.active,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
        "failed_logins": u.failed_logins,
        "locked_until": u.locked_until,
    })
}

async fn target(state: &AppState, id: &str) -> Result<User, ApiError> {
    let not_found = || ApiError::not_found("User not found");
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    crate::auth::accounts::user_by_id(state, id)
        .await?
        .ok_or_else(not_found)
}

async fn list_users(State(state): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = crate::auth::accounts::list_users(&state)
        .await?
        .iter()
        .map(user_json)
        .collect();
    Ok(Json(json!({ "items": items })))
}

fn parse_role(value: &str) -> Result<Role, ApiError> {
    value.parse().map_err(|_| {
        ApiError::field(
            "role",
            "enum",
            "Input should be 'user', 'moderator' or 'admin'",
        )
    })
}

async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut fields = body.fields();
    let username = fields.string("username", 1024);
    let email = fields.string("email", 1024);
    let password = fields.string("password", PASSWORD_MAX_BYTES);
    let role = fields.optional_string("role", 32);
    fields.finish()?;
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let role = match role {
        Some(r) => parse_role(&r)?,
        None => Role::User,
    };
    let user = accounts::create_user(
        &state,
        CreateUser {
            username,
            email,
            password: SecretString::from(password),
            role,
        },
        Actor::User(&admin.user, ctx.as_ref().map(|Extension(c)| c)),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<String>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let user = target(&state, &id).await?;
    let mut fields = body.fields();
    let role = fields.optional_string("role", 32);
    let active = match body.0.get("active") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            fields.error("active", "bool_type", "Input should be a valid boolean");
            None
        }
    };
    fields.finish()?;
    let role = role.as_deref().map(parse_role).transpose()?;
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
    let updated = crate::auth::accounts::user_by_id(&state, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    Ok(Json(user_json(&updated)))
}

/// `POST /api/v1/admin/users/{id}/unlock | reset-mfa | revoke-tokens`.
async fn user_action(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !matches!(action.as_str(), "unlock" | "reset-mfa" | "revoke-tokens") {
        return Err(ApiError::not_found("Not Found"));
    }
    let user = target(&state, &id).await?;
    let ctx = ctx.map(|Extension(c)| c);
    let actor = Actor::User(&admin.user, ctx.as_ref());
    let event = match action.as_str() {
        "unlock" => {
            return accounts::unlock(&state, &user, actor)
                .await
                .map(|()| StatusCode::NO_CONTENT)
                .map_err(Into::into);
        }
        "reset-mfa" => {
            mfa::disable(&state, &user).await?;
            "mfa.reset"
        }
        _ => {
            accounts::revoke_everything(&state, &user).await?;
            "tokens.revoked"
        }
    };
    state.audit.record(
        AuditEvent::new(event, "success").by(actor).details(
            json!({"target_user_id": user.id, "target": user.username, "via": actor.via()}),
        ),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    event: Option<String>,
    outcome: Option<String>,
    actor: Option<String>,
    actor_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
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

/// `GET /api/v1/admin/audit`: newest first, filtered, paginated with `before` (an id).
async fn audit_log(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "at": r.at,
                "event": r.event,
                "outcome": r.outcome,
                "actor_id": r.actor_id,
                "actor": r.actor,
                "client_ip": r.client_ip,
                "request_id": r.request_id,
                "details": r.details.0,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items, "next_before": next })))
}

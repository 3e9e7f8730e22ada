//! `/api/v1/examples/*`: the original service's role examples, with its bodies and 403 messages.
//! A role reaches an endpoint when it is at least the required one (user < moderator < admin);
//! `moderator-tools` takes exactly a moderator. API keys act with their owner's current role.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::principal::CurrentUser;
use crate::auth::rbac::{require_at_least, require_exact};
use crate::error::ApiError;
use crate::model::Role;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/examples/user-content", get(user_content))
        .route("/api/v1/examples/moderator-content", get(moderator_content))
        .route("/api/v1/examples/admin-content", get(admin_content))
        .route("/api/v1/examples/moderator-tools", get(moderator_tools))
        .route("/api/v1/examples/role-info", get(role_info))
}

const fn role_at(level: u8) -> Role {
    match level {
        0 => Role::User,
        1 => Role::Moderator,
        _ => Role::Admin,
    }
}

/// A caller whose role is at least the one at `LEVEL` (0 user, 1 moderator, 2 admin).
struct MinRole<const LEVEL: u8>(CurrentUser);

impl<const LEVEL: u8> FromRequestParts<AppState> for MinRole<LEVEL> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        require_at_least(state, parts, &current, role_at(LEVEL))?;
        Ok(MinRole(current))
    }
}

/// A moderator, and nobody else.
struct ExactlyModerator(CurrentUser);

impl FromRequestParts<AppState> for ExactlyModerator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        require_exact(state, parts, &current, Role::Moderator)?;
        Ok(ExactlyModerator(current))
    }
}

fn user(current: &CurrentUser) -> Value {
    json!({"username": current.user.username, "role": current.user.role})
}

async fn user_content(MinRole(current): MinRole<0>) -> Json<Value> {
    Json(json!({
        "message": "User content accessible to all authenticated users",
        "content_type": "user",
        "user": user(&current),
        "access_note": "This endpoint is accessible by user, moderator, and admin roles",
    }))
}

async fn moderator_content(MinRole(current): MinRole<1>) -> Json<Value> {
    Json(json!({
        "message": "Moderator content with elevated permissions",
        "content_type": "moderator",
        "user": user(&current),
        "access_note": "This endpoint is accessible by moderator and admin roles only",
    }))
}

async fn admin_content(MinRole(current): MinRole<2>) -> Json<Value> {
    Json(json!({
        "message": "Admin content with full system access",
        "content_type": "admin",
        "user": user(&current),
        "access_note": "This endpoint is accessible by admin role only",
    }))
}

async fn moderator_tools(ExactlyModerator(current): ExactlyModerator) -> Json<Value> {
    Json(json!({
        "message": "Moderator-specific tools and functionality",
        "content_type": "moderator-exact",
        "user": user(&current),
        "tools": [
            "User management dashboard",
            "Content moderation queue",
            "Report review system",
        ],
        "access_note": "This endpoint is accessible by moderator role only (exact match)",
    }))
}

async fn role_info(MinRole(current): MinRole<0>) -> Json<Value> {
    let role = current.user.role;
    let accessible: Vec<&str> = [
        (Role::User, "user-content"),
        (Role::Moderator, "moderator-content"),
        (Role::Admin, "admin-content"),
    ]
    .into_iter()
    .filter(|(required, _)| role >= *required)
    .map(|(_, name)| name)
    .collect();
    let exact: Vec<&str> = if role == Role::Moderator {
        vec!["moderator-tools"]
    } else {
        Vec::new()
    };
    Json(json!({
        "user": user(&current),
        "role_hierarchy": {
            "current_level": role.level(),
            "total_levels": Role::ALL.len(),
            "role_order": Role::ALL,
        },
        "accessible_endpoints": accessible,
        "exact_role_endpoints": exact,
        "permissions": {
            "can_access_user_content": role >= Role::User,
            "can_access_moderator_content": role >= Role::Moderator,
            "can_access_admin_content": role >= Role::Admin,
        },
    }))
}

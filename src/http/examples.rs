//! `/api/v1/examples/*`: the original service's role examples, with its bodies and 403 messages.
//! A role reaches an endpoint when it is at least the required one (user < moderator < admin);
//! `moderator-tools` takes exactly a moderator. API keys act with their owner's current role.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::api::{Access, ApiRouter, access};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::{require_at_least, require_exact};
use crate::error::ApiError;
use crate::model::Role;
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    access(
        Access::Any,
        ApiRouter::new()
            .routes(routes!(user_content))
            .routes(routes!(moderator_content))
            .routes(routes!(admin_content))
            .routes(routes!(moderator_tools))
            .routes(routes!(role_info)),
    )
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

/// The caller, as the examples show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExampleUser {
    pub username: String,
    pub role: Role,
}

fn user(current: &CurrentUser) -> ExampleUser {
    ExampleUser {
        username: current.user.username.clone(),
        role: current.user.role,
    }
}

/// Content for a role.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExampleContent {
    pub message: String,
    /// `user`, `moderator` or `admin`.
    pub content_type: String,
    pub user: ExampleUser,
    pub access_note: String,
}

fn content(current: &CurrentUser, message: &str, kind: &str, note: &str) -> Json<ExampleContent> {
    Json(ExampleContent {
        message: message.into(),
        content_type: kind.into(),
        user: user(current),
        access_note: note.into(),
    })
}

/// Content for every authenticated user.
#[utoipa::path(
    get, path = "/api/v1/examples/user-content", tag = "examples",
    responses((status = 200, description = "The content", body = ExampleContent)),
)]
async fn user_content(MinRole(current): MinRole<0>) -> Json<ExampleContent> {
    content(
        &current,
        "User content accessible to all authenticated users",
        "user",
        "This endpoint is accessible by user, moderator, and admin roles",
    )
}

/// Content for moderators and administrators (others: 403).
#[utoipa::path(
    get, path = "/api/v1/examples/moderator-content", tag = "examples",
    responses((status = 200, description = "The content", body = ExampleContent)),
)]
async fn moderator_content(MinRole(current): MinRole<1>) -> Json<ExampleContent> {
    content(
        &current,
        "Moderator content with elevated permissions",
        "moderator",
        "This endpoint is accessible by moderator and admin roles only",
    )
}

/// Content for administrators (others: 403; an API key acts with its owner's role).
#[utoipa::path(
    get, path = "/api/v1/examples/admin-content", tag = "examples",
    responses((status = 200, description = "The content", body = ExampleContent)),
)]
async fn admin_content(MinRole(current): MinRole<2>) -> Json<ExampleContent> {
    content(
        &current,
        "Admin content with full system access",
        "admin",
        "This endpoint is accessible by admin role only",
    )
}

/// The tools of moderators.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModeratorTools {
    pub message: String,
    /// `moderator-exact`.
    pub content_type: String,
    pub user: ExampleUser,
    pub tools: Vec<String>,
    pub access_note: String,
}

/// Tools for moderators only: exactly the moderator role (administrators too get 403).
#[utoipa::path(
    get, path = "/api/v1/examples/moderator-tools", tag = "examples",
    responses((status = 200, description = "The tools", body = ModeratorTools)),
)]
async fn moderator_tools(ExactlyModerator(current): ExactlyModerator) -> Json<ModeratorTools> {
    Json(ModeratorTools {
        message: "Moderator-specific tools and functionality".into(),
        content_type: "moderator-exact".into(),
        user: user(&current),
        tools: [
            "User management dashboard",
            "Content moderation queue",
            "Report review system",
        ]
        .map(String::from)
        .to_vec(),
        access_note: "This endpoint is accessible by moderator role only (exact match)".into(),
    })
}

/// The caller's role and what it reaches.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleInfo {
    pub user: ExampleUser,
    pub role_hierarchy: RoleHierarchy,
    /// The content endpoints the role reaches (at least the required role).
    pub accessible_endpoints: Vec<String>,
    /// The endpoints that take exactly the caller's role.
    pub exact_role_endpoints: Vec<String>,
    pub permissions: ExamplePermissions,
}

/// Where the caller's role sits in the hierarchy.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleHierarchy {
    /// 0 user, 1 moderator, 2 admin.
    pub current_level: u8,
    pub total_levels: usize,
    /// Lowest first.
    pub role_order: Vec<Role>,
}

/// What the caller's role may read.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExamplePermissions {
    pub can_access_user_content: bool,
    pub can_access_moderator_content: bool,
    pub can_access_admin_content: bool,
}

/// The caller's role, its place in the hierarchy and the endpoints it reaches.
#[utoipa::path(
    get, path = "/api/v1/examples/role-info", tag = "examples",
    responses((status = 200, description = "The role", body = RoleInfo)),
)]
async fn role_info(MinRole(current): MinRole<0>) -> Json<RoleInfo> {
    let role = current.user.role;
    let accessible = [
        (Role::User, "user-content"),
        (Role::Moderator, "moderator-content"),
        (Role::Admin, "admin-content"),
    ]
    .into_iter()
    .filter(|(required, _)| role >= *required)
    .map(|(_, name)| name.to_owned())
    .collect();
    let exact = if role == Role::Moderator {
        vec!["moderator-tools".to_owned()]
    } else {
        Vec::new()
    };
    Json(RoleInfo {
        user: user(&current),
        role_hierarchy: RoleHierarchy {
            current_level: role.level(),
            total_levels: Role::ALL.len(),
            role_order: Role::ALL.to_vec(),
        },
        accessible_endpoints: accessible,
        exact_role_endpoints: exact,
        permissions: ExamplePermissions {
            can_access_user_content: role >= Role::User,
            can_access_moderator_content: role >= Role::Moderator,
            can_access_admin_content: role >= Role::Admin,
        },
    })
}

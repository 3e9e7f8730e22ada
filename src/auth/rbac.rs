//! Role checks as extractors: the three roles of the original service and their hierarchy
//! (user < moderator < admin), and exact-role checks.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::json;

use super::principal::CurrentUser;
use crate::error::ApiError;
use crate::security::audit::AuditEvent;
use crate::security::client_ip::RequestContext;
use crate::state::AppState;
use crate::store::users::Role;

/// Refuses (403, audited) unless the caller's role is at least `required`.
pub fn require_at_least(
    state: &AppState,
    parts: &Parts,
    current: &CurrentUser,
    required: Role,
) -> Result<(), ApiError> {
    if current.user.role >= required {
        return Ok(());
    }
    state.audit.record(
        AuditEvent::new("rbac.denied", "denied")
            .context(parts.extensions.get::<RequestContext>())
            .user(&current.user)
            .details(
                json!({"required": required, "role": current.user.role, "path": parts.uri.path()}),
            ),
    );
    Err(ApiError::forbidden(format!(
        "Access denied. Required role: {required}, user role: {}",
        current.user.role
    )))
}

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub CurrentUser);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        require_at_least(state, parts, &current, Role::Admin)?;
        Ok(Admin(current))
    }
}

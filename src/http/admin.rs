//! `/api/v1/admin/*`: user administration for administrators.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::json;
use uuid::Uuid;

use crate::auth::accounts;
use crate::auth::rbac::Admin;
use crate::error::ApiError;
use crate::security::audit::AuditEvent;
use crate::security::client_ip::RequestContext;
use crate::state::AppState;
use crate::store::users;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/admin/users/{id}/unlock", post(unlock))
}

async fn unlock(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found("User not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let user = users::find_by_id(&state.db, id)
        .await?
        .ok_or_else(not_found)?;
    accounts::unlock(&state, &user).await?;
    state.audit.record(
        AuditEvent::new("user.unlocked", "success")
            .context(ctx.map(|Extension(c)| c).as_ref())
            .user(&admin.user)
            .details(json!({"target_user_id": user.id, "target": user.username})),
    );
    Ok(StatusCode::NO_CONTENT)
}

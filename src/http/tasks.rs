//! `/api/v1/collab/*`: collaborative tasks. Every authenticated user may read and edit them
//! (that is the collaboration); deleting is for the creator, moderators and administrators.
//! Updates carry a version and honour `If-Match`; item routes take the real UUID ids (the
//! original declared them as integers, which made them unusable).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::conditional::{
    check_if_match, json_with_etag, respond_conditionally, respond_conditionally_on,
};
use super::extract::{Json, Path};
use crate::auth::rbac::{Authorized, JobsRead, JobsWrite};
use crate::error::{ApiError, FieldError};
use crate::orchestrator::tasks::{self, TaskError, TaskRow, TaskView, to_json};
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    access(
        Access::Any,
        ApiRouter::new()
            .routes(routes!(create))
            .routes(routes!(list))
            .routes(routes!(read, update, remove)),
    )
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound => ApiError::not_found(e.to_string()),
            TaskError::Forbidden => ApiError::forbidden(e.to_string()),
            TaskError::Changed => ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string()),
            TaskError::Store(e) => e.into(),
        }
    }
}

/// A task's editable fields (unknown fields are refused, as before).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// Trimmed, not blank.
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    #[schema(max_length = 10000)]
    pub description: Option<String>,
}

impl TaskInput {
    /// The title trimmed; a blank one is a 422 like a missing one.
    fn into_parts(self) -> Result<(String, Option<String>), ApiError> {
        let title = self.title.trim().to_owned();
        if title.is_empty() {
            return Err(ApiError::validation(vec![FieldError::body(
                "title",
                "string_too_short",
                "String should have at least 1 character",
            )]));
        }
        Ok((title, self.description))
    }
}

async fn find(state: &AppState, id: Uuid) -> Result<TaskRow, ApiError> {
    Ok(tasks::find(state, &id.to_string()).await?)
}

/// Create a collaborative task.
#[utoipa::path(
    post, path = "/api/v1/collab/tasks", tag = "collab",
    request_body = TaskInput,
    responses(
        (status = 201, description = "Created", body = TaskView,
         headers(("ETag" = String, description = "the task's version"),
                 ("Location" = String, description = "/api/v1/collab/tasks/{id}"))),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    Json(body): Json<TaskInput>,
) -> Result<Response, ApiError> {
    let (title, description) = body.into_parts()?;
    let task = tasks::create(&state, &caller.user, title, description).await?;
    let mut response = json_with_etag(StatusCode::CREATED, &to_json(&task));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/collab/tasks/{}", task.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The task list of the original's `collab/state` shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    /// Always `tasks`.
    pub kind: String,
    /// Newest first, at most 1000.
    pub items: Vec<TaskView>,
}

/// The newest tasks. The ETag covers `items`; `If-None-Match` → 304.
#[utoipa::path(
    get, path = "/api/v1/collab/state/tasks", tag = "collab",
    responses(
        (status = 200, description = "The tasks", body = TaskList,
         headers(("ETag" = String, description = "the version of the items"))),
        (status = 304, description = "Not modified (If-None-Match)"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    _caller: Authorized<JobsRead>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let items: Vec<TaskView> = tasks::list(&state)
        .await?
        .iter()
        .map(TaskView::from)
        .collect();
    let body = serde_json::to_value(TaskList {
        kind: "tasks".into(),
        items,
    })
    .map_err(ApiError::internal)?;
    let items = body.get("items").cloned().unwrap_or(Value::Null);
    Ok(respond_conditionally_on(&headers, &body, &items))
}

/// One task. `If-None-Match` with its ETag → 304.
#[utoipa::path(
    get, path = "/api/v1/collab/tasks/{id}", tag = "collab",
    params(("id" = Uuid, Path, description = "the task id")),
    responses(
        (status = 200, description = "The task", body = TaskView,
         headers(("ETag" = String, description = "the task's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such task", body = ErrorEnvelope),
    ),
)]
async fn read(
    State(state): State<AppState>,
    _caller: Authorized<JobsRead>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let task = find(&state, id).await?;
    Ok(respond_conditionally(&headers, &to_json(&task)))
}

/// Replace a task's title and description. `If-Match` with its ETag → 412 when it changed.
#[utoipa::path(
    put, path = "/api/v1/collab/tasks/{id}", tag = "collab",
    params(("id" = Uuid, Path, description = "the task id"),
           ("If-Match" = Option<String>, Header, description = "the ETag the edit is based on")),
    request_body = TaskInput,
    responses(
        (status = 200, description = "The task after the change", body = TaskView,
         headers(("ETag" = String, description = "the task's new version"))),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 412, description = "Changed meanwhile (If-Match or version)", body = ErrorEnvelope),
    ),
)]
async fn update(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<TaskInput>,
) -> Result<Response, ApiError> {
    let (title, description) = body.into_parts()?;
    let task = find(&state, id).await?;
    check_if_match(&headers, &to_json(&task))?;
    let next = tasks::update(&state, &caller.user, &task, title, description).await?;
    Ok(json_with_etag(StatusCode::OK, &to_json(&next)))
}

/// Delete a task (its creator, moderators and administrators).
#[utoipa::path(
    delete, path = "/api/v1/collab/tasks/{id}", tag = "collab",
    params(("id" = Uuid, Path, description = "the task id"),
           ("If-Match" = Option<String>, Header, description = "the ETag the deletion is based on")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not the creator, a moderator or an administrator", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
        (status = 412, description = "Changed meanwhile (If-Match)", body = ErrorEnvelope),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let task = find(&state, id).await?;
    check_if_match(&headers, &to_json(&task))?;
    tasks::delete(&state, &caller.user, &task).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

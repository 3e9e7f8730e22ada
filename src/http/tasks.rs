//! `/api/v1/collab/*`: collaborative tasks. Every authenticated user may read and edit them
//! (that is the collaboration); deleting is for the creator, moderators and administrators.
//! Updates carry a version and honour `If-Match`; item routes take the real UUID ids (the
//! original declared them as integers, which made them unusable).

use super::extract::Path;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::body::JsonObject;
use super::conditional::{
    check_if_match, json_with_etag, respond_conditionally, respond_conditionally_on,
};
use crate::auth::api_keys::Scope;
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::require_scope;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::tasks::{self, TaskError, TaskRow, to_json};
use crate::state::AppState;

const DESCRIPTION_MAX_BYTES: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/collab/tasks", post(create))
        .route("/api/v1/collab/state/tasks", get(list))
        .route(
            "/api/v1/collab/tasks/{id}",
            get(read).put(update).delete(remove),
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

/// `{title, description?}`, title trimmed and not empty, unknown fields refused (as before).
fn task_fields(body: &JsonObject) -> Result<(String, Option<String>), ApiError> {
    let mut fields = body.fields();
    for key in body.0.keys() {
        if key != "title" && key != "description" {
            fields.error(key, "extra_forbidden", "Extra inputs are not permitted");
        }
    }
    let title = fields.string("title", 255);
    let description = fields.optional_string("description", DESCRIPTION_MAX_BYTES);
    fields.finish()?;
    let title = title.map(|t| t.trim().to_owned()).unwrap_or_default();
    if title.is_empty() {
        return Err(ApiError::validation(vec![FieldError::body(
            "title",
            "string_too_short",
            "String should have at least 1 character",
        )]));
    }
    Ok((title, description))
}

async fn find(state: &AppState, id: &str) -> Result<TaskRow, ApiError> {
    Ok(tasks::find(state, id).await?)
}

async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    body: JsonObject,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let (title, description) = task_fields(&body)?;
    let task = tasks::create(&state, &current.user, title, description).await?;
    let mut response = json_with_etag(StatusCode::CREATED, &to_json(&task));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/collab/tasks/{}", task.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsRead)?;
    let items = Value::Array(tasks::list(&state).await?.iter().map(to_json).collect());
    let body = json!({"kind": "tasks", "items": items});
    Ok(respond_conditionally_on(&headers, &body, &body["items"]))
}

async fn read(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsRead)?;
    let task = find(&state, &id).await?;
    Ok(respond_conditionally(&headers, &to_json(&task)))
}

async fn update(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let (title, description) = task_fields(&body)?;
    let task = find(&state, &id).await?;
    check_if_match(&headers, &to_json(&task))?;
    let next = tasks::update(&state, &current.user, &task, title, description).await?;
    Ok(json_with_etag(StatusCode::OK, &to_json(&next)))
}

async fn remove(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let task = find(&state, &id).await?;
    check_if_match(&headers, &to_json(&task))?;
    tasks::delete(&state, &current.user, &task).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! `/api/v1/collab/*`: collaborative tasks. Every authenticated user may read and edit them
//! (that is the collaboration); deleting is for the creator, moderators and administrators.
//! Updates carry a version and honour `If-Match`; item routes take the real UUID ids (the
//! original declared them as integers, which made them unusable).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

use super::body::JsonObject;
use super::conditional::{
    check_if_match, json_with_etag, respond_conditionally, respond_conditionally_on,
};
use super::events::emit;
use crate::auth::api_keys::Scope;
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::require_scope;
use crate::clock::at_storage_precision;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::events::{NewEvent, ORCHESTRATOR};
use crate::state::AppState;
use crate::store::tasks::{self as store, TaskRow};

const LIST_MAX: i64 = 1000;
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

pub fn to_json(t: &TaskRow) -> Value {
    json!({
        "id": t.id,
        "title": t.title,
        "description": t.description,
        "version": t.version,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("Task not found")
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
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    store::find(&state.db, id).await?.ok_or_else(not_found)
}

async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    body: JsonObject,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let (title, description) = task_fields(&body)?;
    let now = at_storage_precision(state.clock.now());
    let task = TaskRow {
        id: Uuid::new_v4(),
        title,
        description,
        version: 1,
        owner_id: Some(current.user.id),
        created_at: now,
        updated_at: now,
    };
    store::insert(&state.db, &task).await?;
    emit(&state, task_event(&task, "task_created", &current)).await;
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
    let items = Value::Array(
        store::list(&state.db, LIST_MAX)
            .await?
            .iter()
            .map(to_json)
            .collect(),
    );
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
    let mut next = task.clone();
    next.title = title;
    next.description = description;
    next.updated_at = at_storage_precision(state.clock.now());
    if !store::update(&state.db, &next, task.version).await? {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "Precondition failed: the resource has changed",
        ));
    }
    next.version += 1;
    emit(&state, task_event(&next, "task_updated", &current)).await;
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
    if !crate::auth::policy::may_delete_task(&current.user, task.owner_id) {
        return Err(ApiError::forbidden(
            "Only the creator, moderators and administrators can delete a task",
        ));
    }
    check_if_match(&headers, &to_json(&task))?;
    if !store::delete(&state.db, task.id, task.version).await? {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "Precondition failed: the resource has changed",
        ));
    }
    emit(&state, task_event(&task, "task_deleted", &current)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn task_event(task: &TaskRow, name: &str, current: &CurrentUser) -> NewEvent {
    NewEvent {
        stream: ORCHESTRATOR,
        event: name.to_owned(),
        actor: Some(current.user.username.clone()),
        target: Some(task.id.to_string()),
        task_id: Some(task.id.to_string()),
        run_id: None,
        owner_id: task.owner_id,
        payload: json!({"task": to_json(task), "user_id": current.user.id}),
    }
}

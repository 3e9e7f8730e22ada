//! `/api/v1/jobs`: submit, list, read, change the status of and delete jobs.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::types::Json as DbJson;
use uuid::Uuid;

use super::body::JsonObject;
use super::conditional::{check_if_match, json_with_etag, respond_conditionally};
use super::events::emit;
use crate::auth::api_keys::Scope;
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::require_scope;
use crate::clock::at_storage_precision;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::jobs::{self, JobStatus};
use crate::state::AppState;
use crate::store::jobs::{self as store, JobRow};

pub const LIST_LIMIT_MAX: i64 = 1000;
const METADATA_MAX_BYTES: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", post(create).get(list))
        .route("/api/v1/jobs/", post(create).get(list))
        .route("/api/v1/jobs/{id}", get(read).delete(remove))
        .route("/api/v1/jobs/{id}/status", put(set_status))
}

fn not_found() -> ApiError {
    ApiError::not_found("Job not found")
}

/// The job if it exists and the caller may see it (otherwise 404, revealing nothing).
async fn visible(state: &AppState, current: &CurrentUser, id: &str) -> Result<JobRow, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let job = store::find(&state.db, id).await?.ok_or_else(not_found)?;
    if !jobs::may_access(&current.user, &job) {
        return Err(not_found());
    }
    Ok(job)
}

async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    body: JsonObject,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let mut fields = body.fields();
    let title = fields.string("title", 255);
    let description = fields.optional_string("description", 1024);
    fields.finish()?;
    let mut errors = Vec::new();
    let title = title.map(|t| t.trim().to_owned()).unwrap_or_default();
    if title.is_empty() {
        errors.push(FieldError::body(
            "title",
            "string_too_short",
            "String should have at least 1 character",
        ));
    }
    let priority = match body.0.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64().filter(|p| (-1000..=1000).contains(p)) {
            Some(p) => p as i32,
            None => {
                errors.push(FieldError::body(
                    "priority",
                    "int_range",
                    "Input should be an integer from -1000 to 1000",
                ));
                0
            }
        },
    };
    let metadata = match body.0.get("metadata") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) if v.to_string().len() <= METADATA_MAX_BYTES => {
            Some(DbJson(v.clone()))
        }
        Some(Value::Object(_)) => {
            errors.push(FieldError::body(
                "metadata",
                "too_long",
                "metadata must be at most 16 KiB of JSON",
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::body(
                "metadata",
                "dict_type",
                "Input should be a valid dictionary",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = at_storage_precision(state.clock.now());
    let job = JobRow {
        id: Uuid::new_v4(),
        name: title,
        description,
        status: JobStatus::Pending.as_str().to_owned(),
        priority,
        metadata,
        owner_id: Some(current.user.id),
        version: 1,
        attempts: 0,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        lease_owner: None,
        lease_expires_at: None,
        lease_token: None,
        result: None,
        error: None,
    };
    store::insert(&state.db, &job).await?;
    emit(
        &state,
        jobs::event(&job, "job_created", Some(&current.user.username), json!({})),
    )
    .await;
    let mut response = json_with_etag(StatusCode::CREATED, &jobs::to_json(&job));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    skip: Option<i64>,
    limit: Option<i64>,
}

fn query_error(field: &str, kind: &'static str, msg: &str) -> ApiError {
    ApiError::validation(vec![FieldError::query(field, kind, msg)])
}

fn parse_status(value: &str, loc: &str, in_query: bool) -> Result<JobStatus, ApiError> {
    value.parse().map_err(|_| {
        let msg = "Input should be 'pending', 'running', 'completed', 'failed' or 'cancelled'";
        if in_query {
            query_error(loc, "enum", msg)
        } else {
            ApiError::field(loc, "enum", msg)
        }
    })
}

async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsRead)?;
    let status = q
        .status
        .as_deref()
        .map(|s| parse_status(s, "status", true))
        .transpose()?;
    let skip = q.skip.unwrap_or(0);
    if skip < 0 {
        return Err(query_error(
            "skip",
            "greater_than_equal",
            "Input should be greater than or equal to 0",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) {
        return Err(query_error(
            "limit",
            "less_than_equal",
            "Input should be from 1 to 1000",
        ));
    }
    let owner = crate::auth::policy::owner_filter(&current.user);
    let rows = store::list(&state.db, status.map(JobStatus::as_str), owner, skip, limit).await?;
    let body = Value::Array(rows.iter().map(jobs::to_json).collect());
    Ok(respond_conditionally(&headers, &body))
}

async fn read(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsRead)?;
    let job = visible(&state, &current, &id).await?;
    Ok(respond_conditionally(&headers, &jobs::to_json(&job)))
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

/// `PUT /api/v1/jobs/{id}/status?status=…` (as before) or with `{"status": …}` in the body.
async fn set_status(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<StatusQuery>,
    body: Option<JsonObject>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let requested = match (q.status, body) {
        (Some(s), _) => parse_status(&s, "status", true)?,
        (None, Some(body)) => {
            let mut fields = body.fields();
            let s = fields.string("status", 32);
            fields.finish()?;
            parse_status(&s.unwrap_or_default(), "status", false)?
        }
        (None, None) => return Err(query_error("status", "missing", "Field required")),
    };
    let job = visible(&state, &current, &id).await?;
    check_if_match(&headers, &jobs::to_json(&job))?;
    let next = jobs::transition(&job, requested, at_storage_precision(state.clock.now())).map_err(
        |e| {
            ApiError::conflict(format!(
                "Invalid status transition from {} to {}",
                e.from, e.to
            ))
        },
    )?;
    if !store::update_status(&state.db, &next, job.version).await? {
        return Err(ApiError::conflict(
            "The job was changed by another request; read it again and retry",
        ));
    }
    let mut next = next;
    next.version += 1;
    let change = json!({"old_status": job.status, "new_status": next.status});
    emit(
        &state,
        jobs::event(
            &next,
            "job_status_updated",
            Some(&current.user.username),
            change,
        ),
    )
    .await;
    Ok(json_with_etag(StatusCode::OK, &jobs::to_json(&next)))
}

async fn remove(
    State(state): State<AppState>,
    current: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_scope(&current, Scope::JobsWrite)?;
    let job = visible(&state, &current, &id).await?;
    check_if_match(&headers, &jobs::to_json(&job))?;
    if !store::delete(&state.db, job.id, job.version).await? {
        return Err(ApiError::conflict(
            "The job was changed by another request; read it again and retry",
        ));
    }
    emit(
        &state,
        jobs::event(&job, "job_deleted", Some(&current.user.username), json!({})),
    )
    .await;
    Ok(Json(json!({"message": "Job deleted successfully"})).into_response())
}

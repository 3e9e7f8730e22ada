//! `/api/v1/jobs`: submit, list, read, change the status of and delete jobs.

use super::extract::{Path, Query};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonObject;
use super::conditional::{check_if_match, json_with_etag, respond_conditionally};
use crate::auth::api_keys::Scope;
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::require_scope;
use crate::error::{ApiError, FieldError};
use crate::orchestrator::jobs::JobRow;
use crate::orchestrator::jobs::{self, JobError, JobStatus, NewJob};
use crate::state::AppState;

pub const LIST_LIMIT_MAX: i64 = 1000;
const METADATA_MAX_BYTES: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", post(create).get(list))
        .route("/api/v1/jobs/", post(create).get(list))
        .route("/api/v1/jobs/{id}", get(read).delete(remove))
        .route("/api/v1/jobs/{id}/status", put(set_status))
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotFound => ApiError::not_found("Job not found"),
            JobError::Transition(_) | JobError::Changed => ApiError::conflict(e.to_string()),
            JobError::Store(e) => e.into(),
        }
    }
}

/// The job if it exists and the caller may see it (otherwise 404, revealing nothing).
async fn visible(state: &AppState, current: &CurrentUser, id: &str) -> Result<JobRow, ApiError> {
    Ok(jobs::find_visible(state, &current.user, id).await?)
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
        Some(v @ Value::Object(_)) if v.to_string().len() <= METADATA_MAX_BYTES => Some(v.clone()),
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
    let job = jobs::submit(
        &state,
        &current.user,
        NewJob {
            title,
            description,
            priority,
            metadata,
        },
    )
    .await?;
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
    let rows = jobs::list(&state, &current.user, status, skip, limit).await?;
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
    let next = jobs::set_status(&state, &current.user, &job, requested).await?;
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
    jobs::delete(&state, &current.user, &job).await?;
    Ok(Json(json!({"message": "Job deleted successfully"})).into_response())
}

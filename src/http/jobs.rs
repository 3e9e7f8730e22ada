//! `/api/v1/jobs`: submit, list, read, change the status of and delete jobs.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, Message, access};
use super::conditional::{check_if_match, json_with_etag, respond_conditionally};
use super::extract::{Json, Path, Query};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::{Authorized, JobsRead, JobsWrite};
use crate::error::{ApiError, FieldError};
use crate::orchestrator::jobs::{self, JobError, JobRow, JobStatus, JobView, NewJob};
use crate::state::AppState;

pub const LIST_LIMIT_MAX: i64 = 1000;
const METADATA_MAX_BYTES: usize = 16 * 1024;

pub fn routes() -> ApiRouter {
    access(
        Access::Any,
        ApiRouter::new()
            .routes(routes!(overview))
            .routes(routes!(create, list))
            .routes(routes!(create_alias, list_alias))
            .routes(routes!(read, remove))
            .routes(routes!(set_status))
            .routes(routes!(bulk))
            .routes(routes!(rerun))
            .routes(routes!(output)),
    )
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
async fn visible(state: &AppState, current: &CurrentUser, id: Uuid) -> Result<JobRow, ApiError> {
    Ok(jobs::find_visible(state, &current.user, &id.to_string()).await?)
}

/// A job to submit.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JobCreate {
    /// The title; trimmed, not blank.
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Higher runs first (default 0).
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    /// Free-form JSON object, at most 16 KiB once serialized.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Labels an agent must have to claim the job (lower-cased; 1–64 characters of
    /// `a-z 0-9 . _ - : /`; at most 32). Default: any agent.
    pub requires: Option<Vec<String>>,
}

/// Submit a job (`pending`), owned by the caller.
#[utoipa::path(
    post, path = "/api/v1/jobs", tag = "jobs",
    request_body = JobCreate,
    responses(
        (status = 201, description = "Submitted", body = JobView,
         headers(("ETag" = String, description = "the job's version"),
                 ("Location" = String, description = "/api/v1/jobs/{id}"))),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    Json(body): Json<JobCreate>,
) -> Result<Response, ApiError> {
    let title = body.title.trim().to_owned();
    let mut errors = Vec::new();
    if title.is_empty() {
        errors.push(FieldError::body(
            "title",
            "string_too_short",
            "String should have at least 1 character",
        ));
    }
    let metadata = body.metadata.map(Value::Object);
    if metadata
        .as_ref()
        .is_some_and(|m| m.to_string().len() > METADATA_MAX_BYTES)
    {
        errors.push(FieldError::body(
            "metadata",
            "too_long",
            "metadata must be at most 16 KiB of JSON",
        ));
    }
    let requires = match jobs::normalize_labels(&body.requires.unwrap_or_default()) {
        Ok(labels) => labels,
        Err(e) => {
            errors.push(FieldError::body(
                "requires",
                "invalid_labels",
                e.to_string(),
            ));
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let job = jobs::submit(
        &state,
        &caller.user,
        NewJob {
            title,
            description: body.description,
            priority: body.priority.unwrap_or(0),
            metadata,
            requires,
        },
    )
    .await?;
    let mut response = json_with_etag(StatusCode::CREATED, &jobs::to_json(&job));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `POST /api/v1/jobs/`: the original's path, the same operation as `POST /api/v1/jobs`.
#[utoipa::path(
    post, path = "/api/v1/jobs/", tag = "jobs",
    request_body = JobCreate,
    responses(
        (status = 201, description = "Submitted", body = JobView,
         headers(("ETag" = String, description = "the job's version"),
                 ("Location" = String, description = "/api/v1/jobs/{id}"))),
    ),
)]
async fn create_alias(
    state: State<AppState>,
    caller: Authorized<JobsWrite>,
    body: Json<JobCreate>,
) -> Result<Response, ApiError> {
    create(state, caller, body).await
}

/// What a job list is ordered by.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobSort {
    CreatedAt,
    UpdatedAt,
    Priority,
    Title,
    Status,
}

/// The direction of a job list's order.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// Paging, filtering, search and order of the job list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    #[param(inline)]
    status: Option<JobStatus>,
    /// Jobs to skip (default 0).
    #[param(minimum = 0)]
    skip: Option<i64>,
    /// At most this many jobs (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Keyset pagination: the id of the last job of the previous page (the `Link: rel="next"`
    /// of a full page gives it). Costs the same on every page, unlike `skip`; not with `skip`,
    /// and only in the default order.
    after: Option<Uuid>,
    /// Text found anywhere in the title, ignoring case (at most 255 characters).
    #[param(max_length = 255)]
    q: Option<String>,
    /// Only jobs of this owner (a username; a user who sees only their own jobs finds none of
    /// anybody else's).
    #[param(max_length = 255)]
    owner: Option<String>,
    /// Only jobs submitted at or after this time (RFC 3339).
    created_from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only jobs submitted before this time (RFC 3339).
    created_to: Option<chrono::DateTime<chrono::Utc>>,
    /// The order (default `created_at`); ties go by submission time, then id.
    #[param(inline)]
    sort: Option<JobSort>,
    /// `desc` (default) or `asc`.
    #[param(inline)]
    order: Option<SortOrder>,
    /// `true`: count every matching job too, in the `X-Total-Count` header.
    total: Option<bool>,
}

/// `Link: </api/v1/jobs?…&after=…>; rel="next"` (RFC 8288) for a full page in the default order.
fn next_link(q: &ListQuery, limit: i64, rows: &[JobRow]) -> Option<HeaderValue> {
    let last = rows.last().filter(|_| rows.len() as i64 == limit)?;
    let mut params = vec![("limit".to_owned(), limit.to_string())];
    params.push(("after".to_owned(), last.id.to_string()));
    if let Some(status) = q.status {
        params.push(("status".to_owned(), status.as_str().to_owned()));
    }
    for (name, value) in [("q", &q.q), ("owner", &q.owner)] {
        if let Some(value) = value {
            params.push((name.to_owned(), value.clone()));
        }
    }
    for (name, value) in [
        ("created_from", q.created_from),
        ("created_to", q.created_to),
    ] {
        if let Some(value) = value {
            params.push((name.to_owned(), value.to_rfc3339()));
        }
    }
    if q.total == Some(true) {
        params.push(("total".to_owned(), "true".to_owned()));
    }
    let query = serde_urlencoded::to_string(&params).ok()?;
    HeaderValue::from_str(&format!("</api/v1/jobs?{query}>; rel=\"next\"")).ok()
}

fn query_error(field: &str, kind: &'static str, msg: &str) -> ApiError {
    ApiError::validation(vec![FieldError::query(field, kind, msg)])
}

/// The jobs the caller may see (their own; all for moderators and administrators), newest
/// first unless `sort`/`order` say otherwise, filtered by status, owner, title text and
/// submission time. For callers who see other people's jobs each job carries `owner_name`.
/// `If-None-Match` with the list's ETag → 304.
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "The jobs", body = Vec<JobView>,
         headers(("ETag" = String, description = "the list's version"),
                 ("Link" = String, description = "rel=\"next\": the next page (keyset), on a full page in the default order"),
                 ("X-Total-Count" = i64, description = "every matching job, with total=true"))),
        (status = 304, description = "Not modified (If-None-Match)"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    caller: Authorized<JobsRead>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
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
    if q.after.is_some() && skip > 0 {
        return Err(query_error(
            "skip",
            "value_error",
            "skip cannot be combined with after (keyset pagination)",
        ));
    }
    for (name, value) in [("q", &q.q), ("owner", &q.owner)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 255) {
            return Err(query_error(
                name,
                "string_too_long",
                "String should have at most 255 characters",
            ));
        }
    }
    let request = jobs::ListRequest {
        status: q.status,
        after: q.after,
        skip,
        limit,
        search: q.q.as_ref().map(|s| s.trim().to_owned()),
        owner: q
            .owner
            .as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        created_from: q.created_from,
        created_to: q.created_to,
        sort: match q.sort {
            None | Some(JobSort::CreatedAt) => jobs::SortField::CreatedAt,
            Some(JobSort::UpdatedAt) => jobs::SortField::UpdatedAt,
            Some(JobSort::Priority) => jobs::SortField::Priority,
            Some(JobSort::Title) => jobs::SortField::Title,
            Some(JobSort::Status) => jobs::SortField::Status,
        },
        ascending: matches!(q.order, Some(SortOrder::Asc)),
        with_total: q.total == Some(true),
    };
    let page = match jobs::list(&state, &caller.user, &request).await {
        Ok(page) => page,
        Err(e @ jobs::ListError::UnknownAfter) | Err(e @ jobs::ListError::AfterWithSort) => {
            return Err(query_error("after", "value_error", &e.to_string()));
        }
        Err(jobs::ListError::Store(e)) => return Err(e.into()),
    };
    let body = Value::Array(
        page.rows
            .iter()
            .map(|row| {
                let mut job = jobs::to_json(row);
                if let (Value::Object(map), Some(name)) = (
                    &mut job,
                    row.owner_id.and_then(|id| page.owner_names.get(&id)),
                ) {
                    map.insert("owner_name".to_owned(), Value::from(name.clone()));
                }
                job
            })
            .collect(),
    );
    let mut response = respond_conditionally(&headers, &body);
    if request.sort == jobs::SortField::CreatedAt
        && !request.ascending
        && let Some(link) = next_link(&q, limit, &page.rows)
    {
        response.headers_mut().insert(header::LINK, link);
    }
    if let Some(total) = page.total {
        response
            .headers_mut()
            .insert("x-total-count", HeaderValue::from(total));
    }
    Ok(response)
}

/// The window and buckets of the overview.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// Hours back from now (default 24, at most 720).
    #[param(minimum = 1, maximum = 720)]
    hours: Option<i64>,
    /// Bucket length in seconds (default 3600; 60 to 86400, and at most 500 buckets).
    #[param(minimum = 60, maximum = 86400)]
    bucket_secs: Option<i64>,
}

/// One bucket of the overview's series.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OverviewBucket {
    /// The bucket's start.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Jobs submitted in it.
    pub submitted: i64,
    /// Jobs that completed in it.
    pub completed: i64,
    /// Jobs that failed in it.
    pub failed: i64,
}

/// The oldest pending job.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OldestPending {
    pub id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Seconds it has waited.
    pub waiting_secs: i64,
}

/// The queue at a glance.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OverviewView {
    /// Jobs per status (every status, 0 included).
    #[schema(value_type = Object)]
    pub counts: serde_json::Map<String, Value>,
    /// All jobs the caller may see.
    pub total: i64,
    pub oldest_pending: Option<OldestPending>,
    /// The start of the first bucket.
    pub from: chrono::DateTime<chrono::Utc>,
    pub bucket_secs: i64,
    /// Oldest bucket first; the last one holds now.
    pub series: Vec<OverviewBucket>,
}

/// The queue overview of the jobs the caller may see: counts per status, the oldest pending
/// job, and jobs submitted, completed and failed per bucket (counted by the database).
#[utoipa::path(
    get, path = "/api/v1/jobs/overview", tag = "jobs",
    params(OverviewQuery),
    responses((status = 200, description = "The overview", body = OverviewView)),
)]
async fn overview(
    State(state): State<AppState>,
    caller: Authorized<JobsRead>,
    Query(q): Query<OverviewQuery>,
) -> Result<axum::Json<OverviewView>, ApiError> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(query_error(
            "hours",
            "less_than_equal",
            "Input should be from 1 to 720",
        ));
    }
    let bucket_secs = q.bucket_secs.unwrap_or(3600);
    if !(60..=86_400).contains(&bucket_secs) {
        return Err(query_error(
            "bucket_secs",
            "less_than_equal",
            "Input should be from 60 to 86400",
        ));
    }
    if hours * 3600 / bucket_secs > 500 {
        return Err(query_error(
            "bucket_secs",
            "value_error",
            "At most 500 buckets: use longer buckets or fewer hours",
        ));
    }
    let o = jobs::overview(&state, &caller.user, hours, bucket_secs).await?;
    let now = state.clock.now();
    Ok(axum::Json(OverviewView {
        total: o.counts.iter().map(|(_, n)| n).sum(),
        counts: o
            .counts
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), Value::from(*n)))
            .collect(),
        oldest_pending: o.oldest_pending.map(|j| OldestPending {
            id: j.id,
            waiting_secs: (now - j.created_at).num_seconds().max(0),
            name: j.name,
            created_at: j.created_at,
        }),
        from: o.from,
        bucket_secs: o.bucket_secs,
        series: o
            .series
            .into_iter()
            .map(|(at, submitted, completed, failed)| OverviewBucket {
                at,
                submitted,
                completed,
                failed,
            })
            .collect(),
    }))
}

/// `GET /api/v1/jobs/`: the original's path, the same operation as `GET /api/v1/jobs`.
#[utoipa::path(
    get, path = "/api/v1/jobs/", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "The jobs", body = Vec<JobView>,
         headers(("ETag" = String, description = "the list's version"),
                 ("Link" = String, description = "rel=\"next\": the next page (keyset), on a full page"))),
        (status = 304, description = "Not modified (If-None-Match)"),
    ),
)]
async fn list_alias(
    state: State<AppState>,
    caller: Authorized<JobsRead>,
    headers: HeaderMap,
    q: Query<ListQuery>,
) -> Result<Response, ApiError> {
    list(state, caller, headers, q).await
}

/// One job. `If-None-Match` with its ETag → 304.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "the job id")),
    responses(
        (status = 200, description = "The job", body = JobView,
         headers(("ETag" = String, description = "the job's version"))),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such job, or not the caller's", body = ErrorEnvelope),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Authorized<JobsRead>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let job = visible(&state, &caller, id).await?;
    Ok(respond_conditionally(&headers, &jobs::to_json(&job)))
}

/// Which output lines to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Lines after this number (default 0: from the first).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Lines per page (default 500, at most 5000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// A page of a job's output.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OutputPageView {
    /// `{seq, attempt, stream, at, line}` in order; `stream` is `stdout`, `stderr` or `system`
    /// (the service's truncation marker).
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<Value>,
    /// The number of the last line of this page (pass it as `after` for the next page; equal to
    /// the `after` asked when there is nothing new).
    pub next_after: i64,
    /// Lines the job has in all.
    pub total: i64,
    /// Whether the output reached its limit (`KYROS_JOB_OUTPUT_MAX_BYTES`).
    pub truncated: bool,
}

/// Read a job's output (what its agent's command printed), paged by line number.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}/output", tag = "jobs",
    params(("id" = Uuid, Path, description = "the job id"), OutputQuery),
    responses(
        (status = 200, description = "A page of output", body = OutputPageView),
        (status = 404, description = "No such job, or not the caller's", body = ErrorEnvelope),
    ),
)]
async fn output(
    State(state): State<AppState>,
    caller: Authorized<JobsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<OutputQuery>,
) -> Result<axum::Json<OutputPageView>, ApiError> {
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(query_error(
            "after",
            "greater_than_equal",
            "Input should be greater than or equal to 0",
        ));
    }
    let limit = q.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(query_error(
            "limit",
            "less_than_equal",
            "Input should be from 1 to 5000",
        ));
    }
    let page = jobs::output(&state, &caller.user, &id.to_string(), after, limit).await?;
    Ok(axum::Json(OutputPageView {
        next_after: page.lines.last().map_or(after, |l| l.seq),
        lines: page
            .lines
            .iter()
            .map(crate::orchestrator::leases::output_json)
            .collect(),
        total: page.total,
        truncated: page.truncated,
    }))
}

/// The new status, in the query string (the original) or the body.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The new status (or `{"status": …}` in the body).
    #[param(inline)]
    status: Option<JobStatus>,
}

/// The new status, as a JSON body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusBody {
    pub status: JobStatus,
}

/// Change a job's status along the state machine (`?status=…` as the original, or
/// `{"status": …}`). `If-Match` with the job's ETag → 412 when it changed meanwhile.
#[utoipa::path(
    put, path = "/api/v1/jobs/{id}/status", tag = "jobs",
    params(("id" = Uuid, Path, description = "the job id"), StatusQuery,
           ("If-Match" = Option<String>, Header, description = "the ETag the change is based on")),
    request_body(content = Option<StatusBody>, description = "instead of ?status="),
    responses(
        (status = 200, description = "The job after the change", body = JobView,
         headers(("ETag" = String, description = "the job's new version"))),
        (status = 404, description = "No such job, or not the caller's", body = ErrorEnvelope),
        (status = 409, description = "Not a change the state machine allows", body = ErrorEnvelope),
        (status = 412, description = "If-Match does not match", body = ErrorEnvelope),
    ),
)]
async fn set_status(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Query(q): Query<StatusQuery>,
    body: Option<Json<StatusBody>>,
) -> Result<Response, ApiError> {
    let requested = match (q.status, body) {
        (Some(s), _) => s,
        (None, Some(Json(body))) => body.status,
        (None, None) => return Err(query_error("status", "missing", "Field required")),
    };
    let job = visible(&state, &caller, id).await?;
    check_if_match(&headers, &jobs::to_json(&job))?;
    let next = jobs::set_status(&state, &caller.user, &job, requested).await?;
    Ok(json_with_etag(StatusCode::OK, &jobs::to_json(&next)))
}

/// What a bulk request does.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkActionName {
    /// `pending | running → cancelled`.
    Cancel,
    /// `failed → pending`.
    Retry,
}

/// A bulk request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkBody {
    #[schema(inline)]
    pub action: BulkActionName,
    /// 1 to 100 job ids.
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Vec<Uuid>,
}

/// The outcome for one job of a bulk request.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct BulkResult {
    pub id: Uuid,
    /// The HTTP status the single request would have got: 200, 404 or 409.
    pub status: u16,
    /// The job after the change (200 only).
    #[schema(value_type = Option<Object>)]
    pub job: Option<Value>,
    /// Why it was refused (not 200).
    pub detail: Option<String>,
}

/// The outcomes of a bulk request.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct BulkAnswer {
    /// One per distinct id, in the order given.
    pub results: Vec<BulkResult>,
    pub succeeded: usize,
    pub failed: usize,
}

/// Cancel or retry several jobs at once: each job independently, as its own status change
/// would (the state machine, the event, the visibility: another user's job is a 404).
#[utoipa::path(
    post, path = "/api/v1/jobs/bulk", tag = "jobs",
    request_body = BulkBody,
    responses((status = 200, description = "The outcome for each job", body = BulkAnswer)),
)]
async fn bulk(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    Json(body): Json<BulkBody>,
) -> Result<axum::Json<BulkAnswer>, ApiError> {
    if body.ids.is_empty() || body.ids.len() > jobs::BULK_MAX {
        return Err(ApiError::validation(vec![FieldError::body(
            "ids",
            "too_long",
            "between 1 and 100 ids",
        )]));
    }
    let action = match body.action {
        BulkActionName::Cancel => jobs::BulkAction::Cancel,
        BulkActionName::Retry => jobs::BulkAction::Retry,
    };
    let mut results = Vec::new();
    for (id, outcome) in jobs::bulk(&state, &caller.user, action, &body.ids).await {
        results.push(match outcome {
            Ok(job) => BulkResult {
                id,
                status: 200,
                job: Some(jobs::to_json(&job)),
                detail: None,
            },
            Err(JobError::Store(e)) => return Err(e.into()),
            Err(e) => {
                let error = ApiError::from(e);
                BulkResult {
                    id,
                    status: error.status.as_u16(),
                    job: None,
                    detail: Some(error.message.to_string()),
                }
            }
        });
    }
    let succeeded = results.iter().filter(|r| r.status == 200).count();
    Ok(axum::Json(BulkAnswer {
        failed: results.len() - succeeded,
        succeeded,
        results,
    }))
}

/// Submit a new job with the same title, description, priority, metadata and required labels
/// as this one ("run again"), owned by the caller.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/rerun", tag = "jobs",
    params(("id" = Uuid, Path, description = "the job to run again")),
    responses(
        (status = 201, description = "The new job", body = JobView,
         headers(("ETag" = String, description = "the job's version"),
                 ("Location" = String, description = "/api/v1/jobs/{id}"))),
        (status = 404, description = "No such job, or not the caller's", body = ErrorEnvelope),
    ),
)]
async fn rerun(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let job = jobs::rerun(&state, &caller.user, &id.to_string()).await?;
    let mut response = json_with_etag(StatusCode::CREATED, &jobs::to_json(&job));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Delete a job. `If-Match` with the job's ETag → 412 when it changed meanwhile.
#[utoipa::path(
    delete, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "the job id"),
           ("If-Match" = Option<String>, Header, description = "the ETag the deletion is based on")),
    responses(
        (status = 200, description = "Deleted", body = Message),
        (status = 404, description = "No such job, or not the caller's", body = ErrorEnvelope),
        (status = 412, description = "If-Match does not match", body = ErrorEnvelope),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Authorized<JobsWrite>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let job = visible(&state, &caller, id).await?;
    check_if_match(&headers, &jobs::to_json(&job))?;
    jobs::delete(&state, &caller.user, &job).await?;
    Ok(Message::new("Job deleted successfully").into_response())
}

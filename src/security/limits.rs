//! Request size and time limits, each answered with the error envelope.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn request_limits(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let settings = &state.settings;
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > settings.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large",
        )
        .into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > settings.max_body_bytes as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            .into_response();
    }
    match tokio::time::timeout(
        Duration::from_secs(settings.request_timeout_secs),
        next.run(request),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request timeout").into_response(),
    }
}

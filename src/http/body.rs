//! Reading a JSON request body as an object (the first step of `extract::Json`, which then
//! validates it against its type's schema): a non-JSON content type or a non-object is
//! `model_attributes_type`, broken syntax `json_invalid` (with the column), a body over the limit
//! 413 — all in the original's 422 format. Submitted values are never echoed back.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, FieldError};

/// A request body that is a JSON object.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

fn not_an_object() -> ApiError {
    ApiError::validation(vec![FieldError {
        kind: "model_attributes_type",
        loc: vec![json!("body")],
        msg: "Input should be a valid dictionary or object to extract fields from".into(),
    }])
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_body = is_json(
            req.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                ApiError::bad_request("The request body could not be read")
            }
        })?;
        if !json_body {
            return Err(not_an_object());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(not_an_object()),
            Err(e) => Err(ApiError::validation(vec![FieldError {
                kind: "json_invalid",
                loc: vec![json!("body"), json!(e.column())],
                msg: "JSON decode error".into(),
            }])),
        }
    }
}

/// An optional JSON object body: absent when the request has no body at all.
impl<S: Send + Sync> axum::extract::OptionalFromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = req.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        if length.unwrap_or(0) == 0 && !chunked {
            return Ok(None);
        }
        <JsonObject as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

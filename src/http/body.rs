//! JSON request bodies: parsed once, validated field by field, every problem reported in the
//! original's 422 format. Submitted values are never echoed back (they may be passwords).

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

impl JsonObject {
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            object: &self.0,
            errors: Vec::new(),
        }
    }
}

/// Collects the problems of all fields before answering.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields<'_> {
    pub fn error(&mut self, field: &str, kind: &'static str, msg: impl Into<String>) {
        self.errors.push(FieldError::body(field, kind, msg));
    }

    /// A required string of at most `max_bytes` bytes.
    pub fn string(&mut self, field: &str, max_bytes: usize) -> Option<String> {
        match self.object.get(field) {
            None | Some(Value::Null) => {
                self.error(field, "missing", "Field required");
                None
            }
            Some(value) => self.check_string(field, value, max_bytes),
        }
    }

    pub fn optional_string(&mut self, field: &str, max_bytes: usize) -> Option<String> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(value) => self.check_string(field, value, max_bytes),
        }
    }

    fn check_string(&mut self, field: &str, value: &Value, max_bytes: usize) -> Option<String> {
        match value {
            Value::String(s) if s.len() <= max_bytes => Some(s.clone()),
            Value::String(_) => {
                self.error(
                    field,
                    "string_too_long",
                    format!("String should have at most {max_bytes} bytes"),
                );
                None
            }
            _ => {
                self.error(field, "string_type", "Input should be a valid string");
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
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

//! The only place error responses are built.
//!
//! Body: `{"error":{"type","code","message","path","method"},"detail":…}` — the envelope the
//! original service used for its own errors, plus the `detail` that its framework errors carried,
//! so clients reading either shape keep working. For 422 `detail` is the list of field errors in
//! the original's format (`type`, `loc`, `msg`); otherwise it is the message.

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: Vec<Value>,
    pub msg: String,
}

impl FieldError {
    pub fn body(field: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        FieldError {
            kind,
            loc: vec![json!("body"), json!(field)],
            msg: msg.into(),
        }
    }

    pub fn query(field: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        FieldError {
            kind,
            loc: vec![json!("query"), json!(field)],
            msg: msg.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: Cow<'static, str>,
    pub fields: Vec<FieldError>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        let kind = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "validation_error",
            s if s.is_server_error() => "internal_server_error",
            _ => "http_exception",
        };
        ApiError {
            status,
            kind,
            message: message.into(),
            fields: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 with the `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn invalid_credentials() -> Self {
        Self::unauthorized("Could not validate credentials")
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => format!("Validation error: {}", one.msg),
            _ => format!("Validation error: {} fields are invalid", fields.len()),
        };
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, message);
        e.fields = fields;
        e
    }

    pub fn field(field: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::body(field, kind, msg)])
    }

    /// A 500 that logs the cause and shows the client nothing of it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal server error occurred",
        )
    }

    /// 503 for a dependency that is down; the cause is logged, not shown.
    pub fn unavailable(message: &'static str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{message}");
        // A dependency is down; clients may try again shortly (on this or another instance).
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    pub fn body(&self, method: &Method, path: &str) -> Value {
        let detail = if self.fields.is_empty() {
            json!(self.message)
        } else {
            json!(self.fields)
        };
        json!({
            "error": {
                "type": self.kind,
                "code": self.status.as_u16(),
                "message": self.message,
                "path": path,
                "method": method.as_str(),
            },
            "detail": detail,
        })
    }

    /// The full response, for layers that run outside the router and know the request.
    pub fn render(&self, method: &Method, path: &str) -> Response {
        let mut response = (self.status, axum::Json(self.body(method, path))).into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }
}

/// Handlers return the error without knowing the request; `render_errors` fills path and method.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: turns an `ApiError` left in a response by a handler or extractor into its body.
pub async fn render_errors(
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next(request).await;
    match response.extensions().get::<ApiError>() {
        Some(error) => {
            let mut rendered = error.render(&method, &path);
            // Keep headers set by the router, e.g. `Allow` on a 405.
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    rendered.headers_mut().entry(name).or_insert(value.clone());
                }
            }
            rendered
        }
        None => response,
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

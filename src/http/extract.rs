//! The crate's own request extractors (as in axum's `customize-extractor-error` example): a value
//! that cannot be read becomes the error envelope with a 422 and the field's `loc`, like every
//! other validation error — never axum's plain-text 400 (`Failed to deserialize query
//! string…`). Messages use pydantic's wording, as the original service's clients read them, and
//! never echo the submitted value.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{ApiError, FieldError};

/// A query string deserialized into `T` (`axum::extract::Query`, with the envelope).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// Path parameters deserialized into `T` (`axum::extract::Path`, with the envelope).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

/// (type, message) of a field that could not be read, from serde's message.
fn classify(message: &str) -> (&'static str, &'static str) {
    if message.contains("invalid digit")
        || message.contains("number too large")
        || message.contains("number too small")
        || message.contains("cannot parse integer")
    {
        (
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        )
    } else if message.contains("invalid float") {
        (
            "float_parsing",
            "Input should be a valid number, unable to parse string as a number",
        )
    } else if message.contains("`true` or `false`") {
        (
            "bool_parsing",
            "Input should be a valid boolean, unable to interpret input",
        )
    } else if message.contains("UUID") || message.contains("uuid") {
        ("uuid_parsing", "Input should be a valid UUID")
    } else {
        ("value_error", "Input is not a valid value for this field")
    }
}

/// The field named in a serde `missing field `name`` message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn field_error(place: &'static str, path: &str, message: &str) -> FieldError {
    if let Some(name) = missing_field(message) {
        return FieldError {
            kind: "missing",
            loc: vec![json!(place), json!(name)],
            msg: "Field required".into(),
        };
    }
    let (kind, msg) = classify(message);
    let mut loc = vec![json!(place)];
    if !path.is_empty() && path != "." {
        loc.extend(path.split('.').map(|p| json!(p)));
    }
    FieldError {
        kind,
        loc,
        msg: msg.into(),
    }
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded_parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::validation(vec![field_error("query", &path, &e.inner().to_string())])
            })
    }
}

fn form_urlencoded_parse(input: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(input)
}

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let (key, message) = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key } => (key.clone(), e.body_text()),
                    ErrorKind::ParseErrorAtIndex { index, .. } => {
                        (index.to_string(), e.body_text())
                    }
                    _ => (String::new(), e.body_text()),
                };
                Err(ApiError::validation(vec![field_error(
                    "path", &key, &message,
                )]))
            }
            Err(_) => Err(ApiError::internal("path parameters are missing")),
        }
    }
}

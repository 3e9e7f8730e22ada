//! The crate's own request extractors (as in axum's `customize-extractor-error` example): a value
//! that cannot be read becomes the error envelope with a 422 and the field's `loc`, like every
//! other validation error — never axum's plain-text 400 (`Failed to deserialize query
//! string…`). Messages use pydantic's wording, as the original service's clients read them, and
//! never echo the submitted value.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::body::JsonObject;
use crate::error::{ApiError, FieldError};

/// A query string deserialized into `T` (`axum::extract::Query`, with the envelope).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// Path parameters deserialized into `T` (`axum::extract::Path`, with the envelope).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

/// (type, message) of a field that could not be read, from serde's message.
fn classify(message: &str) -> (&'static str, String) {
    if let Some(expected) = message
        .strip_prefix("unknown variant `")
        .and_then(|m| m.split_once("expected one of "))
        .map(|(_, e)| e)
    {
        let names: Vec<String> = expected
            .split(", ")
            .map(|n| format!("'{}'", n.trim_matches('`')))
            .collect();
        let listed = match names.as_slice() {
            [rest @ .., last] if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        return ("enum", format!("Input should be {listed}"));
    }
    let (kind, msg) = classify_scalar(message);
    (kind, msg.to_owned())
}

fn classify_scalar(message: &str) -> (&'static str, &'static str) {
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
    FieldError { kind, loc, msg }
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
                    // One value (`Path<Uuid>`): the key is the route's only parameter.
                    _ => {
                        let only =
                            match axum::extract::RawPathParams::from_request_parts(parts, state)
                                .await
                            {
                                Ok(params) if params.iter().count() == 1 => params
                                    .iter()
                                    .next()
                                    .map(|(k, _)| k.to_owned())
                                    .unwrap_or_default(),
                                _ => String::new(),
                            };
                        (only, e.body_text())
                    }
                };
                Err(ApiError::validation(vec![field_error(
                    "path", &key, &message,
                )]))
            }
            Err(_) => Err(ApiError::internal("path parameters are missing")),
        }
    }
}

/// A JSON request body checked against the OpenAPI schema of `T` — the same schema the document
/// at `/api/v1/openapi.json` publishes — then deserialized into `T`.
///
/// The constraints are written once, on the type (`#[schema(max_length = 255)]`, `Option` for
/// optional fields, enums, formats such as `email` and `uuid`), and every violation of every field
/// is reported at once in the 422 list (`type`, `loc: ["body", field, …]`, `msg` in pydantic's
/// wording), as the original service did. Unknown fields are ignored (pydantic's default). A body
/// that is not a JSON object keeps the answers of [`JsonObject`]: `model_attributes_type` for a
/// non-JSON content type or a non-object, `json_invalid` (with the column) for broken syntax.
/// Submitted values are never echoed back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned + ToSchema + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let JsonObject(object) = <JsonObject as FromRequest<S>>::from_request(req, state).await?;
        validated::<T>(Value::Object(object)).map(Json)
    }
}

/// An optional JSON body: absent when the request has no body at all.
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned + ToSchema + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        match <JsonObject as OptionalFromRequest<S>>::from_request(req, state).await? {
            None => Ok(None),
            Some(JsonObject(object)) => {
                validated::<T>(Value::Object(object)).map(|t| Some(Json(t)))
            }
        }
    }
}

/// `value` checked against `T`'s schema, then deserialized.
pub fn validated<T: DeserializeOwned + ToSchema + 'static>(value: Value) -> Result<T, ApiError> {
    let validator = validator_of::<T>()?;
    let errors: Vec<FieldError> = validator
        .iter_errors(&value)
        .flat_map(|e| schema_errors(&e))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    // The schema admits only what `T` reads, so this fails only where the schema is looser than
    // serde (e.g. an integer out of the range of its Rust type): the same envelope all the same.
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::validation(vec![field_error("body", &path, &e.inner().to_string())])
    })
}

type Validators = RwLock<HashMap<TypeId, Arc<jsonschema::Validator>>>;
static VALIDATORS: LazyLock<Validators> = LazyLock::new(Validators::default);

/// The compiled validator of `T`'s schema, built on first use (JSON Schema 2020-12, the dialect
/// of OpenAPI 3.1; formats are asserted).
fn validator_of<T: ToSchema + 'static>() -> Result<Arc<jsonschema::Validator>, ApiError> {
    let id = TypeId::of::<T>();
    if let Some(v) = VALIDATORS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
    {
        return Ok(Arc::clone(v));
    }
    let document = schema_document::<T>().map_err(ApiError::internal)?;
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&document)
        .map_err(|e| ApiError::internal(format!("schema of {}: {e}", T::name())))?;
    let validator = Arc::new(validator);
    VALIDATORS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id, Arc::clone(&validator));
    Ok(validator)
}

/// `T`'s schema as a standalone JSON Schema document: the referenced component schemas sit under
/// `components/schemas`, where the `$ref`s utoipa writes (`#/components/schemas/Name`) point.
pub fn schema_document<T: ToSchema>() -> Result<Value, serde_json::Error> {
    let mut components = Vec::new();
    T::schemas(&mut components);
    let mut document = serde_json::to_value(T::schema())?;
    let mut schemas = Map::new();
    for (name, schema) in components {
        schemas.insert(name, serde_json::to_value(schema)?);
    }
    if let Value::Object(root) = &mut document {
        root.insert("components".into(), json!({ "schemas": schemas }));
    }
    Ok(document)
}

fn json_type_name(t: jsonschema::JsonType) -> (&'static str, &'static str) {
    use jsonschema::JsonType as J;
    match t {
        J::String => ("string_type", "Input should be a valid string"),
        J::Integer => ("int_type", "Input should be a valid integer"),
        J::Number => ("float_type", "Input should be a valid number"),
        J::Boolean => ("bool_type", "Input should be a valid boolean"),
        J::Array => ("list_type", "Input should be a valid list"),
        J::Object => ("dict_type", "Input should be a valid dictionary"),
        J::Null => ("none_required", "Input should be None"),
    }
}

fn limit_text(limit: &Value) -> String {
    match limit {
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// One schema violation as field errors in pydantic's vocabulary (an object with unknown fields
/// gives one error per field).
fn schema_errors(e: &jsonschema::ValidationError<'_>) -> Vec<FieldError> {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let mut loc = vec![json!("body")];
    for segment in e.instance_path().iter() {
        match segment {
            jsonschema::paths::LocationSegment::Property(p) => loc.push(json!(p)),
            jsonschema::paths::LocationSegment::Index(i) => loc.push(json!(i)),
        }
    }
    if let K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } =
        e.kind()
    {
        return unexpected
            .iter()
            .map(|name| {
                let mut loc = loc.clone();
                loc.push(json!(name));
                FieldError {
                    kind: "extra_forbidden",
                    loc,
                    msg: "Extra inputs are not permitted".into(),
                }
            })
            .collect();
    }
    let (kind, msg): (&'static str, String) = match e.kind() {
        K::Required { property } => {
            if let Some(p) = property.as_str() {
                loc.push(json!(p));
            }
            ("missing", "Field required".into())
        }
        K::Type { kind } => {
            let t = match kind {
                TypeKind::Single(t) => *t,
                TypeKind::Multiple(set) => set
                    .iter()
                    .find(|t| *t != jsonschema::JsonType::Null)
                    .unwrap_or(jsonschema::JsonType::Null),
            };
            let (k, m) = json_type_name(t);
            (k, m.into())
        }
        K::MaxLength { limit } => (
            "string_too_long",
            format!("String should have at most {}", plural(*limit, "character")),
        ),
        K::MinLength { limit } => (
            "string_too_short",
            format!(
                "String should have at least {}",
                plural(*limit, "character")
            ),
        ),
        K::Minimum { limit } => (
            "greater_than_equal",
            format!(
                "Input should be greater than or equal to {}",
                limit_text(limit)
            ),
        ),
        K::Maximum { limit } => (
            "less_than_equal",
            format!(
                "Input should be less than or equal to {}",
                limit_text(limit)
            ),
        ),
        K::ExclusiveMinimum { limit } => (
            "greater_than",
            format!("Input should be greater than {}", limit_text(limit)),
        ),
        K::ExclusiveMaximum { limit } => (
            "less_than",
            format!("Input should be less than {}", limit_text(limit)),
        ),
        K::MinItems { limit } => (
            "too_short",
            format!("List should have at least {}", plural(*limit, "item")),
        ),
        K::MaxItems { limit } => (
            "too_long",
            format!("List should have at most {}", plural(*limit, "item")),
        ),
        K::MaxProperties { limit } => (
            "too_long",
            format!("Dictionary should have at most {}", plural(*limit, "item")),
        ),
        K::UniqueItems => ("list_unique", "List items should be unique".into()),
        K::Enum { options } => ("enum", format!("Input should be {}", choices(options))),
        K::Constant { expected_value } => (
            "literal_error",
            format!(
                "Input should be {}",
                choices(&json!([expected_value.as_ref()]))
            ),
        ),
        K::Pattern { pattern } => (
            "string_pattern_mismatch",
            format!("String should match pattern '{pattern}'"),
        ),
        K::Format { format } => match format.as_str() {
            "uuid" => ("uuid_parsing", "Input should be a valid UUID".into()),
            "email" | "idn-email" => ("value_error", "value is not a valid email address".into()),
            "date-time" => (
                "datetime_parsing",
                "Input should be a valid datetime".into(),
            ),
            "uri" => ("url_parsing", "Input should be a valid URL".into()),
            other => ("value_error", format!("Input should be a valid {other}")),
        },
        _ => (
            "value_error",
            "Input is not a valid value for this field".into(),
        ),
    };
    vec![FieldError { kind, loc, msg }]
}

/// `'a', 'b' or 'c'`, as pydantic lists the members of an enum.
fn choices(options: &Value) -> String {
    let items: Vec<String> = options
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => format!("'{s}'"),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    match items.as_slice() {
        [] => "one of the allowed values".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A request header whose value must parse as `T` ([`HeaderField`]): absent is `None`, a value
/// that does not parse is a 422 with `loc: ["header", name]` — never silently ignored.
#[derive(Debug, Clone)]
pub struct Header<T>(pub Option<T>);

/// A typed request header: its (lower-case) name and how its value parses.
pub trait HeaderField: Sized {
    /// The header name, lower case.
    const NAME: &'static str;
    /// The pydantic error type and message of a value that does not parse.
    const INVALID: (&'static str, &'static str);
    fn parse(value: &str) -> Option<Self>;
}

impl<T: HeaderField, S: Send + Sync> FromRequestParts<S> for Header<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(raw) = parts.headers.get(T::NAME) else {
            return Ok(Header(None));
        };
        raw.to_str()
            .ok()
            .and_then(|v| T::parse(v.trim()))
            .map(|v| Header(Some(v)))
            .ok_or_else(|| {
                ApiError::validation(vec![FieldError {
                    kind: T::INVALID.0,
                    loc: vec![json!("header"), json!(T::NAME)],
                    msg: T::INVALID.1.into(),
                }])
            })
    }
}

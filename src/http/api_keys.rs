//! `/api/v1/api-keys`: create, list and revoke API keys. Managing keys takes a person (bearer
//! token or browser session); an API key cannot create, list or revoke keys (403).

use super::extract::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::no_store;
use super::body::{Fields, JsonObject};
use crate::audit::Actor;
use crate::auth::api_keys::{
    self, ApiKey, ApiKeyError, MAX_EXPIRES_IN_DAYS, NAME_MAX_CHARS, NewApiKey, Scope, Scopes,
};
use crate::auth::rbac::UserPrincipal;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::model::Role;
use crate::state::AppState;

/// More entries than there are scopes is a malformed request, not a long list of duplicates.
const MAX_SCOPE_ENTRIES: usize = 32;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", post(create).get(list))
        .route("/api/v1/api-keys/{id}", delete(revoke))
}

impl From<ApiKeyError> for ApiError {
    fn from(e: ApiKeyError) -> Self {
        match e {
            ApiKeyError::Invalid(field, msg) => ApiError::field(field, "value_error", msg),
            ApiKeyError::ScopeNotAllowed(scope) => ApiError::forbidden(format!(
                "Access denied. Only administrators can grant the {scope} scope"
            )),
            ApiKeyError::TooMany => ApiError::conflict(e.to_string()),
            ApiKeyError::Store(e) => e.into(),
        }
    }
}

/// A key as listed: everything but the secret (which is not stored) and its hash.
fn key_json(key: &ApiKey, now: DateTime<Utc>) -> Value {
    json!({
        "id": key.id,
        "lookup_id": key.lookup_id,
        "name": key.name,
        "owner_id": key.owner_id,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "status": key.status(now),
    })
}

/// `scopes`: a non-empty list of known scope names.
fn scopes_field(body: &JsonObject, fields: &mut Fields<'_>) -> Option<Scopes> {
    let items = match body.0.get("scopes") {
        None | Some(Value::Null) => {
            fields.error("scopes", "missing", "Field required");
            return None;
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            fields.error("scopes", "list_type", "Input should be a valid list");
            return None;
        }
    };
    if items.is_empty() {
        fields.error(
            "scopes",
            "too_short",
            format!("At least one scope is required ({})", Scope::names()),
        );
        return None;
    }
    if items.len() > MAX_SCOPE_ENTRIES {
        fields.error(
            "scopes",
            "too_long",
            format!("List should have at most {MAX_SCOPE_ENTRIES} items"),
        );
        return None;
    }
    let mut scopes = Scopes::empty();
    let mut valid = true;
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(Scope::parse) {
            Some(scope) => scopes.insert(scope),
            None => {
                valid = false;
                fields.error(
                    "scopes",
                    "enum",
                    format!(
                        "scopes[{i}] is not a known scope; allowed: {}",
                        Scope::names()
                    ),
                );
            }
        }
    }
    valid.then_some(scopes)
}

/// `expires_in_days`: absent, null, or a whole number of days from 1 to 3650.
fn expires_field(body: &JsonObject, fields: &mut Fields<'_>) -> Option<i64> {
    let value = body.0.get("expires_in_days")?;
    if value.is_null() {
        return None;
    }
    match value.as_i64() {
        Some(days) if days < 1 => {
            fields.error(
                "expires_in_days",
                "greater_than_equal",
                "Input should be greater than or equal to 1",
            );
            None
        }
        Some(days) if days > MAX_EXPIRES_IN_DAYS => {
            fields.error(
                "expires_in_days",
                "less_than_equal",
                format!("Input should be less than or equal to {MAX_EXPIRES_IN_DAYS}"),
            );
            None
        }
        Some(days) => Some(days),
        None => {
            fields.error(
                "expires_in_days",
                "int_type",
                "Input should be a valid integer",
            );
            None
        }
    }
}

async fn create(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut fields = body.fields();
    // Four bytes per character at most; the character count is checked below.
    let name = fields.string("name", NAME_MAX_CHARS * 4);
    let name = name.and_then(|n| match api_keys::validate_name(&n) {
        Ok(n) => Some(n),
        Err(e) => {
            fields.error("name", "value_error", e.to_string());
            None
        }
    });
    let scopes = scopes_field(&body, &mut fields);
    let expires_in_days = expires_field(&body, &mut fields);
    fields.finish()?;
    let (Some(name), Some(scopes)) = (name, scopes) else {
        return Err(ApiError::internal("validated fields are missing"));
    };
    let ctx = ctx.map(|Extension(c)| c);
    let created = api_keys::create(
        &state,
        &current.user,
        NewApiKey {
            name,
            scopes,
            expires_in_days,
        },
        Actor::User(&current.user, ctx.as_ref()),
    )
    .await?;
    let key = &created.key;
    let body = json!({
        "id": key.id,
        "key": created.secret.key,
        "lookup_id": key.lookup_id,
        "name": key.name,
        "owner_id": key.owner_id,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
    });
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    owner_id: Option<String>,
    all: Option<String>,
}

fn query_error(field: &str, kind: &'static str, msg: &str) -> ApiError {
    ApiError::validation(vec![FieldError::query(field, kind, msg)])
}

async fn list(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    query: Result<Query<ListQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let all = match q.all.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(query_error(
                "all",
                "bool_parsing",
                "Input should be a valid boolean",
            ));
        }
    };
    let is_admin = current.user.role == Role::Admin;
    let owner = match (all, q.owner_id.as_deref()) {
        (true, _) if !is_admin => {
            return Err(ApiError::forbidden(
                "Only administrators can list every API key",
            ));
        }
        (true, _) => None,
        (false, Some(id)) => {
            let id = Uuid::parse_str(id).map_err(|_| {
                query_error("owner_id", "uuid_parsing", "Input should be a valid UUID")
            })?;
            if id != current.user.id && !is_admin {
                return Err(ApiError::forbidden(
                    "Only administrators can list other users' API keys",
                ));
            }
            Some(id)
        }
        (false, None) => Some(current.user.id),
    };
    let now = state.clock.now();
    let items: Vec<Value> = api_keys::list(&state, owner)
        .await?
        .iter()
        .map(|key| key_json(key, now))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn revoke(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found("API key not found");
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let key = api_keys::find(&state, id).await?.ok_or_else(not_found)?;
    // Someone else's key is invisible unless you are an administrator.
    if key.revoked_at.is_some()
        || !crate::auth::policy::may_manage_credentials_of(&current.user, key.owner_id)
    {
        return Err(not_found());
    }
    let ctx = ctx.map(|Extension(c)| c);
    if !api_keys::revoke(&state, &key, Actor::User(&current.user, ctx.as_ref())).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

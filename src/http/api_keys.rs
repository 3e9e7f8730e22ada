//! `/api/v1/api-keys`: create, list and revoke API keys. Managing keys takes a person (bearer
//! token or browser session); an API key cannot create, list or revoke keys (403).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{Access, ApiRouter, ErrorEnvelope, access};
use super::auth::no_store;
use super::extract::{Json, Path, Query};
use crate::audit::Actor;
use crate::auth::api_keys::{self, ApiKey, ApiKeyError, NewApiKey, Scope, Scopes};
use crate::auth::rbac::UserPrincipal;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::model::Role;
use crate::state::AppState;

pub fn routes() -> ApiRouter {
    access(
        Access::Login,
        ApiRouter::new()
            .routes(routes!(create, list))
            .routes(routes!(revoke)),
    )
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

/// Whether a key can be used.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

/// A key as listed: everything but the secret (which is not stored) and its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    /// The public part of the key (`kyr_<lookup_id>_…`).
    pub lookup_id: String,
    pub name: String,
    pub owner_id: Uuid,
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    /// Never, when null.
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub status: KeyStatus,
}

fn key_view(key: &ApiKey, now: DateTime<Utc>) -> KeyView {
    let status = match key.status(now) {
        "revoked" => KeyStatus::Revoked,
        "expired" => KeyStatus::Expired,
        _ => KeyStatus::Active,
    };
    KeyView {
        id: key.id,
        lookup_id: key.lookup_id.clone(),
        name: key.name.clone(),
        owner_id: key.owner_id,
        scopes: key.scopes,
        created_at: key.created_at,
        expires_at: key.expires_at,
        last_used_at: key.last_used_at,
        revoked_at: key.revoked_at,
        status,
    }
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct KeyCreate {
    /// A name to recognise the key by; trimmed, not blank, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// What the key may be used for (the `admin` scope: administrators only).
    #[schema(min_items = 1, max_items = 32)]
    pub scopes: Vec<Scope>,
    /// Days until the key expires (default: never).
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

/// A new key, with the key itself: shown this once, never stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: Uuid,
    /// The key, for `X-API-Key` (or `Authorization: Bearer`).
    pub key: String,
    pub lookup_id: String,
    pub name: String,
    pub owner_id: Uuid,
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Create an API key for the caller.
///
/// The key is in the answer, and only there.
#[utoipa::path(
    post, path = "/api/v1/api-keys", tag = "api-keys",
    request_body = KeyCreate,
    responses(
        (status = 201, description = "Created", body = CreatedKey,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 409, description = "Too many live keys", body = ErrorEnvelope),
    ),
)]
async fn create(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Json(body): Json<KeyCreate>,
) -> Result<Response, ApiError> {
    let name = api_keys::validate_name(&body.name).map_err(|e| {
        ApiError::validation(vec![FieldError::body("name", "value_error", e.to_string())])
    })?;
    let scopes: Scopes = body.scopes.into_iter().collect();
    let ctx = ctx.map(|Extension(c)| c);
    let created = api_keys::create(
        &state,
        &current.user,
        NewApiKey {
            name,
            scopes,
            expires_in_days: body.expires_in_days,
        },
        Actor::User(&current.user, ctx.as_ref()),
    )
    .await?;
    let key = &created.key;
    let body = CreatedKey {
        id: key.id,
        key: created.secret.key.clone(),
        lookup_id: key.lookup_id.clone(),
        name: key.name.clone(),
        owner_id: key.owner_id,
        scopes: key.scopes,
        created_at: key.created_at,
        expires_at: key.expires_at,
    };
    Ok(no_store(
        (StatusCode::CREATED, axum::Json(body)).into_response(),
    ))
}

/// Whose keys to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this user's keys (someone else's: administrators only). Default: the caller's.
    owner_id: Option<Uuid>,
    /// Every key (administrators only): `true`/`false` or `1`/`0`.
    #[param(value_type = Option<bool>)]
    all: Option<String>,
}

fn query_error(field: &str, kind: &'static str, msg: &str) -> ApiError {
    ApiError::validation(vec![FieldError::query(field, kind, msg)])
}

/// The keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

/// List API keys.
///
/// The caller's own; a user's, or every key, for administrators. Revoked and expired keys
/// included.
#[utoipa::path(
    get, path = "/api/v1/api-keys", tag = "api-keys",
    params(ListQuery),
    responses(
        (status = 200, description = "The keys", body = KeyList),
    ),
)]
async fn list(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<KeyList>, ApiError> {
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
    let owner = match (all, q.owner_id) {
        (true, _) if !is_admin => {
            return Err(ApiError::forbidden(
                "Only administrators can list every API key",
            ));
        }
        (true, _) => None,
        (false, Some(id)) => {
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
    let items = api_keys::list(&state, owner)
        .await?
        .iter()
        .map(|key| key_view(key, now))
        .collect();
    Ok(axum::Json(KeyList { items }))
}

/// Revoke an API key.
///
/// The caller's own; anyone's for administrators. It stops working at once.
#[utoipa::path(
    delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "the key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such live key, or not the caller's", body = ErrorEnvelope),
    ),
)]
async fn revoke(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found("API key not found");
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

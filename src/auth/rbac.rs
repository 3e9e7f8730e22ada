//! Role checks as extractors: the three roles of the original service and their hierarchy
//! (user < moderator < admin), and exact-role checks. API keys are further limited by their
//! scopes (`require_scope`), and some endpoints are for people only (`UserPrincipal`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::json;

use super::api_keys::Scope;
use super::principal::{AuthMethod, CurrentUser};
use crate::audit::AuditEvent;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::model::Role;
use crate::state::AppState;

/// Refuses (403, audited) unless the caller's role is at least `required`.
pub fn require_at_least(
    state: &AppState,
    parts: &Parts,
    current: &CurrentUser,
    required: Role,
) -> Result<(), ApiError> {
    if current.user.role >= required {
        return Ok(());
    }
    state.audit.record(
        AuditEvent::new("rbac.denied", "denied")
            .context(parts.extensions.get::<RequestContext>())
            .user(&current.user)
            .details(
                json!({"required": required, "role": current.user.role, "path": parts.uri.path()}),
            ),
    );
    Err(ApiError::forbidden(format!(
        "Access denied. Required role: {required}, user role: {}",
        current.user.role
    )))
}

/// Refuses (403, audited) unless the caller's role is exactly `required`: a higher role does not
/// do either.
pub fn require_exact(
    state: &AppState,
    parts: &Parts,
    current: &CurrentUser,
    required: Role,
) -> Result<(), ApiError> {
    if current.user.role == required {
        return Ok(());
    }
    state.audit.record(
        AuditEvent::new("rbac.denied", "denied")
            .context(parts.extensions.get::<RequestContext>())
            .user(&current.user)
            .details(json!({
                "required_exact": required,
                "role": current.user.role,
                "path": parts.uri.path(),
            })),
    );
    Err(ApiError::forbidden(format!(
        "Access denied. Required exact role: {required}, user role: {}",
        current.user.role
    )))
}

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub CurrentUser);

/// Operational views (configuration, metrics, monitoring): anyone in `ENVIRONMENT=local`, an
/// [`Admin`] elsewhere. Holds the administrator when one was required.
#[derive(Debug, Clone)]
pub struct AdminOutsideLocal(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for AdminOutsideLocal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.settings().environment.is_local() {
            return Ok(AdminOutsideLocal(None));
        }
        let Admin(current) = Admin::from_request_parts(parts, state).await?;
        Ok(AdminOutsideLocal(Some(current)))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        require_at_least(state, parts, &current, Role::Admin)?;
        // An API key acts as an administrator only with the `admin` scope.
        require_scope_audited(state, parts, &current, Scope::Admin)?;
        Ok(Admin(current))
    }
}

/// Refuses (403) unless the caller may act with `scope`: an API key must carry the scope, and
/// every principal's role (for a key, its owner's current role) must reach the scope's minimum.
/// People (bearer token, session) are limited by their role only.
pub fn require_scope(current: &CurrentUser, scope: Scope) -> Result<(), ApiError> {
    if let AuthMethod::ApiKey { scopes, .. } = current.method
        && !scopes.contains(scope)
    {
        return Err(ApiError::forbidden(format!(
            "Access denied. The API key lacks the {scope} scope"
        )));
    }
    let required = scope.min_role();
    if current.user.role < required {
        return Err(ApiError::forbidden(format!(
            "Access denied. Required role: {required}, user role: {}",
            current.user.role
        )));
    }
    Ok(())
}

/// [`require_scope`] in an extractor: refusals are audited as `rbac.denied`.
pub fn require_scope_audited(
    state: &AppState,
    parts: &Parts,
    current: &CurrentUser,
    scope: Scope,
) -> Result<(), ApiError> {
    require_scope(current, scope).inspect_err(|_| {
        state.audit.record(
            AuditEvent::new("rbac.denied", "denied")
                .context(parts.extensions.get::<RequestContext>())
                .user(&current.user)
                .details(json!({
                    "required_scope": scope,
                    "role": current.user.role,
                    "api_key_id": match current.method {
                        AuthMethod::ApiKey { key_id, .. } => Some(key_id),
                        _ => None,
                    },
                    "path": parts.uri.path(),
                })),
        );
    })
}

/// A person, authenticated by bearer token or browser session — not an API key. For managing
/// credentials and the account itself; an API key gets 403 (audited).
#[derive(Debug, Clone)]
pub struct UserPrincipal(pub CurrentUser);

impl FromRequestParts<AppState> for UserPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        if let AuthMethod::ApiKey { key_id, .. } = current.method {
            state.audit.record(
                AuditEvent::new("rbac.denied", "denied")
                    .context(parts.extensions.get::<RequestContext>())
                    .user(&current.user)
                    .details(json!({
                        "required": "user_principal",
                        "api_key_id": key_id,
                        "path": parts.uri.path(),
                    })),
            );
            return Err(ApiError::forbidden(
                "Access denied. This endpoint requires a user login, not an API key",
            ));
        }
        Ok(UserPrincipal(current))
    }
}

/// A scope named by a type, so that a handler's signature says what it needs:
/// `caller: Authorized<JobsWrite>`.
pub trait ScopeMarker: Send + Sync + 'static {
    const SCOPE: Scope;
}

macro_rules! scope_markers {
    ($($(#[$doc:meta])* $name:ident => $scope:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl ScopeMarker for $name {
            const SCOPE: Scope = $scope;
        }
    )*};
}

scope_markers! {
    /// `jobs:read`: read jobs and tasks.
    JobsRead => Scope::JobsRead;
    /// `jobs:write`: submit, change and delete jobs and tasks.
    JobsWrite => Scope::JobsWrite;
    /// `jobs:claim`: claim jobs and report on them (agents).
    JobsClaim => Scope::JobsClaim;
    /// `events:read`: read event streams.
    EventsRead => Scope::EventsRead;
    /// `events:write`: append events.
    EventsWrite => Scope::EventsWrite;
    /// `admin`: administration.
    AdminScope => Scope::Admin;
}

/// An authenticated caller that may act with the scope `S` ([`require_scope`], refusals audited
/// as `rbac.denied`): 401 without credentials, 403 without the scope or the role it needs.
/// Dereferences to the [`CurrentUser`].
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    pub current: CurrentUser,
    scope: std::marker::PhantomData<S>,
}

impl<S> std::ops::Deref for Authorized<S> {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.current
    }
}

impl<S: ScopeMarker> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        require_scope_audited(state, parts, &current, S::SCOPE)?;
        Ok(Authorized {
            current,
            scope: std::marker::PhantomData,
        })
    }
}

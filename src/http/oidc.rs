//! Sign-in with an identity provider (`auth::oidc`): the original service's routes
//! (`GET /auth/oauth2/{provider}`, `POST /auth/oauth2/{provider}/callback`) with their answers'
//! shapes, linking (`POST /auth/oauth2/{provider}/link`), the caller's identities
//! (`GET/DELETE /auth/identities`), the configured providers for the console's buttons
//! (`GET /auth/providers`) and the administrators' links
//! (`/api/v1/admin/users/{id}/identities`).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::admin::target;
use super::api::{Access, ApiRouter, ErrorEnvelope, access, login_type};
use super::auth::{mfa_challenge_response, no_store};
use super::extract::{Json, Path, Query};
use super::sessions::{SessionUser, session_response};
use crate::auth::accounts;
use crate::auth::mfa::LoginKind;
use crate::auth::oidc::{
    self, BINDING_COOKIE, BINDING_COOKIE_HOST, Callback, IdentityRow, Mode, OidcError, Outcome,
};
use crate::auth::principal::CurrentUser;
use crate::auth::rbac::{Admin, UserPrincipal};
use crate::config::identity::ProviderKind;
use crate::context::RequestContext;
use crate::cookies;
use crate::error::ApiError;
use crate::security::rate_limit::limited_error;
use crate::state::AppState;

/// The public routes: the providers, the start of a sign-in.
pub fn routes() -> ApiRouter {
    ApiRouter::new()
        .merge(access(
            Access::Public,
            ApiRouter::new().routes(routes!(providers)),
        ))
        .merge(access(
            Access::Public,
            login_type(ApiRouter::new().routes(routes!(authorize))),
        ))
        .merge(access(
            Access::Login,
            ApiRouter::new()
                .routes(routes!(begin_link))
                .routes(routes!(list_identities))
                .routes(routes!(unlink_identity)),
        ))
        .merge(access(
            Access::Admin,
            ApiRouter::new()
                .routes(routes!(admin_list, admin_link))
                .routes(routes!(admin_unlink)),
        ))
}

/// The callback: a browser comes back from the provider with no CSRF token yet; the state
/// bound to the browser's cookie is the request forgery defence (RFC 6749 §10.12), and the
/// origin is checked (`csrf::origin_guard`, attached in `src/http/mod.rs`).
pub fn csrf_exempt_routes() -> ApiRouter {
    access(
        Access::Public,
        login_type(
            ApiRouter::new()
                .routes(routes!(callback))
                .routes(routes!(callback_any)),
        ),
    )
}

impl From<OidcError> for ApiError {
    fn from(e: OidcError) -> Self {
        let message = e.to_string();
        match e {
            OidcError::UnknownProvider(_) | OidcError::IdentityNotFound => {
                ApiError::not_found(message)
            }
            OidcError::RedirectUriNotAllowed
            | OidcError::InvalidState
            | OidcError::ProviderRejected(_) => ApiError::bad_request(message),
            OidcError::ProviderUnavailable(_) => ApiError::new(StatusCode::BAD_GATEWAY, message),
            OidcError::NoAccount
            | OidcError::EmailNotVerified
            | OidcError::DomainNotAllowed
            | OidcError::AccountRefused => ApiError::forbidden(message),
            OidcError::AccountExists | OidcError::LinkedElsewhere | OidcError::LastSignInMethod => {
                ApiError::conflict(message)
            }
            OidcError::Limited(q) => limited_error(&q),
            OidcError::PasswordRequired => ApiError::field("password", "missing", message),
            OidcError::Login(e) => e.into(),
            OidcError::Account(e) => e.into(),
            OidcError::Store(e) => e.into(),
        }
    }
}

/// A configured identity provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    /// The `{provider}` of the routes.
    pub name: String,
    /// The name to show on a button.
    pub display_name: String,
    /// `oidc` (OpenID Connect) or `oauth2` (GitHub).
    pub protocol: String,
}

/// The configured identity providers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

/// The identity providers people can sign in with.
#[utoipa::path(
    get, path = "/auth/providers", tag = "auth",
    responses((status = 200, description = "The configured providers", body = ProviderList)),
)]
async fn providers(State(state): State<AppState>) -> axum::Json<ProviderList> {
    axum::Json(ProviderList {
        providers: state
            .oidc
            .list()
            .iter()
            .map(|p| ProviderView {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                protocol: match p.kind {
                    ProviderKind::GitHub { .. } => "oauth2".into(),
                    _ => "oidc".into(),
                },
            })
            .collect(),
    })
}

/// The answer of the start of a sign-in (the original service's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationStart {
    /// Where to send the browser: the provider's authorization endpoint with `client_id`,
    /// `redirect_uri`, `scope`, `state`, `nonce` and the PKCE `code_challenge` (S256).
    pub authorization_url: String,
    /// The handle the provider sends back with the code; opaque, single use, valid 10 minutes,
    /// only for the browser that received the binding cookie with it.
    pub state: String,
}

/// What the sign-in is for.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// Bearer tokens (the original service's answer).
    #[default]
    Bearer,
    /// A browser session (cookie and CSRF token).
    Session,
}

/// The start of a sign-in.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuthorizeQuery {
    /// Where the provider sends the browser back: exactly one of `OAUTH2_REDIRECT_URIS`.
    #[param(max_length = 2048)]
    pub redirect_uri: String,
    /// `bearer` (default) or `session`.
    #[param(inline)]
    pub mode: Option<StartMode>,
}

/// The provider name of a path, as configured (lower case).
#[derive(Debug, Deserialize, IntoParams)]
pub struct ProviderPath {
    /// The provider's name (`GET /auth/providers`).
    pub provider: String,
}

/// The binding cookie's name: `__Host-` over HTTPS.
fn binding_name(state: &AppState) -> &'static str {
    if state.settings().enforce_https {
        BINDING_COOKIE_HOST
    } else {
        BINDING_COOKIE
    }
}

/// The browser's binding cookie: the one it has, or a new one to set.
fn binding(state: &AppState, headers: &HeaderMap) -> (String, bool) {
    match cookies::get(headers, binding_name(state)) {
        Some(v) if (20..=100).contains(&v.len()) => (v, false),
        _ => (oidc::new_binding(), true),
    }
}

fn binding_cookie(state: &AppState, value: &str) -> Cookie<'static> {
    let secure = state.settings().enforce_https;
    Cookie::build((binding_name(state), value.to_owned()))
        // `__Host-` needs path `/`; without HTTPS the cookie stays under /auth/oauth2.
        .path(if secure { "/" } else { "/auth/oauth2" })
        .http_only(true)
        // Lax: it must come back on the provider's top-level redirect to the console.
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(oidc::STATE_LIFETIME_SECS))
        .build()
}

fn start_response(state: &AppState, begun: oidc::Begun, binding: &str) -> Response {
    let mut response = no_store(
        axum::Json(AuthorizationStart {
            authorization_url: begun.authorization_url,
            state: begun.state,
        })
        .into_response(),
    );
    // Set again each time: its lifetime runs from the latest sign-in it binds.
    cookies::set(&mut response, &binding_cookie(state, binding));
    response
}

/// Start a sign-in with an identity provider.
///
/// Answers the provider's authorization URL and the `state`, and sets the browser-binding
/// cookie (`kyros_oauth`, HttpOnly) that the callback must bring back.
#[utoipa::path(
    get, path = "/auth/oauth2/{provider}", tag = "auth",
    params(ProviderPath, AuthorizeQuery),
    responses(
        (status = 200, description = "Where to send the browser", body = AuthorizationStart,
         headers(("Set-Cookie" = String, description = "the browser-binding cookie"),
                 ("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "redirect_uri is not allowed", body = ErrorEnvelope),
        (status = 404, description = "No such provider", body = ErrorEnvelope),
        (status = 502, description = "The provider could not be reached", body = ErrorEnvelope),
    ),
)]
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(path): Path<ProviderPath>,
    Query(query): Query<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let (binding, _) = binding(&state, &headers);
    let mode = match query.mode.unwrap_or_default() {
        StartMode::Bearer => Mode::Bearer,
        StartMode::Session => Mode::Session,
    };
    let begun = oidc::begin(
        &state,
        &path.provider,
        &query.redirect_uri,
        mode,
        None,
        &binding,
    )
    .await?;
    Ok(start_response(&state, begun, &binding))
}

/// The start of a link.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkRequest {
    /// Where the provider sends the browser back: exactly one of `OAUTH2_REDIRECT_URIS`.
    #[schema(max_length = 2048)]
    pub redirect_uri: String,
    /// The account's password, proved again (required when the account has one).
    #[schema(max_length = 1024, format = Password)]
    pub password: Option<String>,
}

/// Start linking an identity of this provider to the signed-in account.
///
/// The account's password is proved again (when it has one). Same answer as `GET
/// /auth/oauth2/{provider}`; the callback, made by the same signed-in account, then links the
/// identity instead of signing in.
#[utoipa::path(
    post, path = "/auth/oauth2/{provider}/link", tag = "auth",
    params(ProviderPath),
    request_body = LinkRequest,
    responses(
        (status = 200, description = "Where to send the browser", body = AuthorizationStart,
         headers(("Set-Cookie" = String, description = "the browser-binding cookie"))),
        (status = 400, description = "redirect_uri is not allowed", body = ErrorEnvelope),
        (status = 403, description = "The password is incorrect", body = ErrorEnvelope),
        (status = 404, description = "No such provider", body = ErrorEnvelope),
    ),
)]
async fn begin_link(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Path(path): Path<ProviderPath>,
    Json(body): Json<LinkRequest>,
) -> Result<Response, ApiError> {
    if let Some(e) = body
        .password
        .as_deref()
        .and_then(|p| super::auth::password_bytes_error("password", p))
    {
        return Err(ApiError::validation(vec![e]));
    }
    let (binding, _) = binding(&state, &headers);
    let ctx = ctx.map(|Extension(c)| c);
    let begun = oidc::begin_link(
        &state,
        ctx.as_ref(),
        &current.user,
        body.password.map(secrecy::SecretString::from),
        &path.provider,
        &body.redirect_uri,
        &binding,
    )
    .await?;
    Ok(start_response(&state, begun, &binding))
}

/// The provider's answer, in the query (as the original service took it) or in a JSON body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
pub struct CallbackParams {
    /// The authorization code.
    #[param(max_length = 4096)]
    #[schema(max_length = 4096)]
    pub code: Option<String>,
    /// The `state` of the start of the sign-in.
    #[param(max_length = 200)]
    #[schema(max_length = 200)]
    pub state: Option<String>,
    /// Optional: when given, it must be the start's `redirect_uri`.
    #[param(max_length = 2048)]
    #[schema(max_length = 2048)]
    pub redirect_uri: Option<String>,
    /// Optional: the `iss` the provider sent back (RFC 9207); when given, it must be the
    /// provider's issuer.
    #[param(max_length = 2048)]
    #[schema(max_length = 2048)]
    pub iss: Option<String>,
}

/// The signed-in user, in the token answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthTokens {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single use, at `POST /auth/refresh`.
    pub refresh_token: String,
    pub user: SessionUser,
}

/// A linked identity.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub id: Uuid,
    /// The provider's name in this service (`GET /auth/providers`).
    pub provider: String,
    /// The provider's issuer.
    pub issuer: String,
    /// The provider's id of the person.
    pub subject: String,
    /// The e-mail the provider gave at the last sign-in (display only).
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<&IdentityRow> for IdentityView {
    fn from(r: &IdentityRow) -> Self {
        IdentityView {
            id: r.id,
            provider: r.provider.clone(),
            issuer: r.issuer.clone(),
            subject: r.subject.clone(),
            email: r.email.clone(),
            created_at: r.created_at,
            last_login_at: r.last_login_at,
        }
    }
}

/// The answer of a callback that linked an identity.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedAnswer {
    /// Always `true`.
    pub linked: bool,
    pub identity: IdentityView,
}

/// The answer of a callback: what the start asked for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackAnswer {
    Tokens(OAuthTokens),
    Session(super::sessions::SessionLogin),
    MfaRequired(super::auth::MfaChallenge),
    Linked(LinkedAnswer),
}

/// Complete a sign-in with an identity provider.
///
/// Takes `code` and `state` in the query (as the original service did) or in a JSON body. The
/// state is single use, valid 10 minutes and only with the browser-binding cookie of its start.
/// The answer is what the start asked for: tokens with the user (the original service's body),
/// a browser session (as `POST /auth/session`), a second-factor challenge for an account with
/// TOTP, or, for a link, the linked identity.
#[utoipa::path(
    post, path = "/auth/oauth2/{provider}/callback", tag = "auth",
    params(ProviderPath, CallbackParams),
    request_body(content = Option<CallbackParams>, description = "code and state, when not in the query"),
    responses(
        (status = 200, description = "Signed in (tokens or session), a second factor is needed, or linked",
         body = CallbackAnswer,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Invalid or expired state, or the provider refused", body = ErrorEnvelope),
        (status = 403, description = "No account for this identity, or the account cannot sign in", body = ErrorEnvelope),
        (status = 409, description = "The e-mail belongs to another account, or the identity is linked elsewhere", body = ErrorEnvelope),
        (status = 502, description = "The provider could not be reached", body = ErrorEnvelope),
    ),
)]
async fn callback(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Path(path): Path<ProviderPath>,
    Query(query): Query<CallbackParams>,
    body: Option<Json<CallbackParams>>,
) -> Result<Response, ApiError> {
    let ctx = ctx.map(|Extension(c)| c);
    complete(
        &state,
        current,
        ctx,
        &headers,
        Some(&path.provider),
        query,
        body,
    )
    .await
}

/// Complete a sign-in with an identity provider, the provider named by the state.
///
/// As `POST /auth/oauth2/{provider}/callback`, for a client that does not keep the provider's
/// name between the start and the callback (the console: its `redirect_uri` is one address for
/// every provider).
#[utoipa::path(
    post, path = "/auth/oauth2/callback", tag = "auth",
    params(CallbackParams),
    request_body(content = Option<CallbackParams>, description = "code and state, when not in the query"),
    responses(
        (status = 200, description = "Signed in (tokens or session), a second factor is needed, or linked",
         body = CallbackAnswer,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Invalid or expired state, or the provider refused", body = ErrorEnvelope),
        (status = 403, description = "No account for this identity, or the account cannot sign in", body = ErrorEnvelope),
        (status = 409, description = "The e-mail belongs to another account, or the identity is linked elsewhere", body = ErrorEnvelope),
        (status = 502, description = "The provider could not be reached", body = ErrorEnvelope),
    ),
)]
async fn callback_any(
    State(state): State<AppState>,
    current: Option<CurrentUser>,
    ctx: Option<Extension<RequestContext>>,
    headers: HeaderMap,
    Query(query): Query<CallbackParams>,
    body: Option<Json<CallbackParams>>,
) -> Result<Response, ApiError> {
    let ctx = ctx.map(|Extension(c)| c);
    complete(&state, current, ctx, &headers, None, query, body).await
}

async fn complete(
    state: &AppState,
    current: Option<CurrentUser>,
    ctx: Option<RequestContext>,
    headers: &HeaderMap,
    provider: Option<&str>,
    query: CallbackParams,
    body: Option<Json<CallbackParams>>,
) -> Result<Response, ApiError> {
    let state = state.clone();
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let code = query.code.or(body.code).unwrap_or_default();
    let state_param = query.state.or(body.state).unwrap_or_default();
    let redirect_uri = query.redirect_uri.or(body.redirect_uri);
    let iss = query.iss.or(body.iss);
    if code.is_empty() || state_param.is_empty() {
        return Err(ApiError::bad_request("code and state are required"));
    }
    let binding = cookies::get(headers, binding_name(&state));
    let caller = current.as_ref().map(|c| c.user.id);
    let outcome = oidc::callback(
        &state,
        ctx.as_ref(),
        provider,
        Callback {
            code: &code,
            state: &state_param,
            binding: binding.as_deref(),
            redirect_uri: redirect_uri.as_deref(),
            iss: iss.as_deref(),
            caller,
        },
    )
    .await?;
    match outcome {
        Outcome::SecondFactor { user, mode } => {
            let kind = if mode == Mode::Session {
                LoginKind::Session
            } else {
                LoginKind::Bearer
            };
            mfa_challenge_response(&state, &user, kind).await
        }
        Outcome::SignedIn {
            user,
            mode: Mode::Session,
        } => session_response(&state, current, ctx.as_ref(), headers, &user).await,
        Outcome::SignedIn { user, .. } => {
            let issued = state
                .live()
                .tokens
                .issue(&user, state.clock.now())
                .map_err(ApiError::internal)?;
            let refresh = crate::auth::refresh::issue(&state, &user, None).await?;
            Ok(no_store(
                axum::Json(OAuthTokens {
                    access_token: issued.token,
                    token_type: "bearer".into(),
                    expires_in: issued.expires_in,
                    refresh_token: refresh.token,
                    user: SessionUser {
                        id: user.id,
                        username: user.username.clone(),
                        email: user.email.clone(),
                        role: user.role,
                    },
                })
                .into_response(),
            ))
        }
        Outcome::Linked { identity, .. } => Ok(no_store(
            axum::Json(LinkedAnswer {
                linked: true,
                identity: IdentityView::from(&identity),
            })
            .into_response(),
        )),
    }
}

/// Linked identities.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityList {
    pub identities: Vec<IdentityView>,
    /// Whether the account has a password (an account without one keeps its last identity).
    pub has_password: bool,
}

/// The identities linked to the caller's account.
#[utoipa::path(
    get, path = "/auth/identities", tag = "auth",
    responses((status = 200, description = "The caller's linked identities", body = IdentityList)),
)]
async fn list_identities(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
) -> Result<axum::Json<IdentityList>, ApiError> {
    let rows = oidc::list(&state, &current.user).await?;
    Ok(axum::Json(IdentityList {
        identities: rows.iter().map(IdentityView::from).collect(),
        has_password: accounts::has_password(&current.user),
    }))
}

/// An identity of a path.
#[derive(Debug, Deserialize, IntoParams)]
pub struct IdentityPath {
    /// The identity's id.
    pub id: Uuid,
}

/// Unlink one of the caller's identities.
///
/// Refused (409) for the last identity of an account without a password.
#[utoipa::path(
    delete, path = "/auth/identities/{id}", tag = "auth",
    params(IdentityPath),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 404, description = "No such identity of this account", body = ErrorEnvelope),
        (status = 409, description = "The account's only way to sign in", body = ErrorEnvelope),
    ),
)]
async fn unlink_identity(
    State(state): State<AppState>,
    UserPrincipal(current): UserPrincipal,
    ctx: Option<Extension<RequestContext>>,
    Path(path): Path<IdentityPath>,
) -> Result<StatusCode, ApiError> {
    let ctx = ctx.map(|Extension(c)| c);
    oidc::unlink(&state, ctx.as_ref(), &current.user, &current.user, path.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user of a path.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UserPath {
    /// The user id.
    pub id: Uuid,
}

/// The identities linked to a user's account.
#[utoipa::path(
    get, path = "/api/v1/admin/users/{id}/identities", tag = "admin",
    params(UserPath),
    responses(
        (status = 200, description = "The user's linked identities", body = IdentityList),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ),
)]
async fn admin_list(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(path): Path<UserPath>,
) -> Result<axum::Json<IdentityList>, ApiError> {
    let user = target(&state, path.id).await?;
    let rows = oidc::list(&state, &user).await?;
    Ok(axum::Json(IdentityList {
        identities: rows.iter().map(IdentityView::from).collect(),
        has_password: accounts::has_password(&user),
    }))
}

/// An identity an administrator links.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AdminLinkRequest {
    /// The provider's name (`GET /auth/providers`).
    #[schema(max_length = 32)]
    pub provider: String,
    /// The provider's id of the person (`sub`; GitHub: the numeric user id).
    #[schema(min_length = 1, max_length = 255)]
    pub subject: String,
}

/// Link an identity to a user's account (audited as `auth.oidc.link`).
#[utoipa::path(
    post, path = "/api/v1/admin/users/{id}/identities", tag = "admin",
    params(UserPath),
    request_body = AdminLinkRequest,
    responses(
        (status = 201, description = "Linked", body = IdentityView),
        (status = 404, description = "No such user or provider", body = ErrorEnvelope),
        (status = 409, description = "The identity is linked to another account", body = ErrorEnvelope),
    ),
)]
async fn admin_link(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(path): Path<UserPath>,
    Json(body): Json<AdminLinkRequest>,
) -> Result<(StatusCode, axum::Json<IdentityView>), ApiError> {
    let user = target(&state, path.id).await?;
    if body.subject.trim().is_empty() || body.subject.len() > 255 {
        return Err(ApiError::field(
            "subject",
            "value_error",
            "subject must have 1 to 255 characters",
        ));
    }
    let ctx = ctx.map(|Extension(c)| c);
    let row = oidc::admin_link(
        &state,
        ctx.as_ref(),
        &admin.user,
        &user,
        &body.provider,
        &body.subject,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(IdentityView::from(&row))))
}

/// A user's identity of a path.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UserIdentityPath {
    /// The user id.
    pub id: Uuid,
    /// The identity's id.
    pub identity_id: Uuid,
}

/// Unlink an identity from a user's account (audited as `auth.oidc.unlink`).
#[utoipa::path(
    delete, path = "/api/v1/admin/users/{id}/identities/{identity_id}", tag = "admin",
    params(UserIdentityPath),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 404, description = "No such user or identity", body = ErrorEnvelope),
        (status = 409, description = "The account's only way to sign in", body = ErrorEnvelope),
    ),
)]
async fn admin_unlink(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ctx: Option<Extension<RequestContext>>,
    Path(path): Path<UserIdentityPath>,
) -> Result<StatusCode, ApiError> {
    let user = target(&state, path.id).await?;
    let ctx = ctx.map(|Extension(c)| c);
    oidc::unlink(&state, ctx.as_ref(), &admin.user, &user, path.identity_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

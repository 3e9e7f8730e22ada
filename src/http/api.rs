//! The API contract, derived from the code: every route is declared with utoipa-axum's
//! [`OpenApiRouter`] and `routes!` on a handler carrying `#[utoipa::path]`, so a route cannot exist
//! without its operation in the document at `GET /api/v1/openapi.json` (clippy's
//! `disallowed-methods` refuses the undocumented `route`). Request and response bodies are Rust
//! types deriving `ToSchema`; the same schemas validate request bodies
//! ([`super::extract::Json`]).
//!
//! Route policy is declared where routes are declared, by wrapping a group of routes:
//!
//! * [`access`] — who may call (public, a login, any credential, an agent key, an administrator…):
//!   it writes the operation's `security`, its 401/403 answers and an `Authentication:` line, and
//!   for the groups that need a caller it refuses an anonymous request (401) before the handler;
//! * [`login_type`] — the stricter per-address budget of the login-type endpoints
//!   (`x-rate-limit-policy: login` on the operation; the limiter reads the set of such operations
//!   from the document, [`LoginRoutes`]);
//! * the CSRF policy — the router of `super::router` puts the browser-posted, token-less routes
//!   (session login, CSP reports) in their own group with the origin-only guard.
//!
//! [`finish`] then completes every operation the same way: the error envelope on every error
//! answer (`default` included), 422 where there is input, 429 with `Retry-After`, and the
//! `RateLimit-*` headers on every answer.

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, Ref, RefOr, Response as DocResponse, ResponseBuilder,
    SecurityRequirement,
};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::principal::CurrentUser;
use crate::error::ApiError;
pub use crate::security::rate_limit::LoginRoutes;
use crate::state::AppState;

/// A documented router: every route in it is an operation of the document.
pub type ApiRouter = OpenApiRouter<AppState>;

/// The error envelope of every error answer (`crate::error`): the original service's `error`
/// object plus the `detail` its framework errors carried.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorInfo,
    /// The message, or for 422 the list of field errors.
    pub detail: Detail,
}

/// The `error` object of [`ErrorEnvelope`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorInfo {
    /// Error class: `validation_error`, `http_exception` or `internal_server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status code.
    pub code: u16,
    /// A human-readable message (never a submitted value, never internal text).
    pub message: String,
    /// The request path.
    pub path: String,
    /// The request method.
    pub method: String,
}

/// `detail`: a message, or the field errors of a 422.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Detail {
    Message(String),
    Fields(Vec<FieldErrorDoc>),
}

/// One field error of a 422, in the original's (pydantic's) format.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDoc {
    /// Error type, e.g. `missing`, `string_too_long`, `int_parsing`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where: `body`, `query`, `path` or `header`, then the field (and index) names.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub loc: Vec<serde_json::Value>,
    /// What is wrong, without the submitted value.
    pub msg: String,
}

/// A `{"message": …}` acknowledgement, the original's answer to deletions and revocations.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

impl Message {
    pub fn new(message: impl Into<String>) -> axum::Json<Message> {
        axum::Json(Message {
            message: message.into(),
        })
    }
}

/// The document's fixed parts: title, version, the shared schemas and the security schemes.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kyros Orchestrator"),
    components(schemas(ErrorEnvelope, ErrorInfo, Detail, FieldErrorDoc, Message)),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// Name of the bearer (JWT access token) scheme.
pub const BEARER: &str = "bearerAuth";
/// Name of the `X-API-Key` scheme.
pub const API_KEY: &str = "apiKey";
/// Name of the session cookie scheme.
pub const SESSION: &str = "sessionCookie";
/// Name of the CSRF header scheme (with the session cookie on unsafe methods).
pub const CSRF: &str = "csrfToken";
/// Name of the metrics scraper's token scheme.
pub const METRICS_TOKEN: &str = "metricsToken";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.description = Some(env!("CARGO_PKG_DESCRIPTION").into());
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS512 access token from POST /auth/login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "kyr_… key from POST /api/v1/api-keys (also accepted as Authorization: Bearer)",
            ))),
        );
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "kyros_session",
                "browser session from POST /auth/session",
            ))),
        );
        components.add_security_scheme(
            CSRF,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "CSRF token (GET /auth/csrf), required with the session cookie on unsafe methods",
            ))),
        );
        components.add_security_scheme(
            METRICS_TOKEN,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the scraper's KYROS_METRICS_TOKEN"))
                    .build(),
            ),
        );
    }
}

/// Who may call the operations of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential needed.
    Public,
    /// A person's login: bearer JWT or browser session (with the CSRF token on unsafe methods).
    Login,
    /// A login or an API key (with the scope the handler's `Authorized<…>` names).
    Any,
    /// An agent's API key (scope `jobs:claim`).
    Agent,
    /// An administrator: login, or an API key with the `admin` scope.
    Admin,
    /// Anyone in `ENVIRONMENT=local`, an administrator elsewhere.
    AdminOutsideLocal,
    /// The Prometheus scraper's bearer token (`KYROS_METRICS_TOKEN`), or an administrator.
    MetricsToken,
    /// The WebSocket handshake: a login or an API key, or instead a `?ticket=` from
    /// `POST /auth/ws-ticket` (or the original `?token=`) — checked by the handler.
    Ticket,
}

impl Access {
    fn describe(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Login => "a person's login (bearer JWT, or session cookie + X-CSRF-Token)",
            Access::Any => "bearer JWT, API key (X-API-Key) or session cookie + X-CSRF-Token",
            Access::Agent => "an agent's API key (scope jobs:claim)",
            Access::Admin => "an administrator",
            Access::AdminOutsideLocal => "public in ENVIRONMENT=local, an administrator elsewhere",
            Access::MetricsToken => {
                "public in ENVIRONMENT=local; elsewhere the KYROS_METRICS_TOKEN bearer token, or \
                 an administrator"
            }
            Access::Ticket => {
                "bearer JWT, API key or session cookie, or ?ticket= from POST /auth/ws-ticket \
                 (or the original ?token=)"
            }
        }
    }

    fn requirements(self, unsafe_method: bool) -> Vec<SecurityRequirement> {
        let none: Vec<String> = Vec::new();
        let bearer = SecurityRequirement::new(BEARER, none.clone());
        let api_key = SecurityRequirement::new(API_KEY, none.clone());
        let session = if unsafe_method {
            SecurityRequirement::new(SESSION, none.clone()).add(CSRF, none.clone())
        } else {
            SecurityRequirement::new(SESSION, none.clone())
        };
        match self {
            Access::Public => Vec::new(),
            Access::Login => vec![bearer, session],
            Access::Any | Access::Admin => vec![bearer, api_key, session],
            Access::Agent => vec![api_key],
            Access::AdminOutsideLocal => {
                vec![SecurityRequirement::default(), bearer, api_key, session]
            }
            Access::Ticket => vec![bearer, api_key, session, SecurityRequirement::default()],
            // Public in `ENVIRONMENT=local`, like the other operational views.
            Access::MetricsToken => vec![
                SecurityRequirement::default(),
                SecurityRequirement::new(METRICS_TOKEN, none),
                bearer,
                api_key,
                session,
            ],
        }
    }

    /// Whether an anonymous request is refused before the handler.
    fn needs_caller(self) -> bool {
        matches!(
            self,
            Access::Login | Access::Any | Access::Agent | Access::Admin
        )
    }
}

/// Every operation of `doc` with its method.
fn operations_mut(doc: &mut Document) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
            (HttpMethod::Patch, item.patch.as_mut()),
            (HttpMethod::Head, item.head.as_mut()),
            (HttpMethod::Options, item.options.as_mut()),
        ]
        .into_iter()
        .filter_map(|(m, op)| op.map(|op| (m, op)))
    })
}

fn error_response(description: &str) -> RefOr<DocResponse> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .into()
}

fn add_response(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error_response(description));
}

/// The operations of `router` are for `access`: documented (security, 401/403, a line in the
/// description) and, where a caller is needed, an anonymous request is refused with 401 before
/// the handler runs. Finer checks (scope, role, a person rather than a key) are the handler's
/// extractors (`Authorized<S>`, `Admin`, `UserPrincipal`).
pub fn access(access: Access, mut router: ApiRouter) -> ApiRouter {
    for (method, op) in operations_mut(router.get_openapi_mut()) {
        let unsafe_method = !matches!(method, HttpMethod::Get | HttpMethod::Head);
        let line = format!("Authentication: {}.", access.describe());
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
            _ => line,
        });
        if access != Access::Public {
            op.security = Some(access.requirements(unsafe_method));
            let unauthenticated = match access {
                Access::AdminOutsideLocal | Access::MetricsToken => {
                    "Not authenticated (outside ENVIRONMENT=local)"
                }
                _ => "Not authenticated",
            };
            add_response(op, "401", unauthenticated);
            add_response(op, "403", "Not allowed");
        }
    }
    if access.needs_caller() {
        router = router.route_layer(from_fn(require_caller));
    }
    router
}

async fn require_caller(request: Request, next: Next) -> Response {
    if request.extensions().get::<CurrentUser>().is_none() {
        return ApiError::invalid_credentials().into_response();
    }
    next.run(request).await
}

/// The OpenAPI extension naming an operation's rate-limit policy.
pub const RATE_LIMIT_POLICY: &str = "x-rate-limit-policy";

/// The operations of `router` are login-type: besides the caller's budget they count against
/// the stricter per-address login budget (`RATE_LIMIT_AUTH_*`), which keeps working locally when
/// the shared limiter is down. Declared on the operation as `x-rate-limit-policy: login`.
pub fn login_type(mut router: ApiRouter) -> ApiRouter {
    for (_, op) in operations_mut(router.get_openapi_mut()) {
        let ext = ExtensionsBuilder::new()
            .add(RATE_LIMIT_POLICY, "login")
            .build();
        match op.extensions.as_mut() {
            Some(existing) => existing.merge(ext),
            None => op.extensions = Some(ext),
        }
    }
    router
}

/// The login-type operations of a finished document: (method, path), for the limiter.
pub fn login_routes(doc: &Document) -> LoginRoutes {
    let mut set: std::collections::HashMap<String, Vec<Method>> = Default::default();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            (Method::GET, &item.get),
            (Method::PUT, &item.put),
            (Method::POST, &item.post),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
        ] {
            let login = op
                .as_ref()
                .and_then(|op| op.extensions.as_ref())
                .and_then(|e| e.get(RATE_LIMIT_POLICY))
                .is_some_and(|v| v == "login");
            if login {
                set.entry(path.clone()).or_default().push(method);
            }
        }
    }
    LoginRoutes(std::sync::Arc::new(set))
}

/// `get_api_v1_jobs_id`: unique by construction (a trailing-slash path ends in `_slash`), so
/// generated clients get one function per operation.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for part in path.split(['/', '-', '.', '{', '}']) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    if path.ends_with('/') && path.len() > 1 {
        id.push_str("_slash");
    }
    if path == "/" {
        id.push_str("_root");
    }
    id
}

fn header(description: &str, integer: bool) -> RefOr<utoipa::openapi::header::Header> {
    let t = if integer { Type::Integer } else { Type::String };
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(t)))
        .description(Some(description))
        .build()
        .into()
}

/// Completes every operation of the assembled document the same way (see the module comment),
/// and checks what a derive cannot: every operation has a success answer with a schema or an
/// explicit empty body. Returns the operations that break that rule.
pub fn finish(doc: &mut Document) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            ("GET", item.get.as_mut()),
            ("PUT", item.put.as_mut()),
            ("POST", item.post.as_mut()),
            ("DELETE", item.delete.as_mut()),
            ("PATCH", item.patch.as_mut()),
        ] {
            let Some(op) = op else { continue };
            op.operation_id = Some(operation_id(method, path));
            let has_input =
                op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if has_input {
                add_response(
                    op,
                    "422",
                    "Validation error: `detail` lists the field errors",
                );
            }
            if path != "/health" {
                add_response(op, "429", "Too many requests (see Retry-After)");
            }
            add_response(op, "default", "Error (the shared envelope)");
            if !op
                .responses
                .responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('1') || s.starts_with('3'))
            {
                missing.push(format!("{method} {path}"));
            }
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if !(status.starts_with('2') || status == "429") {
                    if status == "503" {
                        response
                            .headers
                            .entry("Retry-After".to_owned())
                            .or_insert_with(|| header("seconds to wait before trying again", true));
                    }
                    continue;
                }
                for name in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
                    response.headers.entry(name.to_owned()).or_insert_with(|| {
                        header("the most constraining rate-limit budget (IETF draft)", true)
                    });
                }
                if status == "429" {
                    response
                        .headers
                        .entry("Retry-After".to_owned())
                        .or_insert_with(|| header("seconds to wait before trying again", true));
                }
            }
        }
    }
    missing
}

//! The OpenAPI 3.1 description of the service at `GET /api/v1/openapi.json`, and a small
//! documentation page at `GET /api/v1/docs` that renders it with a same-origin script and
//! stylesheet (no inline code, so it works under the production CSP, and no CDN).
//!
//! The document is built once, with utoipa's builder API, from [`ROUTES`]: one row per
//! (method, path) the router serves. `tests/it/openapi.rs` requests every row from a running app and
//! checks every `.route(` of `src/http/` appears here, so the table and the router stay in step.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder, Schema, SecurityRequirement,
};

use super::account::PASSWORD_PATH;
use super::console::CONSOLE_PATH;
use crate::error::ApiError;
use crate::state::AppState;

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
pub const DOCS_PATH: &str = "/api/v1/docs";

const DOCS_HTML: &str = include_str!("../web/docs/index.html");
const DOCS_JS: &str = include_str!("../web/docs/docs.js");
const DOCS_CSS: &str = include_str!("../web/docs/docs.css");
const ASSET_CACHE: &str = "public, max-age=3600";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(OPENAPI_PATH, get(spec))
        .route(DOCS_PATH, get(docs_page))
        .route("/api/v1/docs/", get(docs_page))
        .route("/api/v1/docs/docs.js", get(docs_js))
        .route("/api/v1/docs/docs.css", get(docs_css))
        .route("/docs", get(docs_redirect))
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credential needed.
    Public,
    /// A login: bearer JWT or browser session (with CSRF token on unsafe methods).
    Login,
    /// A login or an API key (with the scope the operation needs).
    Any,
    /// An agent's API key with the `jobs:claim` scope.
    Agent,
    /// An administrator's login (or an API key with the `admin` scope).
    Admin,
    /// Public in `ENVIRONMENT=local`, administrators elsewhere.
    AdminOutsideLocal,
    /// The Prometheus scraper's bearer token (`KYROS_METRICS_TOKEN`), or an administrator.
    MetricsToken,
}

impl Auth {
    fn describe(self) -> &'static str {
        match self {
            Auth::Public => "public",
            Auth::Login => "login (bearer JWT or session cookie + X-CSRF-Token)",
            Auth::Any => "bearer JWT, API key (X-API-Key) or session cookie + X-CSRF-Token",
            Auth::Agent => "API key with the jobs:claim scope",
            Auth::Admin => "administrator",
            Auth::AdminOutsideLocal => "public in ENVIRONMENT=local, administrator elsewhere",
            Auth::MetricsToken => "KYROS_METRICS_TOKEN bearer token or administrator",
        }
    }
}

/// A JSON body field: name, JSON type, required, description.
type Field = (&'static str, &'static str, bool, &'static str);

/// One (method, path) the router serves.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub body: &'static [Field],
    /// The main success status and its description.
    pub ok: (u16, &'static str),
    /// Error statuses worth naming besides the generic ones of the auth requirement.
    pub errors: &'static [u16],
}

const fn r(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
) -> Route {
    Route {
        method,
        path,
        tag,
        summary,
        auth,
        body: &[],
        ok: (200, "OK"),
        errors: &[],
    }
}

impl Route {
    const fn body(mut self, body: &'static [Field]) -> Self {
        self.body = body;
        self
    }
    const fn ok(mut self, status: u16, description: &'static str) -> Self {
        self.ok = (status, description);
        self
    }
    const fn errors(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }
}

const CREDENTIALS: &[Field] = &[
    ("username", "string", true, "user name (or email address)"),
    ("password", "string", true, "password, at most 1024 bytes"),
];
const JOB_FIELDS: &[Field] = &[
    ("title", "string", true, "at most 255 characters"),
    ("description", "string", false, "at most 1024 characters"),
    ("priority", "integer", false, "scheduling priority"),
    ("metadata", "object", false, "free-form JSON object"),
];
const TASK_FIELDS: &[Field] = &[
    (
        "title",
        "string",
        true,
        "trimmed, not empty, at most 255 characters",
    ),
    ("description", "string", false, "at most 10000 bytes"),
];
const ID_404: &[u16] = &[404];
const VALIDATION: &[u16] = &[422];

use Auth::{Admin, AdminOutsideLocal, Agent, Any, Login, MetricsToken, Public};

/// Every route of [`super::router`], in the order of its modules.
pub static ROUTES: &[Route] = &[
    // health
    r("GET", "/", "health", "Service banner", Public),
    r("GET", "/health", "health", "Health check", Public),
    r("GET", "/healthz", "health", "Liveness probe", Public),
    // auth
    r(
        "POST",
        "/auth/login",
        "auth",
        "Log in with a password: access and refresh token (or an MFA challenge)",
        Public,
    )
    .body(CREDENTIALS)
    .errors(&[401, 422, 423, 429]),
    r(
        "POST",
        "/auth/refresh",
        "auth",
        "Exchange a refresh token for new tokens",
        Public,
    )
    .body(&[("refresh_token", "string", true, "the refresh token")])
    .errors(&[401, 422]),
    r(
        "POST",
        "/auth/logout",
        "auth",
        "Log out this token or session (and a refresh family)",
        Login,
    )
    .body(&[(
        "refresh_token",
        "string",
        false,
        "refresh token whose family ends too",
    )]),
    r(
        "POST",
        "/auth/logout-all",
        "auth",
        "Log out everywhere",
        Login,
    ),
    r("GET", "/auth/user", "auth", "The caller's profile", Any),
    // sessions
    r(
        "POST",
        "/auth/session",
        "sessions",
        "Browser login: sets the kyros_session and CSRF cookies",
        Public,
    )
    .body(CREDENTIALS)
    .errors(&[401, 422, 429]),
    r(
        "DELETE",
        "/auth/session",
        "sessions",
        "End this browser session",
        Login,
    ),
    r(
        "GET",
        "/auth/sessions",
        "sessions",
        "List sessions (admins: ?user_id= or ?all=true)",
        Login,
    ),
    r(
        "DELETE",
        "/auth/sessions/{id}",
        "sessions",
        "Revoke a session",
        Login,
    )
    .ok(204, "Revoked")
    .errors(ID_404),
    r(
        "GET",
        "/auth/csrf",
        "sessions",
        "A fresh CSRF token for the session",
        Any,
    ),
    // mfa
    r("GET", "/auth/mfa", "mfa", "MFA status of the caller", Any),
    r(
        "POST",
        "/auth/mfa/enroll",
        "mfa",
        "Start TOTP enrolment: secret, otpauth URI and QR code",
        Login,
    ),
    r(
        "POST",
        "/auth/mfa/confirm",
        "mfa",
        "Confirm enrolment with a code: recovery codes",
        Login,
    )
    .body(&[("code", "string", true, "current TOTP code")])
    .errors(&[400, 422]),
    r("POST", "/auth/mfa/disable", "mfa", "Disable MFA", Login)
        .body(&[
            ("password", "string", true, "the caller's password"),
            ("code", "string", true, "current TOTP code"),
        ])
        .errors(VALIDATION),
    r(
        "POST",
        "/auth/mfa/verify",
        "mfa",
        "Second login step: tokens or a session",
        Public,
    )
    .body(&[
        (
            "mfa_token",
            "string",
            true,
            "the challenge from the first step",
        ),
        ("code", "string", false, "TOTP code"),
        (
            "recovery_code",
            "string",
            false,
            "recovery code instead of a TOTP code",
        ),
    ])
    .errors(&[401, 422, 429]),
    // security
    r(
        "POST",
        "/api/v1/security/csp-report",
        "security",
        "Receive a CSP violation report",
        Public,
    )
    .ok(204, "Received"),
    r(
        "GET",
        "/api/v1/security/health",
        "security",
        "Security layer health",
        Public,
    ),
    r(
        "GET",
        "/api/v1/security/config",
        "security",
        "Security configuration (no secrets)",
        AdminOutsideLocal,
    ),
    // admin
    r("GET", "/api/v1/admin/users", "admin", "List users", Admin),
    r(
        "POST",
        "/api/v1/admin/users",
        "admin",
        "Create a user",
        Admin,
    )
    .body(&[
        ("username", "string", true, "user name"),
        ("email", "string", true, "email address"),
        ("password", "string", true, "initial password"),
        ("role", "string", false, "user, moderator or admin"),
    ])
    .ok(201, "Created")
    .errors(&[409, 422]),
    r(
        "PATCH",
        "/api/v1/admin/users/{id}",
        "admin",
        "Change a user's role or active flag",
        Admin,
    )
    .body(&[
        ("role", "string", false, "user, moderator or admin"),
        ("active", "boolean", false, "false disables the account"),
    ])
    .errors(&[404, 422]),
    r(
        "POST",
        "/api/v1/admin/users/{id}/unlock",
        "admin",
        "Lift a login lockout",
        Admin,
    )
    .errors(ID_404),
    r(
        "POST",
        "/api/v1/admin/users/{id}/reset-mfa",
        "admin",
        "Remove a user's MFA",
        Admin,
    )
    .errors(ID_404),
    r(
        "POST",
        "/api/v1/admin/users/{id}/revoke-tokens",
        "admin",
        "Revoke all of a user's tokens and sessions",
        Admin,
    )
    .errors(ID_404),
    r(
        "GET",
        "/api/v1/admin/audit",
        "admin",
        "Audit log, newest first (?event, outcome, actor, actor_id, since, until, before, limit)",
        Admin,
    ),
    // api keys
    r(
        "POST",
        "/api/v1/api-keys",
        "api-keys",
        "Create an API key (shown once)",
        Login,
    )
    .body(&[
        ("name", "string", true, "a label"),
        (
            "scopes",
            "array",
            true,
            "jobs:read, jobs:write, jobs:claim, events:read, events:write, admin",
        ),
        (
            "expires_in_days",
            "integer",
            false,
            "1 to 3650, or null for no expiry",
        ),
    ])
    .ok(201, "Created: the key")
    .errors(VALIDATION),
    r(
        "GET",
        "/api/v1/api-keys",
        "api-keys",
        "List API keys (admins: ?owner_id= or ?all=true)",
        Login,
    ),
    r(
        "DELETE",
        "/api/v1/api-keys/{id}",
        "api-keys",
        "Revoke an API key",
        Login,
    )
    .errors(ID_404),
    // examples
    r(
        "GET",
        "/api/v1/examples/user-content",
        "examples",
        "Content for any user",
        Login,
    ),
    r(
        "GET",
        "/api/v1/examples/moderator-content",
        "examples",
        "Content for moderators and admins",
        Login,
    ),
    r(
        "GET",
        "/api/v1/examples/admin-content",
        "examples",
        "Content for admins",
        Admin,
    ),
    r(
        "GET",
        "/api/v1/examples/moderator-tools",
        "examples",
        "Tools for moderators only",
        Login,
    ),
    r(
        "GET",
        "/api/v1/examples/role-info",
        "examples",
        "The caller's role and permissions",
        Login,
    ),
    // utils
    r(
        "GET",
        "/api/v1/utils/health-check",
        "utils",
        "Health check",
        Public,
    ),
    r(
        "GET",
        "/api/v1/utils/info",
        "utils",
        "Service information",
        AdminOutsideLocal,
    ),
    // monitoring
    r(
        "GET",
        "/api/v1/monitoring/health",
        "monitoring",
        "Detailed health",
        AdminOutsideLocal,
    ),
    r(
        "GET",
        "/api/v1/monitoring/metrics",
        "monitoring",
        "Service metrics as JSON",
        AdminOutsideLocal,
    ),
    r(
        "GET",
        "/api/v1/monitoring/database/health",
        "monitoring",
        "Database health",
        AdminOutsideLocal,
    ),
    r(
        "GET",
        "/api/v1/monitoring/performance",
        "monitoring",
        "Performance figures",
        AdminOutsideLocal,
    ),
    r(
        "GET",
        "/api/v1/monitoring/dependencies",
        "monitoring",
        "Dependency status",
        AdminOutsideLocal,
    ),
    r(
        "GET",
        "/api/v1/monitoring/logs/recent",
        "monitoring",
        "Newest audit rows, summarised (?lines=1..200)",
        AdminOutsideLocal,
    ),
    r(
        "GET",
        "/metrics",
        "monitoring",
        "Prometheus metrics (text exposition format)",
        MetricsToken,
    ),
    // jobs
    r("POST", "/api/v1/jobs", "jobs", "Create a job", Any)
        .body(JOB_FIELDS)
        .ok(201, "Created")
        .errors(VALIDATION),
    r(
        "GET",
        "/api/v1/jobs",
        "jobs",
        "List jobs (?status, skip, limit)",
        Any,
    ),
    r(
        "POST",
        "/api/v1/jobs/",
        "jobs",
        "Create a job (trailing-slash alias)",
        Any,
    )
    .body(JOB_FIELDS)
    .ok(201, "Created")
    .errors(VALIDATION),
    r(
        "GET",
        "/api/v1/jobs/",
        "jobs",
        "List jobs (trailing-slash alias)",
        Any,
    ),
    r(
        "GET",
        "/api/v1/jobs/{id}",
        "jobs",
        "Read a job (ETag, If-None-Match)",
        Any,
    )
    .errors(ID_404),
    r("DELETE", "/api/v1/jobs/{id}", "jobs", "Delete a job", Any).errors(ID_404),
    r(
        "PUT",
        "/api/v1/jobs/{id}/status",
        "jobs",
        "Set a job's status (?status= or body)",
        Any,
    )
    .body(&[("status", "string", false, "new status (or ?status=)")])
    .errors(&[404, 409, 412, 422]),
    // tasks
    r(
        "POST",
        "/api/v1/collab/tasks",
        "tasks",
        "Create a collaboration task",
        Any,
    )
    .body(TASK_FIELDS)
    .errors(VALIDATION),
    r(
        "GET",
        "/api/v1/collab/state/tasks",
        "tasks",
        "List collaboration tasks",
        Any,
    ),
    r(
        "GET",
        "/api/v1/collab/tasks/{id}",
        "tasks",
        "Read a task",
        Any,
    )
    .errors(ID_404),
    r(
        "PUT",
        "/api/v1/collab/tasks/{id}",
        "tasks",
        "Update a task",
        Any,
    )
    .body(TASK_FIELDS)
    .errors(&[404, 422]),
    r(
        "DELETE",
        "/api/v1/collab/tasks/{id}",
        "tasks",
        "Delete a task",
        Any,
    )
    .errors(ID_404),
    // agents
    r(
        "GET",
        "/api/v1/agents",
        "agents",
        "List agents (?page, pageSize, status)",
        Any,
    ),
    r(
        "GET",
        "/api/v1/agents/",
        "agents",
        "List agents (trailing-slash alias)",
        Any,
    ),
    r(
        "POST",
        "/api/v1/agents/claim",
        "agents",
        "Claim the next queued job (204 when none)",
        Agent,
    ),
    r(
        "POST",
        "/api/v1/agents/jobs/{id}/heartbeat",
        "agents",
        "Extend the lease of a claimed job",
        Agent,
    )
    .body(&[(
        "lease_token",
        "string",
        true,
        "the fencing token of the claim (409 when stale)",
    )])
    .errors(ID_404),
    r(
        "POST",
        "/api/v1/agents/jobs/{id}/complete",
        "agents",
        "Complete a claimed job",
        Agent,
    )
    .body(&[
        ("result", "object", false, "the job's result"),
        (
            "lease_token",
            "string",
            true,
            "the fencing token of the claim (409 when stale)",
        ),
    ])
    .errors(ID_404),
    r(
        "POST",
        "/api/v1/agents/jobs/{id}/fail",
        "agents",
        "Fail a claimed job",
        Agent,
    )
    .body(&[
        (
            "error",
            "string",
            false,
            "what went wrong, at most 4096 bytes",
        ),
        (
            "lease_token",
            "string",
            true,
            "the fencing token of the claim (409 when stale)",
        ),
    ])
    .errors(ID_404),
    // events
    r(
        "POST",
        "/api/v1/events",
        "events",
        "Append a collaboration event",
        Any,
    )
    .body(&[
        (
            "event",
            "string",
            true,
            "event name, at most 100 characters",
        ),
        ("target", "string", true, "what it is about"),
        ("details", "object", false, "free-form JSON object"),
    ])
    .errors(VALIDATION),
    r(
        "POST",
        "/api/v1/events/",
        "events",
        "Append an event (trailing-slash alias)",
        Any,
    )
    .body(&[
        ("event", "string", true, "event name"),
        ("target", "string", true, "what it is about"),
        ("details", "object", false, "free-form JSON object"),
    ])
    .errors(VALIDATION),
    r(
        "GET",
        "/api/v1/events/tail",
        "events",
        "Collaboration events as Server-Sent Events (?once)",
        Any,
    ),
    r(
        "GET",
        "/api/v1/orchestrator/events",
        "events",
        "Orchestrator events as SSE (?task_id, run_id, once)",
        Any,
    ),
    r(
        "GET",
        "/api/v1/orchestrator/events/stream",
        "events",
        "Orchestrator event stream (SSE)",
        Any,
    ),
    // websocket
    r(
        "GET",
        "/ws",
        "websocket",
        "WebSocket upgrade (?ticket= or ?token=, or session cookie)",
        Any,
    )
    .ok(101, "Switching Protocols"),
    r(
        "POST",
        "/auth/ws-ticket",
        "websocket",
        "A one-minute ticket for one WebSocket connection",
        Any,
    ),
    // documentation
    r("GET", OPENAPI_PATH, "docs", "This OpenAPI document", Public),
    r("GET", DOCS_PATH, "docs", "API documentation page", Public),
    r(
        "GET",
        "/api/v1/docs/",
        "docs",
        "API documentation page (trailing-slash alias)",
        Public,
    ),
    r(
        "GET",
        "/api/v1/docs/docs.js",
        "docs",
        "Script of the documentation page",
        Public,
    ),
    r(
        "GET",
        "/api/v1/docs/docs.css",
        "docs",
        "Stylesheet of the documentation page",
        Public,
    ),
    r(
        "GET",
        "/docs",
        "docs",
        "Redirect to the documentation page",
        Public,
    )
    .ok(308, "Permanent Redirect"),
    // browser console
    r(
        "GET",
        "/console",
        "console",
        "Redirect to the browser console",
        Public,
    )
    .ok(308, "Permanent Redirect"),
    r(
        "GET",
        CONSOLE_PATH,
        "console",
        "The browser console",
        Public,
    ),
    r(
        "GET",
        "/console/{path}",
        "console",
        "The browser console (its own routes, e.g. /console/jobs)",
        Public,
    ),
    r(
        "GET",
        "/console/assets/{file}",
        "console",
        "A console asset under its content-hashed name (immutable)",
        Public,
    )
    .errors(&[404]),
    // account
    r(
        "POST",
        PASSWORD_PATH,
        "auth",
        "Change the caller's password (ends every session and token; a browser gets a new session)",
        Login,
    )
    .body(&[
        (
            "current_password",
            "string",
            true,
            "the caller's current password",
        ),
        ("new_password", "string", true, "the new password"),
    ])
    .errors(&[403, 422, 429]),
];

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn json_type(t: &str) -> Type {
    match t {
        "integer" => Type::Integer,
        "boolean" => Type::Boolean,
        "object" => Type::Object,
        "array" => Type::Array,
        _ => Type::String,
    }
}

fn field_schema(kind: &str, description: &str) -> RefOr<Schema> {
    if kind == "array" {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .into()
    } else {
        ObjectBuilder::new()
            .schema_type(json_type(kind))
            .description(Some(description))
            .into()
    }
}

fn error_ref() -> Ref {
    Ref::from_schema_name("Error")
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(error_ref())).build(),
    )
}

fn status_text(status: u16) -> &'static str {
    match status {
        401 => "Not authenticated",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Conflict",
        412 => "Precondition failed",
        422 => "Validation error (detail: list of field errors)",
        423 => "Account locked",
        429 => "Too many requests",
        _ => "Error",
    }
}

fn securities(auth: Auth, unsafe_method: bool) -> Vec<SecurityRequirement> {
    let bearer = SecurityRequirement::new("bearerAuth", Vec::<String>::new());
    let api_key = SecurityRequirement::new("apiKey", Vec::<String>::new());
    let session = if unsafe_method {
        SecurityRequirement::new("sessionCookie", Vec::<String>::new())
            .add("csrfToken", Vec::<String>::new())
    } else {
        SecurityRequirement::new("sessionCookie", Vec::<String>::new())
    };
    match auth {
        Auth::Public => Vec::new(),
        // Anonymous access is allowed too (only locally, but the spec says so).
        Auth::AdminOutsideLocal => vec![SecurityRequirement::default(), bearer, session],
        Auth::Login => vec![bearer, session],
        Auth::Admin | Auth::Any => vec![bearer, api_key, session],
        Auth::Agent => vec![api_key],
        Auth::MetricsToken => vec![bearer],
    }
}

fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let unsafe_method = !matches!(route.method, "GET" | "HEAD");
    let mut op = OperationBuilder::new()
        .tag(route.tag)
        .summary(Some(route.summary))
        .description(Some(format!("Authentication: {}.", route.auth.describe())))
        .operation_id(Some(operation_id(route)))
        .extensions(None)
        .response(
            route.ok.0.to_string(),
            ResponseBuilder::new().description(route.ok.1),
        );
    if route.auth != Auth::Public {
        op = op.securities(Some(securities(route.auth, unsafe_method)));
    }
    for name in route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        let format = (name == "id").then_some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Uuid,
        ));
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(format),
                )),
        );
    }
    if !route.body.is_empty() {
        let mut schema = ObjectBuilder::new().schema_type(Type::Object);
        for (name, kind, required, description) in route.body {
            schema = schema.property(*name, field_schema(kind, description));
            if *required {
                schema = schema.required(*name);
            }
        }
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                )
                .build(),
        ));
    }
    let mut errors: Vec<u16> = route.errors.to_vec();
    match route.auth {
        Auth::Public => {}
        Auth::Login | Auth::Any | Auth::Agent | Auth::MetricsToken => errors.extend([401, 403]),
        Auth::Admin | Auth::AdminOutsideLocal => errors.extend([401, 403]),
    }
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        op = op.response(status.to_string(), error_response(status_text(status)));
    }
    op.response("default", error_response("Error (shared envelope)"))
        .build()
}

fn operation_id(route: &Route) -> String {
    let mut id = route.method.to_ascii_lowercase();
    for part in route.path.split(['/', '-', '.', '{', '}']) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    if route.path.ends_with('/') && route.path.len() > 1 {
        id.push_str("_slash");
    }
    id
}

fn error_schema() -> ObjectBuilder {
    let string = |d: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(d))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "The error envelope of every error response. For 422, `detail` is the list of field errors.",
        ))
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("type", string("error class, e.g. validation_error"))
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .description(Some("HTTP status code")),
                )
                .property("message", string("human-readable message"))
                .property("path", string("request path"))
                .property("method", string("request method"))
                .required("type")
                .required("code")
                .required("message")
                .required("path")
                .required("method"),
        )
        .property(
            "detail",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
                .description(Some(
                    "a message string, or for 422 a list of {loc, msg, type} field errors",
                )),
        )
        .required("error")
        .required("detail")
}

fn build() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut grouped: Vec<(&str, PathItem)> = Vec::new();
    for route in ROUTES {
        let item = PathItem::new(method(route.method), operation(route));
        match grouped.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, existing)) => existing.merge_operations(item),
            None => grouped.push((route.path, item)),
        }
    }
    for (path, item) in grouped {
        paths = paths.path(path, item);
    }
    let mut tags: Vec<&str> = Vec::new();
    for route in ROUTES {
        if !tags.contains(&route.tag) {
            tags.push(route.tag);
        }
    }
    let components = ComponentsBuilder::new()
        .schema("Error", error_schema())
        .security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS512 access token from POST /auth/login"))
                    .build(),
            ),
        )
        .security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "kyr_… key from POST /api/v1/api-keys (also accepted as Authorization: Bearer)",
            ))),
        )
        .security_scheme(
            "sessionCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "kyros_session",
                "browser session from POST /auth/session",
            ))),
        )
        .security_scheme(
            "csrfToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "CSRF token (GET /auth/csrf), required with the session cookie on unsafe methods",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Kyros Orchestrator")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(env!("CARGO_PKG_DESCRIPTION")))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .tags(Some(
            tags.into_iter().map(|t| TagBuilder::new().name(t).build()),
        ))
        .build()
}

static SPEC_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| build().to_json().map_err(|e| e.to_string()));

/// The document as built from [`ROUTES`].
pub fn document() -> OpenApi {
    build()
}

async fn spec() -> Result<Response, ApiError> {
    match &*SPEC_JSON {
        Ok(json) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response())
        }
        Err(e) => Err(ApiError::internal(format!("OpenAPI document: {e}"))),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE)),
        ],
        body,
    )
        .into_response()
}

async fn docs_page() -> Response {
    asset("text/html; charset=utf-8", DOCS_HTML)
}

async fn docs_js() -> Response {
    asset("text/javascript; charset=utf-8", DOCS_JS)
}

async fn docs_css() -> Response {
    asset("text/css; charset=utf-8", DOCS_CSS)
}

async fn docs_redirect() -> Redirect {
    Redirect::permanent(DOCS_PATH)
}

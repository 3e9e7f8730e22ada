//! Every setting of the service, once: its environment name, its key in the configuration file
//! (`KYROS_CONFIG`), its default, whether it is a secret, and whether a reload applies it.
//!
//! The table is the one source of `kyros config show`, of the annotated example
//! (`kyros.example.toml`, rendered by [`example_file`] and compared with the committed file by a
//! test), of the file's key names, of the `NAME_FILE` forms of secrets and of the reload's
//! "restart required" report. [`super::Vars`] refuses (in debug builds) to read a name that is
//! not in it, so a new setting cannot skip it.

/// When a changed value takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// On a reload (SIGHUP, a change of the configuration file or of a `_FILE` secret, or
    /// `POST /api/v1/admin/settings/reload`).
    Reload,
    /// Only when the process starts; a reload that changes it reports "restart required".
    Restart,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The environment variable (the original service's name where it had one).
    pub env: &'static str,
    /// `section.key` in the configuration file.
    pub key: &'static str,
    /// The default as written in the file; empty: unset by default.
    pub default: &'static str,
    /// A secret: also read from `NAME_FILE`, never printed, never logged.
    pub secret: bool,
    pub apply: Apply,
    /// One line for the example file and `kyros config show`.
    pub doc: &'static str,
}

const fn opt(
    env: &'static str,
    key: &'static str,
    default: &'static str,
    apply: Apply,
    doc: &'static str,
) -> OptionSpec {
    OptionSpec {
        env,
        key,
        default,
        secret: false,
        apply,
        doc,
    }
}

const fn secret(
    env: &'static str,
    key: &'static str,
    apply: Apply,
    doc: &'static str,
) -> OptionSpec {
    OptionSpec {
        env,
        key,
        default: "",
        secret: true,
        apply,
        doc,
    }
}

use Apply::{Reload, Restart};

/// Every setting, in the order of the example file.
pub const OPTIONS: &[OptionSpec] = &[
    // service
    opt(
        "ENVIRONMENT",
        "service.environment",
        "local",
        Restart,
        "local, staging or production; outside local weak secrets refuse to start and HTTPS is enforced",
    ),
    opt(
        "PROJECT_NAME",
        "service.project_name",
        "Kyros Praxis",
        Restart,
        "name shown by the service",
    ),
    opt(
        "KYROS_BIND",
        "service.bind",
        "127.0.0.1:8000",
        Restart,
        "listen address and port (`kyros serve --bind` overrides it)",
    ),
    opt(
        "KYROS_DATA_DIR",
        "service.data_dir",
        "./data",
        Restart,
        "directory of the SQLite file and of the generated local signing key",
    ),
    opt(
        "FRONTEND_HOST",
        "service.frontend_host",
        "http://localhost:3001",
        Reload,
        "origin of the console; always an allowed CORS origin",
    ),
    opt(
        "BACKEND_CORS_ORIGINS",
        "service.cors_origins",
        "",
        Reload,
        "further allowed CORS origins (comma list or JSON list; no `*`)",
    ),
    // secrets and tokens
    secret(
        "SECRET_KEY",
        "secrets.secret_key",
        Reload,
        "HS512 signing key; CSRF, token-hash, TOTP and API-key keys are derived from it (at least 32 random bytes outside local)",
    ),
    secret(
        "PREVIOUS_SECRET_KEYS",
        "secrets.previous_secret_keys",
        Reload,
        "comma list of retired signing keys: what they signed or derived keeps working",
    ),
    opt(
        "JWT_ALGORITHM",
        "tokens.algorithm",
        "HS512",
        Restart,
        "only HS512 is accepted",
    ),
    opt(
        "JWT_ISSUER",
        "tokens.issuer",
        "kyros-praxis",
        Restart,
        "`iss` of issued tokens",
    ),
    opt(
        "JWT_AUDIENCE",
        "tokens.audience",
        "kyros-app",
        Restart,
        "`aud` of issued tokens",
    ),
    opt(
        "ACCESS_TOKEN_EXPIRE_MINUTES",
        "tokens.access_token_expire_minutes",
        "120",
        Restart,
        "lifetime of an access token",
    ),
    opt(
        "REFRESH_TOKEN_EXPIRE_MINUTES",
        "tokens.refresh_token_expire_minutes",
        "10080",
        Restart,
        "lifetime of a refresh token",
    ),
    // database and redis
    secret(
        "DATABASE_URL",
        "database.url",
        Restart,
        "postgres://… or sqlite:…; unset: SQLite in the data directory",
    ),
    secret(
        "REDIS_URL",
        "redis.url",
        Restart,
        "redis:// or rediss:// URL of the shared state; unset: in-process state",
    ),
    opt(
        "REDIS_HOST",
        "redis.host",
        "",
        Restart,
        "host of Redis when REDIS_URL is unset",
    ),
    opt(
        "REDIS_PORT",
        "redis.port",
        "6379",
        Restart,
        "port of Redis when REDIS_URL is unset",
    ),
    secret(
        "REDIS_PASSWORD",
        "redis.password",
        Restart,
        "password of Redis when REDIS_URL is unset",
    ),
    opt(
        "REDIS_KEY_PREFIX",
        "redis.key_prefix",
        "kyros:",
        Restart,
        "prefix of every Redis key",
    ),
    opt(
        "KYROS_REDIS_TIMEOUT_MS",
        "redis.timeout_ms",
        "100",
        Restart,
        "longest wait for Redis before falling back to local state",
    ),
    // rate limits
    opt(
        "RATE_LIMIT_ENABLED",
        "rate_limit.enabled",
        "true",
        Reload,
        "turns the general budget on or off",
    ),
    opt(
        "RATE_LIMIT_REQUESTS",
        "rate_limit.requests",
        "100",
        Reload,
        "general budget: requests per window (local, staging)",
    ),
    opt(
        "RATE_LIMIT_WINDOW",
        "rate_limit.window",
        "900",
        Reload,
        "general budget: window in seconds",
    ),
    opt(
        "RATE_LIMIT_BURST",
        "rate_limit.burst",
        "0",
        Reload,
        "general budget: extra burst",
    ),
    opt(
        "PRODUCTION_RATE_LIMIT_REQUESTS",
        "rate_limit.production_requests",
        "1000",
        Reload,
        "general budget in production: requests per window",
    ),
    opt(
        "PRODUCTION_RATE_LIMIT_WINDOW",
        "rate_limit.production_window",
        "3600",
        Reload,
        "general budget in production: window in seconds",
    ),
    opt(
        "PRODUCTION_RATE_LIMIT_BURST",
        "rate_limit.production_burst",
        "50",
        Reload,
        "general budget in production: extra burst",
    ),
    opt(
        "AUTH_RATE_LIMIT_REQUESTS",
        "rate_limit.auth_requests",
        "10",
        Reload,
        "login-type endpoints: requests per window",
    ),
    opt(
        "AUTH_RATE_LIMIT_WINDOW",
        "rate_limit.auth_window",
        "60",
        Reload,
        "login-type endpoints: window in seconds",
    ),
    opt(
        "KYROS_ANON_RATE_LIMIT_REQUESTS",
        "rate_limit.anonymous_requests",
        "",
        Reload,
        "separate budget of unauthenticated addresses (unset: the general one)",
    ),
    opt(
        "KYROS_ANON_RATE_LIMIT_WINDOW",
        "rate_limit.anonymous_window",
        "900",
        Reload,
        "window of the anonymous budget in seconds",
    ),
    opt(
        "KYROS_ANON_RATE_LIMIT_BURST",
        "rate_limit.anonymous_burst",
        "0",
        Reload,
        "extra burst of the anonymous budget",
    ),
    opt(
        "KYROS_SESSION_RATE_LIMIT_REQUESTS",
        "rate_limit.session_requests",
        "1200",
        Reload,
        "budget of a browser session (the console): requests per window",
    ),
    opt(
        "KYROS_SESSION_RATE_LIMIT_WINDOW",
        "rate_limit.session_window",
        "300",
        Reload,
        "window of the session budget in seconds",
    ),
    opt(
        "KYROS_SESSION_RATE_LIMIT_BURST",
        "rate_limit.session_burst",
        "0",
        Reload,
        "extra burst of the session budget",
    ),
    opt(
        "RATE_LIMIT_FAIL_MODE",
        "rate_limit.fail_mode",
        "open",
        Reload,
        "while Redis is down: open (local limits) or closed (503 except login-type endpoints)",
    ),
    opt(
        "KYROS_PENALTY_STRIKES",
        "rate_limit.penalty_strikes",
        "10",
        Reload,
        "refusals within the penalty window that start a penalty",
    ),
    opt(
        "KYROS_PENALTY_WINDOW",
        "rate_limit.penalty_window",
        "600",
        Reload,
        "penalty window in seconds",
    ),
    opt(
        "KYROS_PENALTY_FACTOR",
        "rate_limit.penalty_factor",
        "4",
        Reload,
        "cost of a request during a penalty",
    ),
    opt(
        "KYROS_PENALTY_COOLING",
        "rate_limit.penalty_cooling",
        "900",
        Reload,
        "length of a penalty in seconds",
    ),
    opt(
        "KYROS_RATE_LIMIT_MAX_KEYS",
        "rate_limit.max_local_keys",
        "2000000",
        Restart,
        "bound of the in-process limiter state",
    ),
    // lockout
    opt(
        "KYROS_LOCKOUT_THRESHOLD",
        "lockout.threshold",
        "5",
        Reload,
        "consecutive failed logins that lock an account",
    ),
    opt(
        "KYROS_LOCKOUT_BASE_SECONDS",
        "lockout.base_seconds",
        "60",
        Reload,
        "first lockout length, doubling with every further failure",
    ),
    opt(
        "KYROS_LOCKOUT_MAX_SECONDS",
        "lockout.max_seconds",
        "3600",
        Reload,
        "longest lockout",
    ),
    // http
    opt(
        "TRUSTED_PROXIES",
        "http.trusted_proxies",
        "",
        Reload,
        "comma list of proxy addresses or CIDR ranges whose forwarding headers are believed",
    ),
    opt(
        "TRUSTED_PROXY_HEADERS",
        "http.trusted_proxy_headers",
        "x-forwarded",
        Reload,
        "x-forwarded or forwarded (RFC 7239): the one header family read from trusted proxies",
    ),
    opt(
        "KYROS_HTTPS_REDIRECT",
        "http.https_redirect",
        "false",
        Reload,
        "with HTTPS enforced, answer plain-HTTP GET/HEAD with a 308 instead of a 400",
    ),
    opt(
        "KYROS_HTTPS_EXEMPT_PATHS",
        "http.https_exempt_paths",
        "",
        Reload,
        "exact paths served over plain HTTP anyway (load-balancer probes)",
    ),
    opt(
        "KYROS_CONTENT_SECURITY_POLICY",
        "http.content_security_policy",
        "",
        Reload,
        "the Content-Security-Policy header (unset: the built-in policy of the environment)",
    ),
    opt(
        "KYROS_MAX_BODY_BYTES",
        "http.max_body_bytes",
        "1048576",
        Restart,
        "largest request body (413)",
    ),
    opt(
        "KYROS_MAX_HEADER_BYTES",
        "http.max_header_bytes",
        "16384",
        Restart,
        "largest request head (431)",
    ),
    opt(
        "KYROS_REQUEST_TIMEOUT_SECS",
        "http.request_timeout_secs",
        "30",
        Restart,
        "time to produce a response (408)",
    ),
    opt(
        "KYROS_HEADER_READ_TIMEOUT_SECS",
        "http.header_read_timeout_secs",
        "10",
        Restart,
        "time a connection gets to send a request's headers",
    ),
    opt(
        "KYROS_SHUTDOWN_GRACE_SECS",
        "http.shutdown_grace_secs",
        "10",
        Restart,
        "after SIGTERM, how long requests in flight may take",
    ),
    // tls
    opt(
        "TLS_CERT_FILE",
        "tls.cert_file",
        "",
        Restart,
        "PEM certificate chain: serve HTTPS directly (the file's content is re-read on reload)",
    ),
    opt(
        "TLS_KEY_FILE",
        "tls.key_file",
        "",
        Restart,
        "PEM private key of TLS_CERT_FILE (re-read on reload; keep it mode 0600)",
    ),
    // sessions
    opt(
        "KYROS_SESSION_IDLE_MINUTES",
        "sessions.idle_minutes",
        "30",
        Restart,
        "browser session idle timeout",
    ),
    opt(
        "KYROS_SESSION_ABSOLUTE_HOURS",
        "sessions.absolute_hours",
        "12",
        Restart,
        "browser session absolute timeout",
    ),
    opt(
        "KYROS_CSRF_MAX_AGE",
        "sessions.csrf_max_age",
        "3600",
        Restart,
        "seconds a CSRF token stays valid",
    ),
    // passwords
    opt(
        "KYROS_ARGON2_MEMORY_KIB",
        "passwords.argon2_memory_kib",
        "19456",
        Restart,
        "Argon2id memory cost (at least 19456)",
    ),
    opt(
        "KYROS_ARGON2_ITERATIONS",
        "passwords.argon2_iterations",
        "2",
        Restart,
        "Argon2id iterations (at least 2)",
    ),
    opt(
        "KYROS_ARGON2_PARALLELISM",
        "passwords.argon2_parallelism",
        "1",
        Restart,
        "Argon2id lanes",
    ),
    // jobs and retention
    opt(
        "KYROS_JOB_LEASE_SECS",
        "jobs.lease_secs",
        "60",
        Restart,
        "agent lease length",
    ),
    opt(
        "KYROS_JOB_MAX_ATTEMPTS",
        "jobs.max_attempts",
        "3",
        Restart,
        "runs before an expired lease fails a job",
    ),
    opt(
        "KYROS_JOB_OUTPUT_MAX_BYTES",
        "jobs.output_max_bytes",
        "1048576",
        Reload,
        "output kept per job (bytes); later lines are dropped after a marker",
    ),
    opt(
        "KYROS_JOB_OUTPUT_RETENTION_DAYS",
        "retention.job_output_days",
        "30",
        Restart,
        "job output lines older than this are deleted",
    ),
    opt(
        "KYROS_AUDIT_RETENTION_DAYS",
        "retention.audit_days",
        "365",
        Restart,
        "audit rows older than this are deleted",
    ),
    opt(
        "KYROS_EVENT_RETENTION_DAYS",
        "retention.event_days",
        "30",
        Restart,
        "events older than this are deleted",
    ),
    // bootstrap
    opt(
        "FIRST_SUPERUSER",
        "bootstrap.first_superuser",
        "",
        Restart,
        "username of the administrator created at first start",
    ),
    opt(
        "FIRST_SUPERUSER_EMAIL",
        "bootstrap.first_superuser_email",
        "",
        Restart,
        "email of that administrator",
    ),
    secret(
        "FIRST_SUPERUSER_PASSWORD",
        "bootstrap.first_superuser_password",
        Restart,
        "password of that administrator",
    ),
    secret(
        "API_KEYS",
        "bootstrap.api_keys",
        Restart,
        "the original service's plaintext API keys, imported once as hashed keys",
    ),
    opt(
        "API_KEYS_OWNER",
        "bootstrap.api_keys_owner",
        "",
        Restart,
        "owner of the imported API_KEYS (default FIRST_SUPERUSER)",
    ),
    opt(
        "API_KEYS_SCOPES",
        "bootstrap.api_keys_scopes",
        "jobs:read,jobs:write",
        Restart,
        "scopes of the imported API_KEYS",
    ),
    opt(
        "KYROS_RELOAD_ON_FILE_CHANGE",
        "service.reload_on_file_change",
        "true",
        Restart,
        "reload when the configuration file, a secret file or a TLS file changes (SIGHUP and the admin API always do)",
    ),
    // identity providers (sign-in with OpenID Connect / OAuth2; README "Sign in with an identity
    // provider"). Per-provider settings are OIDC_<NAME>_* variables ([`PROVIDER_SUFFIXES`]).
    opt(
        "OIDC_PROVIDERS",
        "identity.oidc_providers",
        "",
        Restart,
        "identity providers by name, comma list (the route's {provider}); each is configured by OIDC_<NAME>_* variables",
    ),
    opt(
        "OAUTH2_REDIRECT_URIS",
        "identity.oauth2_redirect_uris",
        "",
        Restart,
        "the redirect_uri values a sign-in may use, exact match, comma list (e.g. https://kyros.example.com/console/)",
    ),
    opt(
        "GOOGLE_CLIENT_ID",
        "identity.google_client_id",
        "",
        Restart,
        "Google sign-in (OpenID Connect, https://accounts.google.com): the OAuth client id",
    ),
    secret(
        "GOOGLE_CLIENT_SECRET",
        "identity.google_client_secret",
        Restart,
        "Google sign-in: the OAuth client secret",
    ),
    opt(
        "MICROSOFT_CLIENT_ID",
        "identity.microsoft_client_id",
        "",
        Restart,
        "Microsoft sign-in (OpenID Connect, Microsoft identity platform v2.0): the application (client) id",
    ),
    secret(
        "MICROSOFT_CLIENT_SECRET",
        "identity.microsoft_client_secret",
        Restart,
        "Microsoft sign-in: the client secret",
    ),
    opt(
        "MICROSOFT_TENANT",
        "identity.microsoft_tenant",
        "common",
        Restart,
        "Microsoft sign-in: the directory (tenant) id, or common / organizations / consumers for multi-tenant applications",
    ),
    opt(
        "GITHUB_CLIENT_ID",
        "identity.github_client_id",
        "",
        Restart,
        "GitHub sign-in (OAuth2 app; the user and e-mail API): the client id",
    ),
    secret(
        "GITHUB_CLIENT_SECRET",
        "identity.github_client_secret",
        Restart,
        "GitHub sign-in: the client secret",
    ),
    opt(
        "GITHUB_URL",
        "identity.github_url",
        "https://github.com",
        Restart,
        "GitHub sign-in: the web address of GitHub (GitHub Enterprise Server: its address)",
    ),
    opt(
        "GITHUB_API_URL",
        "identity.github_api_url",
        "https://api.github.com",
        Restart,
        "GitHub sign-in: the REST API address (GitHub Enterprise Server: https://HOST/api/v3)",
    ),
    // observability
    opt(
        "LOG_LEVEL",
        "logging.level",
        "INFO",
        Reload,
        "DEBUG, INFO, WARNING, ERROR, CRITICAL, or a tracing filter",
    ),
    secret(
        "KYROS_METRICS_TOKEN",
        "metrics.token",
        Reload,
        "bearer token of the Prometheus scraper for /metrics (at least 32 visible ASCII characters)",
    ),
];

/// The per-provider settings of an identity provider: `OIDC_<NAME>_<SUFFIX>` for each name of
/// `OIDC_PROVIDERS` (and for the presets `GOOGLE`, `MICROSOFT`, `GITHUB`), read from the
/// environment only; `OIDC_<NAME>_CLIENT_SECRET` is a secret and may be given as
/// `OIDC_<NAME>_CLIENT_SECRET_FILE`. (suffix, default, description.)
pub const PROVIDER_SUFFIXES: &[(&str, &str, &str)] = &[
    (
        "ISSUER",
        "",
        "the OpenID Provider's issuer URL (https://; http://127.0.0.1 or localhost only in ENVIRONMENT=local)",
    ),
    ("CLIENT_ID", "", "the client id registered at the provider"),
    ("CLIENT_SECRET", "", "the client secret (secret)"),
    (
        "SCOPES",
        "openid email profile",
        "scopes requested, space or comma separated",
    ),
    (
        "ALLOWED_DOMAINS",
        "",
        "e-mail domains whose users may sign in; empty: any",
    ),
    (
        "AUTO_CREATE",
        "false",
        "create an account at the first sign-in of an unknown identity (verified e-mail in an allowed domain)",
    ),
    (
        "DEFAULT_ROLE",
        "user",
        "role of accounts created at first sign-in: user or moderator",
    ),
    (
        "TRUST_MFA",
        "false",
        "accept the provider's `amr` claim saying it did multi-factor authentication in place of the TOTP step",
    ),
    (
        "DISPLAY_NAME",
        "",
        "the name on the console's sign-in button (default: the provider's name)",
    ),
];

/// Whether `env` is a per-provider variable (`OIDC_<NAME>_<SUFFIX>`, [`PROVIDER_SUFFIXES`]).
pub fn is_provider_var(env: &str) -> bool {
    let Some(rest) = env.strip_prefix("OIDC_") else {
        return false;
    };
    PROVIDER_SUFFIXES.iter().any(|(suffix, _, _)| {
        rest.strip_suffix(suffix)
            .and_then(|name| name.strip_suffix('_'))
            .is_some_and(|name| !name.is_empty())
    })
}

/// The setting with this environment name.
pub fn by_env(env: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.env.eq_ignore_ascii_case(env))
}

/// The setting with this `section.key` of the configuration file.
pub fn by_key(key: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.key == key)
}

/// The annotated example configuration file: every setting, commented out, with its default,
/// its environment name and when a change applies. The repository's `kyros.example.toml` is
/// this text (a test compares them).
pub fn example_file() -> String {
    let mut out = String::from(
        "# Kyros configuration file: point KYROS_CONFIG at a copy of this file.\n\
         #\n\
         # Every setting is listed, commented out, with its default. The environment wins over this\n\
         # file: each key names the variable that overrides it. Secrets can also be given as\n\
         # `<key>_file = \"/run/secrets/…\"` here, or as NAME_FILE in the environment (the file's\n\
         # content is the value; one trailing newline is removed).\n\
         #\n\
         # \"reload\": a change applies on SIGHUP, when this file or a secret file changes, or on\n\
         # POST /api/v1/admin/settings/reload. \"restart\": only when the service starts.\n\
         # Generated by `kyros config example`.\n",
    );
    // Sections in the order they first appear, each with all of its settings.
    let mut sections: Vec<&str> = Vec::new();
    for o in OPTIONS {
        let sec = o.key.split_once('.').map_or("", |(s, _)| s);
        if !sections.contains(&sec) {
            sections.push(sec);
        }
    }
    let ordered = sections.iter().flat_map(|sec| {
        OPTIONS
            .iter()
            .filter(move |o| o.key.split_once('.').map_or("", |(s, _)| s) == *sec)
    });
    let mut section = "";
    for o in ordered {
        let (sec, key) = o.key.split_once('.').unwrap_or(("", o.key));
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        }
        let apply = match o.apply {
            Apply::Reload => "reload",
            Apply::Restart => "restart",
        };
        out.push_str(&format!("# {} ({}, {apply})\n", o.doc, o.env));
        if o.secret {
            out.push_str(&format!(
                "# {key}_file = \"/run/secrets/{}\"\n",
                o.env.to_ascii_lowercase()
            ));
        } else if o.default.is_empty() {
            out.push_str(&format!("# {key} = \"\"\n"));
        } else if o.default.parse::<i64>().is_ok() || o.default == "true" || o.default == "false" {
            out.push_str(&format!("# {key} = {}\n", o.default));
        } else {
            out.push_str(&format!("# {key} = {:?}\n", o.default));
        }
    }
    out
}

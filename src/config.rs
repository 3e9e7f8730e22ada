//! Settings: the environment variable names and defaults of the original service, our own
//! `KYROS_*` additions, and the validation that makes a weak deployment refuse to start.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use ipnet::IpNet;
use secrecy::SecretString;

pub mod identity;
pub mod options;
pub mod sources;

pub use sources::{Resolved, Source};

/// Bytes a password may have. Longer ones are refused (422), never truncated.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Characters a new password must have at least.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Minimum length of a signing secret outside `local`.
pub const SECRET_MIN_BYTES: usize = 32;
pub const SECRET_FILE_NAME: &str = "secret_key";

/// Values that were shipped as examples somewhere and must never sign a production token.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "changethis",
    "changeme",
    "change-me",
    "change_me",
    "secret",
    "secret_key",
    "secretkey",
    "supersecret",
    "your_secret_key_here",
    "your-secret-key-here",
    "your_very_secure_app_secret_minimum_32_chars_generated_with_openssl_rand_hex_32",
];
/// Fragments that only appear in example values.
const PLACEHOLDER_FRAGMENTS: &[&str] = &[
    "changethis",
    "change_me",
    "change-me",
    "your_secret",
    "your-secret",
    "your_very_secure",
    "placeholder",
    "example",
    "generated_with_openssl",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Local,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    pub fn is_local(self) -> bool {
        self == Environment::Local
    }
}

impl FromStr for Environment {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Environment::Local),
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the signing secret came from, so start-up can say so (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    StoredFile(PathBuf),
    GeneratedFile(PathBuf),
}

/// What the limiter does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitFailMode {
    /// Keep serving under each instance's local limits.
    Open,
    /// Refuse (503) everything but the login-type endpoints, which keep their local limits.
    Closed,
}

/// The one forwarding header family read from trusted proxies (`TRUSTED_PROXY_HEADERS`). The
/// other family is ignored whatever it says: a client can add any header in front of the proxy,
/// and a proxy that writes one family passes the other through untouched (as Envoy's
/// `use_remote_address` / Traefik's `forwardedHeaders` choose one source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeaders {
    /// `X-Forwarded-For` and `X-Forwarded-Proto` (the default; what nginx, HAProxy, AWS ALB,
    /// Traefik and Envoy write).
    XForwarded,
    /// RFC 7239 `Forwarded` (`for=`, `proto=`).
    Forwarded,
}

impl ProxyHeaders {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyHeaders::XForwarded => "x-forwarded",
            ProxyHeaders::Forwarded => "forwarded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Consecutive failures that lock an account.
    pub threshold: u32,
    pub base_secs: u64,
    pub max_secs: u64,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub requests: u32,
    pub window_secs: u64,
    pub burst: u32,
    pub production_requests: u32,
    pub production_window_secs: u64,
    pub production_burst: u32,
    pub auth_requests: u32,
    pub auth_window_secs: u64,
    /// Separate budget of anonymous addresses (requests, window, burst); `None`: the general one.
    pub anonymous: Option<(u32, u64, u32)>,
    /// The budget of a person's browser session (the console): requests, window, burst. Larger
    /// than the general one, so that clicking through the console never meets the limiter while
    /// a script flooding with a stolen cookie still does.
    pub session: (u32, u64, u32),
    pub fail_mode: RateLimitFailMode,
    pub strikes: u32,
    pub strike_window_secs: u64,
    pub penalty_factor: u32,
    pub penalty_cooling_secs: u64,
    pub max_local_keys: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl PasswordHashSettings {
    pub const MIN: PasswordHashSettings = PasswordHashSettings {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

impl Default for PasswordHashSettings {
    fn default() -> Self {
        Self::MIN
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Identity providers for sign-in (`OIDC_*`, `GOOGLE_*`, `MICROSOFT_*`, `GITHUB_*`,
    /// `OAUTH2_REDIRECT_URIS`; [`identity`]).
    pub identity: identity::IdentitySettings,
    pub environment: Environment,
    pub project_name: String,
    pub secret_key: SecretString,
    pub secret_source: SecretSource,
    pub previous_secret_keys: Vec<SecretString>,
    pub access_token_expire_minutes: i64,
    pub refresh_token_expire_minutes: i64,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub frontend_host: String,
    /// FRONTEND_HOST plus BACKEND_CORS_ORIGINS, trailing `/` removed, no duplicates.
    pub cors_origins: Vec<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<SecretString>,
    pub redis_key_prefix: String,
    pub rate_limit: RateLimitSettings,
    pub lockout: LockoutSettings,
    /// Longest wait for one Redis call before falling back.
    pub redis_timeout_ms: u64,
    /// After SIGTERM, how long in-flight requests may take before connections are cut.
    pub shutdown_grace_secs: u64,
    /// Longest time to receive a request's headers, or for an idle connection to send one.
    pub header_read_timeout_secs: u64,
    /// Audit rows older than this are deleted.
    pub audit_retention_days: i64,
    /// Events older than this are deleted from the log.
    pub event_retention_days: i64,
    /// How long an agent holds a claimed job without a heartbeat.
    pub job_lease_secs: i64,
    /// Runs a job gets before an expired lease fails it instead of requeueing it.
    pub job_max_attempts: i32,
    /// Output bytes kept per job (each line counts its length plus one); the rest is dropped
    /// after one marker line.
    pub job_output_max_bytes: i64,
    /// Job output lines older than this are deleted.
    pub job_output_retention_days: i64,
    pub first_superuser: Option<String>,
    pub first_superuser_email: Option<String>,
    pub first_superuser_password: Option<SecretString>,
    /// Plaintext keys of the original service (`API_KEYS`), imported at start-up as hashes.
    pub api_keys: Vec<SecretString>,
    /// Owner of the imported `API_KEYS` (`API_KEYS_OWNER`, default `FIRST_SUPERUSER`).
    pub api_keys_owner: Option<String>,
    /// Scopes of the imported `API_KEYS` (`API_KEYS_SCOPES`).
    pub api_keys_scopes: crate::model::Scopes,
    /// Bearer token of the Prometheus scraper for `/metrics` (`KYROS_METRICS_TOKEN`).
    pub metrics_token: Option<SecretString>,
    pub log_level: String,
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub trusted_proxies: Vec<IpNet>,
    /// Which forwarding header the trusted proxies write (`TRUSTED_PROXY_HEADERS`).
    pub proxy_headers: ProxyHeaders,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub password_hash: PasswordHashSettings,
    /// Requests over plain HTTP are refused (staging and production).
    pub enforce_https: bool,
    /// Answer plain-HTTP GET/HEAD with a 308 to the https URL instead of a 400.
    pub https_redirect: bool,
    /// Exact paths served over plain HTTP even when HTTPS is enforced (load-balancer probes).
    pub https_exempt_paths: Vec<String>,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    pub csrf_max_age_secs: i64,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub request_timeout_secs: u64,
    /// Reload when a watched file changes (`KYROS_RELOAD_ON_FILE_CHANGE`, default true).
    pub reload_on_file_change: bool,
    /// The Content-Security-Policy header (`KYROS_CONTENT_SECURITY_POLICY`); `None`: the
    /// built-in policy of the environment.
    pub content_security_policy: Option<String>,
    /// Things worth telling the operator once logging is up (never secret values).
    pub warnings: Vec<String>,
    /// Every setting's value as its source gave it.
    pub effective: Effective,
    /// Where each setting came from.
    pub sources: BTreeMap<&'static str, Source>,
    /// The configuration file and the secret files read (what a reload watches).
    pub files: Vec<PathBuf>,
    /// The environment the settings were read from (a reload reads the files again, not the
    /// environment: a process's environment does not change).
    pub base: Vars,
}

/// A configuration problem: one line, naming the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Variables by upper-cased name; empty values count as unset (as in the original service).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Vars(BTreeMap<String, String>);

/// Names only: the values include secrets.
impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The names [`Vars`] reads besides [`options::OPTIONS`]: the configuration file's path.
const META_VARS: &[&str] = &["KYROS_CONFIG"];

/// The settings' values as the sources left them, by environment name (what a reload compares,
/// and what `kyros config show` prints for non-secrets). Debug prints the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Effective(BTreeMap<&'static str, String>);

impl Effective {
    pub fn get(&self, env: &str) -> Option<&str> {
        self.0.get(env).map(String::as_str)
    }
}

impl fmt::Debug for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.to_ascii_uppercase(), value.into());
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.0.remove(&name.to_ascii_uppercase());
        self
    }

    /// `.env` in the working directory first, then the process environment on top.
    pub fn from_process() -> Result<Self, ConfigError> {
        let mut vars = Vars::new();
        match dotenvy::from_path_iter(".env") {
            Ok(iter) => {
                for item in iter {
                    let (k, v) =
                        item.map_err(|e| ConfigError(format!(".env could not be read: {e}")))?;
                    vars.set(&k, v);
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => return err(format!(".env could not be read: {e}")),
        }
        for (k, v) in std::env::vars_os() {
            if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
                vars.set(k, v);
            }
        }
        Ok(vars)
    }

    /// The value of a variable, if set and not empty.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(&name.to_ascii_uppercase())
    }

    fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(
            options::by_env(name).is_some()
                || META_VARS.contains(&name)
                || options::is_provider_var(name)
                || name
                    .strip_suffix("_FILE")
                    .and_then(options::by_env)
                    .is_some_and(|o| o.secret),
            "{name} is read but not listed in config::options::OPTIONS"
        );
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, name: &str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError(format!("{name} must be {what}"))),
        }
    }

    fn positive<T: FromStr + PartialOrd + Default>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        let v = self.parse(name, default, "a positive whole number")?;
        if v <= T::default() {
            return err(format!("{name} must be a positive whole number"));
        }
        Ok(v)
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => err(format!("{name} must be true or false")),
            },
        }
    }
}

impl Settings {
    /// Reads `.env`, the process environment, the configuration file (`KYROS_CONFIG`) and the
    /// secret files (`NAME_FILE`).
    pub fn load() -> Result<Settings, ConfigError> {
        Settings::from_vars(&Vars::from_process()?)
    }

    /// The settings from these environment variables, with the configuration file and the
    /// secret files they name (see [`sources`]).
    pub fn from_vars(vars: &Vars) -> Result<Settings, ConfigError> {
        let mut resolved = sources::resolve(vars)?;
        resolved.base = vars.clone();
        Settings::from_resolved(resolved)
    }

    /// The settings from resolved sources: every value checked, the first problem refused
    /// with the variable's name (never its value).
    pub fn from_resolved(resolved: Resolved) -> Result<Settings, ConfigError> {
        let Resolved {
            ref vars,
            sources,
            files,
            warnings: source_warnings,
            base,
        } = resolved;
        let mut warnings = source_warnings;
        let effective = Effective(
            options::OPTIONS
                .iter()
                .filter_map(|o| vars.get(o.env).map(|v| (o.env, v.to_owned())))
                .collect(),
        );
        let environment = match vars.get("ENVIRONMENT") {
            None => Environment::Local,
            Some(v) => v.parse().map_err(|_| {
                ConfigError("ENVIRONMENT must be one of local, staging, production".into())
            })?,
        };

        if let Some(alg) = vars.get("JWT_ALGORITHM")
            && !alg.eq_ignore_ascii_case("HS512")
        {
            return err(
                "JWT_ALGORITHM must be HS512 (the only algorithm this service signs or accepts)",
            );
        }

        let data_dir = PathBuf::from(vars.get("KYROS_DATA_DIR").unwrap_or("./data"));
        let bind = vars.parse(
            "KYROS_BIND",
            SocketAddr::from(([127, 0, 0, 1], 8000)),
            "an address and port such as 127.0.0.1:8000",
        )?;

        let (secret_key, secret_source) = match vars.get("SECRET_KEY") {
            Some(key) => {
                if let Some(problem) = secret_problem(key) {
                    if environment.is_local() {
                        warnings.push(format!(
                            "SECRET_KEY {problem}; this is refused outside ENVIRONMENT=local"
                        ));
                    } else {
                        return err(format!(
                            "SECRET_KEY {problem}; set a random value of at least {SECRET_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
                        ));
                    }
                }
                (SecretString::from(key.to_owned()), SecretSource::Configured)
            }
            None if environment.is_local() => {
                let (key, source) = local_secret(&data_dir)?;
                let path = match &source {
                    SecretSource::StoredFile(p) | SecretSource::GeneratedFile(p) => {
                        p.display().to_string()
                    }
                    SecretSource::Configured => String::new(),
                };
                warnings.push(format!(
                    "SECRET_KEY is not set; using the key stored in {path} (allowed only with ENVIRONMENT=local)"
                ));
                (key, source)
            }
            None => {
                return err(format!(
                    "SECRET_KEY is required with ENVIRONMENT={environment}; set a random value of at least {SECRET_MIN_BYTES} bytes"
                ));
            }
        };

        let mut previous_secret_keys = Vec::new();
        for (i, key) in csv(vars.get("PREVIOUS_SECRET_KEYS").unwrap_or(""))
            .into_iter()
            .enumerate()
        {
            if let Some(problem) = secret_problem(&key) {
                if environment.is_local() {
                    warnings.push(format!("PREVIOUS_SECRET_KEYS entry {} {problem}", i + 1));
                } else {
                    return err(format!("PREVIOUS_SECRET_KEYS entry {} {problem}", i + 1));
                }
            }
            previous_secret_keys.push(SecretString::from(key));
        }

        let frontend_host = vars
            .get("FRONTEND_HOST")
            .unwrap_or("http://localhost:3001")
            .trim_end_matches('/')
            .to_owned();
        let mut cors_origins = parse_origins(vars.get("BACKEND_CORS_ORIGINS").unwrap_or(""))?;
        cors_origins.push(frontend_host.clone());
        let mut seen = std::collections::HashSet::new();
        cors_origins.retain(|o| seen.insert(o.clone()));
        for origin in &cors_origins {
            if origin == "*" || origin.contains('*') {
                return err(
                    "BACKEND_CORS_ORIGINS cannot contain '*': credentials are allowed, so every origin must be named",
                );
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return err(format!(
                    "BACKEND_CORS_ORIGINS and FRONTEND_HOST entries must start with http:// or https:// (got {origin:?})"
                ));
            }
        }

        let database_url = vars
            .get("DATABASE_URL")
            .map(normalize_database_url)
            .transpose()?;
        let redis_url = match (vars.get("REDIS_URL"), vars.get("REDIS_HOST")) {
            (Some(url), _) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return err("REDIS_URL must start with redis:// or rediss://");
                }
                Some(SecretString::from(url.to_owned()))
            }
            (None, Some(host)) => {
                let port: u16 = vars.parse("REDIS_PORT", 6379, "a port number")?;
                let auth = vars
                    .get("REDIS_PASSWORD")
                    .map(|p| format!(":{p}@"))
                    .unwrap_or_default();
                Some(SecretString::from(format!("redis://{auth}{host}:{port}")))
            }
            (None, None) => None,
        };

        let rate_limit = RateLimitSettings {
            enabled: vars.flag("RATE_LIMIT_ENABLED", true)?,
            requests: vars.positive("RATE_LIMIT_REQUESTS", 100)?,
            window_secs: vars.positive("RATE_LIMIT_WINDOW", 900)?,
            burst: vars.parse("RATE_LIMIT_BURST", 0, "a whole number")?,
            production_requests: vars.positive("PRODUCTION_RATE_LIMIT_REQUESTS", 1000)?,
            production_window_secs: vars.positive("PRODUCTION_RATE_LIMIT_WINDOW", 3600)?,
            production_burst: vars.parse("PRODUCTION_RATE_LIMIT_BURST", 50, "a whole number")?,
            auth_requests: vars.positive("AUTH_RATE_LIMIT_REQUESTS", 10)?,
            auth_window_secs: vars.positive("AUTH_RATE_LIMIT_WINDOW", 60)?,
            anonymous: match vars.get("KYROS_ANON_RATE_LIMIT_REQUESTS") {
                None => None,
                Some(_) => Some((
                    vars.positive("KYROS_ANON_RATE_LIMIT_REQUESTS", 100)?,
                    vars.positive("KYROS_ANON_RATE_LIMIT_WINDOW", 900)?,
                    vars.parse("KYROS_ANON_RATE_LIMIT_BURST", 0, "a whole number")?,
                )),
            },
            session: (
                vars.positive("KYROS_SESSION_RATE_LIMIT_REQUESTS", 1200)?,
                vars.positive("KYROS_SESSION_RATE_LIMIT_WINDOW", 300)?,
                vars.parse("KYROS_SESSION_RATE_LIMIT_BURST", 0, "a whole number")?,
            ),
            fail_mode: match vars
                .get("RATE_LIMIT_FAIL_MODE")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("open") => RateLimitFailMode::Open,
                Some("closed") => RateLimitFailMode::Closed,
                Some(_) => return err("RATE_LIMIT_FAIL_MODE must be open or closed"),
            },
            strikes: vars.positive("KYROS_PENALTY_STRIKES", 10)?,
            strike_window_secs: vars.positive("KYROS_PENALTY_WINDOW", 600)?,
            penalty_factor: vars.positive("KYROS_PENALTY_FACTOR", 4)?,
            penalty_cooling_secs: vars.positive("KYROS_PENALTY_COOLING", 900)?,
            max_local_keys: vars.positive("KYROS_RATE_LIMIT_MAX_KEYS", 2_000_000)?,
        };
        let lockout = LockoutSettings {
            threshold: vars.positive("KYROS_LOCKOUT_THRESHOLD", 5)?,
            base_secs: vars.positive("KYROS_LOCKOUT_BASE_SECONDS", 60)?,
            max_secs: vars.positive("KYROS_LOCKOUT_MAX_SECONDS", 3600)?,
        };

        let first_superuser = vars.get("FIRST_SUPERUSER").map(str::to_owned);
        let first_superuser_password = vars.get("FIRST_SUPERUSER_PASSWORD").map(str::to_owned);
        if first_superuser.is_some() != first_superuser_password.is_some() {
            return err("FIRST_SUPERUSER and FIRST_SUPERUSER_PASSWORD must be set together");
        }
        if let Some(pw) = &first_superuser_password {
            if pw.chars().count() < PASSWORD_MIN_CHARS || pw.len() > PASSWORD_MAX_BYTES {
                return err(format!(
                    "FIRST_SUPERUSER_PASSWORD must have {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_BYTES} bytes"
                ));
            }
            if is_placeholder(pw) {
                if environment.is_local() {
                    warnings.push("FIRST_SUPERUSER_PASSWORD is a known placeholder; this is refused outside ENVIRONMENT=local".into());
                } else {
                    return err("FIRST_SUPERUSER_PASSWORD is a known placeholder");
                }
            }
        }

        let mut api_keys = Vec::new();
        for (i, key) in csv(vars.get("API_KEYS").unwrap_or(""))
            .into_iter()
            .enumerate()
        {
            if let Some(problem) = crate::model::key_format::legacy_value_problem(&key) {
                return err(format!("API_KEYS entry {} {problem}", i + 1));
            }
            if key.len() < 16 {
                warnings.push(format!(
                    "API_KEYS entry {} is shorter than 16 characters; replace it with a key from `kyros apikey create`",
                    i + 1
                ));
            }
            api_keys.push(SecretString::from(key));
        }
        let api_keys_scopes = crate::model::Scopes::parse_csv(
            vars.get("API_KEYS_SCOPES")
                .unwrap_or("jobs:read,jobs:write"),
        )
        .map_err(|problem| ConfigError(format!("API_KEYS_SCOPES: {problem}")))?;

        let metrics_token = match vars.get("KYROS_METRICS_TOKEN") {
            Some(token) if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) => {
                return err(
                    "KYROS_METRICS_TOKEN must be at least 32 visible ASCII characters (e.g. `openssl rand -hex 32`)",
                );
            }
            token => token.map(|t| SecretString::from(t.to_owned())),
        };

        let mut trusted_proxies = Vec::new();
        for entry in csv(vars.get("TRUSTED_PROXIES").unwrap_or("")) {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError(format!(
                        "TRUSTED_PROXIES entry {entry:?} is not an IP address or CIDR range"
                    ))
                })?;
            trusted_proxies.push(net);
        }

        let proxy_headers = match vars
            .get("TRUSTED_PROXY_HEADERS")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("x-forwarded") => ProxyHeaders::XForwarded,
            Some("forwarded") => ProxyHeaders::Forwarded,
            Some(_) => return err("TRUSTED_PROXY_HEADERS must be x-forwarded or forwarded"),
        };

        let tls_cert_file = vars.get("TLS_CERT_FILE").map(PathBuf::from);
        let tls_key_file = vars.get("TLS_KEY_FILE").map(PathBuf::from);
        if tls_cert_file.is_some() != tls_key_file.is_some() {
            return err("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
        }

        let password_hash = PasswordHashSettings {
            memory_kib: vars.positive(
                "KYROS_ARGON2_MEMORY_KIB",
                PasswordHashSettings::MIN.memory_kib,
            )?,
            iterations: vars.positive(
                "KYROS_ARGON2_ITERATIONS",
                PasswordHashSettings::MIN.iterations,
            )?,
            parallelism: vars.positive(
                "KYROS_ARGON2_PARALLELISM",
                PasswordHashSettings::MIN.parallelism,
            )?,
        };
        if password_hash.memory_kib < PasswordHashSettings::MIN.memory_kib
            || password_hash.iterations < PasswordHashSettings::MIN.iterations
        {
            return err(
                "KYROS_ARGON2_MEMORY_KIB must be at least 19456 and KYROS_ARGON2_ITERATIONS at least 2",
            );
        }

        let content_security_policy = match vars.get("KYROS_CONTENT_SECURITY_POLICY") {
            None => None,
            Some(csp) => {
                let valid = axum::http::HeaderValue::from_str(csp).is_ok()
                    && csp.to_ascii_lowercase().contains("default-src");
                if !valid {
                    return err(
                        "KYROS_CONTENT_SECURITY_POLICY must be one line of visible ASCII with a default-src directive",
                    );
                }
                Some(csp.to_owned())
            }
        };

        let log_level = vars.get("LOG_LEVEL").unwrap_or("INFO").to_owned();
        if log_filter(&log_level).is_none() {
            return err(
                "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (or a tracing filter)",
            );
        }

        let identity = identity::parse(vars, environment)?;

        Ok(Settings {
            identity,
            environment,
            project_name: vars
                .get("PROJECT_NAME")
                .unwrap_or("Kyros Praxis")
                .to_owned(),
            secret_key,
            secret_source,
            previous_secret_keys,
            access_token_expire_minutes: vars.positive("ACCESS_TOKEN_EXPIRE_MINUTES", 120)?,
            refresh_token_expire_minutes: vars.positive("REFRESH_TOKEN_EXPIRE_MINUTES", 10_080)?,
            jwt_issuer: vars.get("JWT_ISSUER").unwrap_or("kyros-praxis").to_owned(),
            jwt_audience: vars.get("JWT_AUDIENCE").unwrap_or("kyros-app").to_owned(),
            frontend_host,
            cors_origins,
            database_url,
            redis_url,
            redis_key_prefix: vars.get("REDIS_KEY_PREFIX").unwrap_or("kyros:").to_owned(),
            rate_limit,
            lockout,
            redis_timeout_ms: vars.positive("KYROS_REDIS_TIMEOUT_MS", 100)?,
            shutdown_grace_secs: vars.positive("KYROS_SHUTDOWN_GRACE_SECS", 10)?,
            header_read_timeout_secs: vars.positive("KYROS_HEADER_READ_TIMEOUT_SECS", 10)?,
            audit_retention_days: vars.positive("KYROS_AUDIT_RETENTION_DAYS", 365)?,
            event_retention_days: vars.positive("KYROS_EVENT_RETENTION_DAYS", 30)?,
            job_lease_secs: vars.positive("KYROS_JOB_LEASE_SECS", 60)?,
            job_max_attempts: vars.positive("KYROS_JOB_MAX_ATTEMPTS", 3)?,
            job_output_max_bytes: vars.positive("KYROS_JOB_OUTPUT_MAX_BYTES", 1 << 20)?,
            job_output_retention_days: vars.positive("KYROS_JOB_OUTPUT_RETENTION_DAYS", 30)?,
            first_superuser,
            first_superuser_email: vars.get("FIRST_SUPERUSER_EMAIL").map(str::to_owned),
            first_superuser_password: first_superuser_password.map(SecretString::from),
            api_keys,
            api_keys_owner: vars.get("API_KEYS_OWNER").map(str::to_owned),
            api_keys_scopes,
            metrics_token,
            log_level,
            bind,
            data_dir,
            trusted_proxies,
            proxy_headers,
            tls_cert_file,
            tls_key_file,
            password_hash,
            enforce_https: !environment.is_local(),
            https_redirect: vars.flag("KYROS_HTTPS_REDIRECT", false)?,
            https_exempt_paths: csv(vars.get("KYROS_HTTPS_EXEMPT_PATHS").unwrap_or("")),
            session_idle_minutes: vars.positive("KYROS_SESSION_IDLE_MINUTES", 30)?,
            session_absolute_hours: vars.positive("KYROS_SESSION_ABSOLUTE_HOURS", 12)?,
            csrf_max_age_secs: vars.positive("KYROS_CSRF_MAX_AGE", 3600)?,
            max_body_bytes: vars.positive("KYROS_MAX_BODY_BYTES", 1024 * 1024)?,
            max_header_bytes: vars.positive("KYROS_MAX_HEADER_BYTES", 16 * 1024)?,
            request_timeout_secs: vars.positive("KYROS_REQUEST_TIMEOUT_SECS", 30)?,
            reload_on_file_change: vars.flag("KYROS_RELOAD_ON_FILE_CHANGE", true)?,
            content_security_policy,
            warnings,
            effective,
            sources,
            files,
            base,
        })
    }

    /// The tracing filter for LOG_LEVEL.
    pub fn log_filter(&self) -> String {
        log_filter(&self.log_level).unwrap_or_else(|| "info".into())
    }
}

/// Python logging level names map onto tracing levels; anything else must be a tracing directive.
fn log_filter(level: &str) -> Option<String> {
    let mapped = match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => {
            return tracing_subscriber::EnvFilter::try_new(level)
                .ok()
                .map(|_| level.to_owned());
        }
    };
    Some(mapped.to_owned())
}

fn csv(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// BACKEND_CORS_ORIGINS: a JSON list or a comma-separated string, as the original accepted.
fn parse_origins(value: &str) -> Result<Vec<String>, ConfigError> {
    let items = if value.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(value).map_err(|_| {
            ConfigError("BACKEND_CORS_ORIGINS is not a valid JSON list of strings".into())
        })?
    } else {
        csv(value)
    };
    Ok(items
        .into_iter()
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect())
}

/// Accepts SQLAlchemy-style URLs from the original deployment (`postgresql+asyncpg://`).
fn normalize_database_url(url: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = url
        .split_once("://")
        .or_else(|| url.split_once(':'))
        .ok_or_else(|| ConfigError("DATABASE_URL must be a postgres:// or sqlite: URL".into()))?;
    let base = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    match base.as_str() {
        "postgres" | "postgresql" => Ok(format!("postgres://{rest}")),
        "sqlite" => Ok(if url.contains("://") {
            format!("sqlite://{rest}")
        } else {
            format!("sqlite:{rest}")
        }),
        _ => err("DATABASE_URL must be a postgres:// or sqlite: URL"),
    }
}

fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    PLACEHOLDER_SECRETS.contains(&lower.as_str())
        || PLACEHOLDER_FRAGMENTS.iter().any(|f| lower.contains(f))
}

/// Why a signing secret is unacceptable, if it is.
pub fn secret_problem(value: &str) -> Option<&'static str> {
    if is_placeholder(value) {
        return Some("is a known placeholder value");
    }
    if value.len() < SECRET_MIN_BYTES {
        return Some("is shorter than 32 bytes");
    }
    let distinct: std::collections::HashSet<u8> = value.bytes().collect();
    if distinct.len() < 8 {
        return Some("has too few distinct characters to be random");
    }
    None
}

/// The local-only signing key: generated once, stored with mode 0600, reused on every start.
fn local_secret(data_dir: &Path) -> Result<(SecretString, SecretSource), ConfigError> {
    let path = data_dir.join(SECRET_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(content) => {
            let key = content.trim().to_owned();
            if key.len() < SECRET_MIN_BYTES {
                return err(format!(
                    "{} is damaged (too short); delete it to generate a new key",
                    path.display()
                ));
            }
            return Ok((SecretString::from(key), SecretSource::StoredFile(path)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return err(format!(
                "{} could not be read: {}",
                path.display(),
                e.kind()
            ));
        }
    }
    create_private_dir(data_dir)?;
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes);
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(&path) {
        Ok(f) => f,
        // Another process created it between our read and our write: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return local_secret(data_dir),
        Err(e) => {
            return err(format!(
                "{} could not be created: {}",
                path.display(),
                e.kind()
            ));
        }
    };
    file.write_all(key.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(|e| {
            ConfigError(format!(
                "{} could not be written: {}",
                path.display(),
                e.kind()
            ))
        })?;
    Ok((SecretString::from(key), SecretSource::GeneratedFile(path)))
}

pub fn create_private_dir(dir: &Path) -> Result<(), ConfigError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| {
        ConfigError(format!(
            "KYROS_DATA_DIR {} could not be created: {}",
            dir.display(),
            e.kind()
        ))
    })
}

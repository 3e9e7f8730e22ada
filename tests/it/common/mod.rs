//! Test harness: the real router on 127.0.0.1:0, a fresh SQLite file or a fresh PostgreSQL
//! database per test, a manual clock, and an HTTP client.
#![allow(dead_code)]

pub mod processes;
pub mod ws;

use std::sync::Arc;

use chrono::Utc;
use kyros::auth::accounts::{self, CreateUser};
use kyros::clock::ManualClock;
use kyros::config::{Settings, Vars};
use kyros::model::{Role, User};
use kyros::state::AppState;
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

pub fn redis_url() -> String {
    std::env::var("KYROS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn postgres_admin_url() -> String {
    std::env::var("KYROS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A random secret for one test.
/// A migrated SQLite database file in a new directory, as `kyros serve` opens it (for tests of
/// the store itself: query plans, the write-ahead log).
pub async fn sqlite_file_db() -> (tempfile::TempDir, kyros::store::Db) {
    let dir = tempfile::tempdir().expect("dir");
    let mut vars = Vars::new();
    vars.set("ENVIRONMENT", "local");
    vars.set("SECRET_KEY", random_secret());
    vars.set("KYROS_DATA_DIR", dir.path().to_string_lossy().to_string());
    let settings = Settings::from_vars(&vars).expect("settings");
    let db = kyros::store::Db::connect(&settings).await.expect("db");
    db.migrate().await.expect("migrate");
    (dir, db)
}

pub fn random_secret() -> String {
    let bytes: [u8; 32] = kyros::crypto::random_bytes();
    hex::encode(bytes)
}

async fn redis_reachable(settings: &Settings) -> bool {
    use secrecy::ExposeSecret;
    let Some(url) = &settings.redis_url else {
        return true;
    };
    let Ok(client) = redis::Client::open(url.expose_secret()) else {
        return false;
    };
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

/// A throw-away PostgreSQL database, dropped when this value is.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// `None` when PostgreSQL is unreachable outside CI (the test is skipped, loudly);
    /// in CI an unreachable server fails the test.
    pub async fn create() -> Option<PgDatabase> {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if in_ci() {
                    panic!("PostgreSQL is required in CI but unreachable: {e}");
                }
                eprintln!("SKIPPED: PostgreSQL unreachable at {admin}: {e}");
                return None;
            }
        };
        let name = format!("kyros_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = postgres_admin_url();
        // Drop runs outside any runtime guarantee, so use a private one on a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub vars: Vars,
    pub data_dir: Arc<tempfile::TempDir>,
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    pg: Option<Arc<PgDatabase>>,
}

pub struct AppBuilder {
    backend: Backend,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    vars: Vars,
    data_dir: Option<Arc<tempfile::TempDir>>,
    pg: Option<Arc<PgDatabase>>,
    port: u16,
}

impl AppBuilder {
    /// Listen on this port of 127.0.0.1 (default: any free port), e.g. to restart a service
    /// where its clients expect it.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.set(name, value);
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    /// Serve HTTPS with this PEM certificate and key.
    pub fn tls(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.tls = Some((cert_pem, key_pem));
        self
    }

    /// Use this data directory and (for PostgreSQL) database, e.g. prepared by the CLI.
    pub fn storage(mut self, dir: Arc<tempfile::TempDir>, pg: Option<Arc<PgDatabase>>) -> Self {
        self.vars
            .set("KYROS_DATA_DIR", dir.path().display().to_string());
        self.data_dir = Some(dir);
        if let Some(pg) = &pg {
            self.vars.set("DATABASE_URL", pg.url.clone());
        }
        self.pg = pg;
        self
    }

    /// Reuse the storage (data dir and database) of an earlier app, like a restart.
    pub fn sharing_storage_with(mut self, other: &TestApp) -> Self {
        self.data_dir = Some(Arc::clone(&other.data_dir));
        self.pg = other.pg.clone();
        self.vars.set(
            "KYROS_DATA_DIR",
            other.data_dir.path().display().to_string(),
        );
        if let Some(pg) = &other.pg {
            self.vars.set("DATABASE_URL", pg.url.clone());
        }
        self
    }

    pub async fn start(mut self) -> Option<TestApp> {
        kyros::install_crypto_provider();
        let data_dir = match self.data_dir.take() {
            Some(d) => d,
            None => {
                let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
                self.vars
                    .set("KYROS_DATA_DIR", dir.path().display().to_string());
                dir
            }
        };
        if self.backend == Backend::Postgres && self.pg.is_none() {
            let pg = PgDatabase::create().await?;
            self.vars.set("DATABASE_URL", pg.url.clone());
            self.pg = Some(Arc::new(pg));
        }
        let settings = Settings::from_vars(&self.vars).expect("test settings are valid");
        if settings.redis_url.is_some() && !redis_reachable(&settings).await {
            if in_ci() {
                panic!("Redis is required in CI but unreachable");
            }
            eprintln!("SKIPPED: Redis unreachable");
            return None;
        }
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let state = AppState::build_with_clock(settings, clock.clone())
            .await
            .expect("app state builds");
        accounts::bootstrap_first_superuser(&state)
            .await
            .expect("bootstrap");
        kyros::auth::api_keys::bootstrap_legacy_api_keys(&state)
            .await
            .expect("legacy API keys");
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let server_state = state.clone();
        let tls = match self.tls {
            Some((cert, key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                    .await
                    .expect("tls config"),
            ),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = tokio::spawn(async move {
            kyros::serve_on(server_state, listener, tls, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let host = if scheme == "https" {
            "localhost".to_owned()
        } else {
            addr.ip().to_string()
        };
        Some(TestApp {
            base: format!("{scheme}://{host}:{}", addr.port()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(scheme == "https")
                .build()
                .expect("client"),
            state,
            clock,
            vars: self.vars,
            data_dir,
            backend: self.backend,
            shutdown: Some(tx),
            server: Some(server),
            pg: self.pg,
        })
    }
}

impl TestApp {
    pub fn builder(backend: Backend) -> AppBuilder {
        let mut vars = Vars::new();
        vars.set("SECRET_KEY", random_secret());
        vars.set("LOG_LEVEL", "WARNING");
        // Budgets large enough that only the rate-limit tests, which set their own, meet them.
        vars.set("RATE_LIMIT_REQUESTS", "1000000");
        vars.set("PRODUCTION_RATE_LIMIT_REQUESTS", "1000000");
        vars.set("AUTH_RATE_LIMIT_REQUESTS", "1000000");
        vars.set("KYROS_PENALTY_STRIKES", "1000000");
        if backend == Backend::Postgres {
            // The scale-out deployment: PostgreSQL and Redis, with a key prefix of its own.
            vars.set("REDIS_URL", redis_url());
            vars.set(
                "REDIS_KEY_PREFIX",
                format!("kyros-test-{}:", uuid::Uuid::new_v4().simple()),
            );
        }
        AppBuilder {
            backend,
            tls: None,
            vars,
            data_dir: None,
            pg: None,
            port: 0,
        }
    }

    /// `None` only when the backend is unavailable outside CI.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::builder(backend).start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn secret(&self) -> String {
        use secrecy::ExposeSecret;
        self.state.settings().secret_key.expose_secret().to_owned()
    }

    /// Sends the server its shutdown signal without waiting; `stop` then waits for the end.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.state.db.close().await;
    }

    pub async fn create_user(&self, username: &str, password: &str, role: Role) -> User {
        accounts::create_user(
            &self.state,
            CreateUser {
                username: username.into(),
                email: format!("{username}@example.org"),
                password: SecretString::from(password.to_owned()),
                role,
            },
            kyros::audit::Actor::System,
        )
        .await
        .expect("create user")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Logs in and returns the access token, asserting success.
    pub async fn token(&self, username: &str, password: &str) -> String {
        let res = self.login(username, password).await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 200, "login of {username} should succeed: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads a JSON body, failing the test on anything else.
pub async fn json(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

/// The cookies a response sets, parsed.
pub fn set_cookies(res: &reqwest::Response) -> Vec<cookie::Cookie<'static>> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| cookie::Cookie::parse(v.to_str().expect("ascii").to_owned()).expect("cookie"))
        .collect()
}

pub fn find_cookie(
    cookies: &[cookie::Cookie<'static>],
    name: &str,
) -> Option<cookie::Cookie<'static>> {
    cookies.iter().find(|c| c.name() == name).cloned()
}

/// A browser session as a client holds it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub token: String,
    pub csrf: String,
}

impl Session {
    /// The `Cookie` header a browser would send.
    pub fn cookie_header(&self) -> String {
        format!("kyros_session={}; csrf_token={}", self.token, self.csrf)
    }
}

impl TestApp {
    pub async fn session_login_response(
        &self,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/auth/session"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("session login")
    }

    /// Logs in with a cookie session, asserting success.
    pub async fn session(&self, username: &str, password: &str) -> Session {
        let res = self.session_login_response(username, password).await;
        assert_eq!(res.status(), 200, "session login of {username}");
        let cookies = set_cookies(&res);
        let body: Value = res.json().await.expect("json");
        Session {
            id: body["session_id"].as_str().expect("session_id").to_owned(),
            token: find_cookie(&cookies, "kyros_session")
                .expect("session cookie")
                .value()
                .to_owned(),
            csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
        }
    }

    /// A request carrying the session's cookies (and no CSRF header).
    pub fn with_session(
        &self,
        method: reqwest::Method,
        path: &str,
        session: &Session,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("cookie", session.cookie_header())
    }

    /// A request carrying the session's cookies and its CSRF header, as a same-origin page sends it.
    pub fn with_csrf(
        &self,
        method: reqwest::Method,
        path: &str,
        session: &Session,
    ) -> reqwest::RequestBuilder {
        self.with_session(method, path, session)
            .header("x-csrf-token", session.csrf.clone())
    }

    pub async fn state_user(&self, username: &str) -> User {
        kyros::auth::accounts::find_user(&self.state.db, username)
            .await
            .expect("query")
            .expect("user exists")
    }

    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use kyros::clock::Clock;
        self.clock.now()
    }

    /// Logs in through both factors (advancing the clock to a fresh TOTP step first).
    pub async fn token_after_mfa(&self, username: &str, password: &str, secret: &str) -> String {
        self.clock.advance(chrono::Duration::seconds(30));
        let res = self.login(username, password).await;
        let body: Value = res.json().await.expect("json");
        let code = kyros::auth::mfa::code_at(secret, self.clock_now()).expect("code");
        let res = self
            .client
            .post(self.url("/auth/mfa/verify"))
            .json(&serde_json::json!({"mfa_token": body["mfa_token"], "code": code}))
            .send()
            .await
            .expect("verify");
        assert_eq!(res.status(), 200, "second factor of {username}");
        let body: Value = res.json().await.expect("json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Waits for the audit writer and returns the rows of `event`, newest first.
    pub async fn audit_rows(&self, event: &str) -> Vec<kyros::store::audit::AuditRow> {
        self.state.audit.flush().await;
        kyros::store::audit::recent(&self.state.db, Some(event), 1000)
            .await
            .expect("audit rows")
    }

    /// How many rows of `event` give each `details.reason`: (reason, count), by reason.
    pub async fn audit_reasons(&self, event: &str) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::new();
        for row in self.audit_rows(event).await {
            let reason = row.details.0["reason"].as_str().unwrap_or("").to_owned();
            *counts.entry(reason).or_insert(0) += 1;
        }
        counts.into_iter().collect()
    }
}

/// Runs the `kyros` binary against one data directory (and PostgreSQL database), as an operator
/// would.
pub struct Cli {
    pub dir: Arc<tempfile::TempDir>,
    pub pg: Option<Arc<PgDatabase>>,
    pub secret: String,
}

impl Cli {
    pub async fn new(backend: Backend) -> Option<Cli> {
        let pg = match backend {
            Backend::Postgres => Some(Arc::new(PgDatabase::create().await?)),
            Backend::Sqlite => None,
        };
        Some(Cli {
            dir: Arc::new(tempfile::tempdir().expect("dir")),
            pg,
            secret: random_secret(),
        })
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyros"));
        cmd.args(args)
            .env_clear()
            .env("KYROS_DATA_DIR", self.dir.path())
            .env("SECRET_KEY", &self.secret)
            .env("LOG_LEVEL", "WARNING")
            .current_dir(self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(pg) = &self.pg {
            cmd.env("DATABASE_URL", &pg.url);
        }
        let mut child = cmd.spawn().expect("spawn kyros");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kyros output")
    }

    /// The service on the same storage and secret.
    pub async fn app(&self, backend: Backend) -> TestApp {
        TestApp::builder(backend)
            .var("SECRET_KEY", self.secret.clone())
            .storage(Arc::clone(&self.dir), self.pg.clone())
            .start()
            .await
            .expect("app")
    }
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ETag CPython computes for a body: the SHA-256 of `json.dumps(obj, sort_keys=True)`.
pub fn python_etag(body: &Value) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,hashlib,sys; print(hashlib.sha256(json.dumps(json.load(sys.stdin), sort_keys=True).encode()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to cross-check ETags");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    format!(
        "\"{}\"",
        String::from_utf8(out.stdout).expect("utf8").trim()
    )
}

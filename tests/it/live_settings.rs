//! Secrets from files, the configuration file, and settings that change without a restart:
//! `NAME_FILE` secrets, `KYROS_CONFIG`, `kyros config check|show`, reloads on SIGHUP, on a file
//! change and through the admin API (reaching every instance), and what a reload may and may
//! not change.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::processes::free_port;
use crate::common::{Backend, TestApp, json, random_secret};
use futures_util::{SinkExt, StreamExt};
use kyros::model::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ADMIN: &str = "settings-admin";
const PW: &str = "live settings password";

/// Writes `content` to `path` with `mode`, replacing it.
fn write(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Replaces `path` the way Kubernetes updates a mounted secret: the new content is written
/// beside it and renamed over it (one atomic step for readers).
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    write(&tmp, content, 0o600);
    std::fs::rename(&tmp, path).expect("rename");
}

/// `kyros <args>` with exactly `env` (plus a data directory), to completion.
fn kyros(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kyros"))
        .args(args)
        .env_clear()
        .env("KYROS_DATA_DIR", dir.join("data"))
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run kyros")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn secret_files_and_the_configuration_file_are_checked_without_starting() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = random_secret();
    let secret_file = dir.path().join("secret_key");
    write(&secret_file, &format!("{secret}\n"), 0o600);
    let secret_var = secret_file.to_str().expect("path");

    // A secret from a file: the service would start (production refuses weak or missing keys,
    // so this also shows the file's value is the key, trailing newline removed).
    let out = kyros(
        dir.path(),
        &["config", "check"],
        &[
            ("ENVIRONMENT", "production"),
            ("SECRET_KEY_FILE", secret_var),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("configuration OK"), "{}", text(&out));
    assert!(!text(&out).contains(&secret), "the secret is never printed");

    // `show` names the source, never the value.
    let out = kyros(
        dir.path(),
        &["config", "show"],
        &[
            ("ENVIRONMENT", "production"),
            ("SECRET_KEY_FILE", secret_var),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("SECRET_KEY "))
        .expect("a SECRET_KEY line")
        .to_owned();
    assert!(
        line.contains("(secret, set)") && line.contains(secret_var),
        "{line}"
    );
    assert!(!text(&out).contains(&secret), "the secret is never printed");

    // Both forms: refused, naming both, exit 2.
    let out = kyros(
        dir.path(),
        &["config", "check"],
        &[
            ("SECRET_KEY", &random_secret()),
            ("SECRET_KEY_FILE", secret_var),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("SECRET_KEY and SECRET_KEY_FILE are both set"),
        "{}",
        text(&out)
    );
    // The same from `serve`: it does not start.
    let out = kyros(
        dir.path(),
        &["serve"],
        &[
            ("SECRET_KEY", &random_secret()),
            ("SECRET_KEY_FILE", secret_var),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A missing secret file names the variable.
    let out = kyros(
        dir.path(),
        &["config", "check"],
        &[("KYROS_METRICS_TOKEN_FILE", "/nonexistent/metrics-token")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("KYROS_METRICS_TOKEN_FILE"),
        "{}",
        text(&out)
    );

    // An empty secret file is unset: production then refuses for want of a key.
    let empty = dir.path().join("empty");
    write(&empty, "", 0o600);
    let out = kyros(
        dir.path(),
        &["config", "check"],
        &[
            ("ENVIRONMENT", "production"),
            ("SECRET_KEY_FILE", empty.to_str().expect("path")),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("SECRET_KEY is required"),
        "{}",
        text(&out)
    );

    // A secret file other users can read: a warning.
    write(&secret_file, &secret, 0o644);
    let out = kyros(
        dir.path(),
        &["config", "check"],
        &[("SECRET_KEY_FILE", secret_var)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("can be read by other users"),
        "{}",
        text(&out)
    );

    // The configuration file: a bad value names its variable, an unknown key its key, and
    // the environment wins over the file.
    let config = dir.path().join("kyros.toml");
    let config_var = config.to_str().expect("path");
    for (content, named) in [
        (
            "[rate_limit]\nrequests = \"many\"\n",
            "RATE_LIMIT_REQUESTS must be a positive whole number",
        ),
        (
            "[rate_limit]\nrequets = 5\n",
            "unknown setting rate_limit.requets",
        ),
        ("[rate_limit\nrequests = 5\n", "not valid TOML at line 1"),
    ] {
        write(&config, content, 0o600);
        let out = kyros(
            dir.path(),
            &["config", "check"],
            &[("KYROS_CONFIG", config_var)],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(named), "{content:?}: {}", text(&out));
    }

    write(
        &config,
        &format!(
            "[rate_limit]\nrequests = 42\nwindow = 60\n[secrets]\nsecret_key_file = {:?}\n",
            secret_var
        ),
        0o600,
    );
    let out = kyros(
        dir.path(),
        &["config", "show"],
        &[("KYROS_CONFIG", config_var), ("RATE_LIMIT_WINDOW", "120")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in {stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("RATE_LIMIT_REQUESTS"),
        "RATE_LIMIT_REQUESTS 42 reload file"
    );
    assert_eq!(row("RATE_LIMIT_WINDOW"), "RATE_LIMIT_WINDOW 120 reload env");
    assert_eq!(
        row("RATE_LIMIT_BURST"),
        "RATE_LIMIT_BURST (unset) reload default"
    );
    assert!(row("SECRET_KEY").contains("_FILE"), "{stdout}");
    assert!(!stdout.contains(&secret));
}

/// The committed example lists every setting, as `kyros config example` prints it.
#[test]
fn the_example_configuration_file_is_current() {
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kyros.example.toml"))
            .expect("kyros.example.toml");
    let generated = kyros::config::options::example_file();
    if let Some((n, (a, b))) = committed
        .lines()
        .zip(generated.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!(
            "kyros.example.toml line {}: {a:?}, expected {b:?}; regenerate it: kyros config example > kyros.example.toml",
            n + 1
        );
    }
    assert_eq!(
        committed.lines().count(),
        generated.lines().count(),
        "regenerate it: kyros config example > kyros.example.toml"
    );
    // And the example is a valid configuration file: uncommented, it loads.
    let dir = tempfile::tempdir().expect("dir");
    // Every `# key = value` line uncommented, except secret files and empty values.
    let uncommented: String = committed
        .lines()
        .filter_map(|l| {
            if l.starts_with('[') {
                return Some(format!("{l}\n"));
            }
            let setting = l.strip_prefix("# ")?;
            let (key, value) = setting.split_once(" = ")?;
            let plain_key = key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            (plain_key && !key.ends_with("_file") && value != "\"\"")
                .then(|| format!("{setting}\n"))
        })
        .collect();
    let config = dir.path().join("kyros.toml");
    write(&config, &uncommented, 0o600);
    let mut vars = kyros::config::Vars::new();
    vars.set("KYROS_CONFIG", config.to_str().expect("path"));
    vars.set("KYROS_DATA_DIR", dir.path().to_str().expect("path"));
    let settings = kyros::config::Settings::from_vars(&vars).expect("the example loads");
    assert_eq!(settings.rate_limit.requests, 100);
    assert_eq!(
        settings.sources.get("RATE_LIMIT_REQUESTS"),
        Some(&kyros::config::Source::File)
    );
}

/// The real binary with a configuration file and its key from a secret file: a lower budget in the file and a SIGHUP apply
/// to the next request while an open WebSocket stays open; an invalid value and a SIGHUP
/// change nothing and are audited as a failed reload; a change of the file alone (no signal)
/// is picked up too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_applies_the_changed_file_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("kyros.toml");
    write(
        &config,
        "[rate_limit]\nrequests = 1000\nwindow = 900\n",
        0o600,
    );
    // The signing key from a secret file: the service starts with it.
    let secret_file = dir.path().join("secret_key");
    write(&secret_file, &format!("{}\n", random_secret()), 0o600);
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyros"))
        .arg("serve")
        .env_clear()
        .env("KYROS_DATA_DIR", dir.path().join("data"))
        .env("KYROS_BIND", format!("127.0.0.1:{port}"))
        .env("KYROS_CONFIG", &config)
        .env("SECRET_KEY_FILE", &secret_file)
        .env("LOG_LEVEL", "WARNING")
        .env("FIRST_SUPERUSER", ADMIN)
        .env("FIRST_SUPERUSER_EMAIL", "settings-admin@example.org")
        .env("FIRST_SUPERUSER_PASSWORD", PW)
        .env("AUTH_RATE_LIMIT_REQUESTS", "1000000")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kyros");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id().to_string();
    let _guard = Kill(std::mem::replace(
        &mut child,
        Command::new("true").spawn().expect("placeholder"),
    ));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the service came up");
    let res = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": ADMIN, "password": PW}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200);
    let token = json(res).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let limit = || async {
        let res = client
            .get(format!("{base}/auth/user"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
        res.headers()["ratelimit-limit"]
            .to_str()
            .expect("header")
            .to_owned()
    };
    assert_eq!(limit().await, "1000");

    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws");

    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "SIGHUP sent");
    };
    let audit = || async {
        let res = client
            .get(format!("{base}/api/v1/admin/audit?event=settings.reload"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("audit");
        assert_eq!(res.status(), 200);
        json(res).await
    };

    // A lower budget: the next request after the reload is under it.
    write(
        &config,
        "[rate_limit]\nrequests = 500\nwindow = 900\n",
        0o600,
    );
    hup();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = limit().await;
        if seen == "500" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "500", "the new budget applies without a restart");
    // The WebSocket opened before the reload still answers.
    ws.send(Message::Ping(vec![7u8].into()))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Pong(p)) = msg {
                return p.to_vec();
            }
        }
        Vec::new()
    })
    .await
    .expect("an answer");
    assert_eq!(pong, vec![7u8], "the WebSocket stayed open");

    // An invalid value: nothing changes, and the refusal is audited.
    write(&config, "[rate_limit]\nrequests = 0\nwindow = 900\n", 0o600);
    hup();
    let mut failures = 0;
    for _ in 0..100 {
        let rows = audit().await;
        failures = rows["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|r| r["outcome"] == "failure")
            .count();
        if failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failures, 1, "the refused reload is audited");
    let rows = audit().await;
    let failed = rows["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["outcome"] == "failure")
        .expect("row")
        .clone();
    assert!(
        failed["details"]["reason"]
            .as_str()
            .expect("reason")
            .contains("RATE_LIMIT_REQUESTS"),
        "{failed}"
    );
    assert_eq!(limit().await, "500", "the budget in effect is kept");

    // The file alone (no signal): the watcher reloads.
    replace(&config, "[rate_limit]\nrequests = 400\nwindow = 900\n");
    for _ in 0..100 {
        seen = limit().await;
        if seen == "400" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "400", "a changed file is picked up without a signal");
    let ok: Vec<Value> = audit().await["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["outcome"] == "success")
        .cloned()
        .collect();
    assert!(
        ok.iter().any(|r| r["details"]["trigger"] == "sighup"
            && r["details"]["changed"] == json!(["RATE_LIMIT_REQUESTS"])),
        "{ok:?}"
    );
    assert!(
        ok.iter().any(|r| r["details"]["trigger"] == "file-change"),
        "{ok:?}"
    );
}

async fn admin(app: &TestApp) -> String {
    app.create_user(ADMIN, PW, Role::Admin).await;
    app.token(ADMIN, PW).await
}

async fn reload(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/admin/settings/reload"))
        .bearer_auth(token)
        .send()
        .await
        .expect("reload")
}

async fn preflight(app: &TestApp, origin: &str) -> Option<String> {
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/jobs"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().expect("header").to_owned())
}

/// CORS origins from the file, changed through the admin API: the new origin's preflight
/// succeeds at once; an invalid file is refused with 422 and changes nothing; a change to a
/// setting that needs a restart is reported, not applied; secrets are never shown.
#[tokio::test]
async fn the_admin_api_reloads_and_reports_what_changed() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("kyros.toml");
    write(
        &config,
        "[service]\ncors_origins = [\"https://a.example\"]\n",
        0o600,
    );
    let Some(app) = TestApp::builder(Backend::Sqlite)
        .var("KYROS_CONFIG", config.to_str().expect("path"))
        // Reloads through the API only, so that each report is the API's.
        .var("KYROS_RELOAD_ON_FILE_CHANGE", "false")
        .start()
        .await
    else {
        return;
    };
    let token = admin(&app).await;
    assert_eq!(
        preflight(&app, "https://a.example").await.as_deref(),
        Some("https://a.example")
    );
    assert_eq!(preflight(&app, "https://b.example").await, None);

    write(
        &config,
        "[service]\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n[http]\nmax_body_bytes = 2048\n",
        0o600,
    );
    let res = reload(&app, &token).await;
    assert_eq!(res.status(), 200);
    let report = json(res).await;
    assert_eq!(report["generation"], 2);
    assert_eq!(report["changed"], json!(["BACKEND_CORS_ORIGINS"]));
    assert_eq!(report["restart_required"], json!(["KYROS_MAX_BODY_BYTES"]));
    assert_eq!(
        preflight(&app, "https://b.example").await.as_deref(),
        Some("https://b.example"),
        "the new origin without a restart"
    );
    assert_eq!(
        app.state.settings().max_body_bytes,
        1024 * 1024,
        "a restart-only setting keeps its start-up value"
    );

    let res = app
        .client
        .get(app.url("/api/v1/admin/settings"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("settings");
    assert_eq!(res.status(), 200);
    let view = json(res).await;
    assert_eq!(view["generation"], 2);
    let find = |name: &str| {
        view["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .find(|s| s["name"] == name)
            .expect("listed")
            .clone()
    };
    assert_eq!(find("BACKEND_CORS_ORIGINS")["source"], "file");
    assert_eq!(
        find("BACKEND_CORS_ORIGINS")["value"],
        "https://a.example,https://b.example"
    );
    assert_eq!(find("SECRET_KEY")["value"], Value::Null);
    assert_eq!(find("SECRET_KEY")["set"], true);
    assert_eq!(find("SECRET_KEY")["source"], "env");
    assert_eq!(find("KYROS_BIND")["applies_on"], "restart");
    let body = view.to_string();
    let secret = app.vars.value("SECRET_KEY").expect("secret").to_owned();
    assert!(!body.contains(&secret), "no secret in the answer");

    // Invalid: 422, nothing changes, audited.
    write(&config, "[service]\ncors_origins = [\"*\"]\n", 0o600);
    let res = reload(&app, &token).await;
    assert_eq!(res.status(), 422);
    let body = json(res).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("BACKEND_CORS_ORIGINS"),
        "{body}"
    );
    assert_eq!(
        preflight(&app, "https://b.example").await.as_deref(),
        Some("https://b.example"),
        "the settings in effect are kept"
    );
    assert_eq!(app.state.live().generation, 2);
    app.state.audit.flush().await;
    let res = app
        .client
        .get(app.url("/api/v1/admin/audit?event=settings.reload&outcome=failure"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit");
    let rows = json(res).await;
    assert_eq!(rows["items"].as_array().expect("items").len(), 1, "{rows}");
    assert_eq!(rows["items"][0]["details"]["trigger"], "api");
    assert_eq!(rows["items"][0]["actor"], ADMIN);

    // Only administrators.
    app.create_user("plain", PW, Role::Moderator).await;
    let plain = app.token("plain", PW).await;
    assert_eq!(reload(&app, &plain).await.status(), 403);
}

/// A new certificate in the TLS files: the next handshake presents it; a connection made
/// before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_used_by_new_handshakes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("dir");
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    write(&cert_file, &first.cert.pem(), 0o600);
    write(&key_file, &first.signing_key.serialize_pem(), 0o600);
    let Some(app) = TestApp::builder(Backend::Sqlite)
        .tls(
            first.cert.pem().into_bytes(),
            first.signing_key.serialize_pem().into_bytes(),
        )
        .var("TLS_CERT_FILE", cert_file.to_str().expect("path"))
        .var("TLS_KEY_FILE", key_file.to_str().expect("path"))
        .var("KYROS_RELOAD_ON_FILE_CHANGE", "false")
        .start()
        .await
    else {
        return;
    };
    let token = admin(&app).await;
    let port: u16 = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");

    /// The certificate the server presents on a new connection, and the connection.
    async fn handshake(
        port: u16,
    ) -> (
        Vec<u8>,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        #[derive(Debug)]
        struct AnyCert;
        impl rustls::client::danger::ServerCertVerifier for AnyCert {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        }
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("handshake");
        let presented = conn.get_ref().1.peer_certificates().expect("certificates")[0].to_vec();
        (presented, conn)
    }

    let (presented, mut old_conn) = handshake(port).await;
    assert_eq!(presented, first.cert.der().to_vec());

    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    replace(&key_file, &second.signing_key.serialize_pem());
    replace(&cert_file, &second.cert.pem());
    let res = reload(&app, &token).await;
    assert_eq!(res.status(), 200);
    let (presented, _) = handshake(port).await;
    assert_eq!(
        presented,
        second.cert.der().to_vec(),
        "new handshakes see the new certificate"
    );

    old_conn
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = Vec::new();
    old_conn.read_to_end(&mut answer).await.expect("answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "the connection from before still works"
    );

    // A broken certificate file refuses the reload; the certificate in use stays.
    replace(&cert_file, "not a certificate");
    let res = reload(&app, &token).await;
    assert_eq!(res.status(), 422);
    let (presented, _) = handshake(port).await;
    assert_eq!(presented, second.cert.der().to_vec());
}

/// Several instances (PostgreSQL + Redis): a reload through the admin API of one reaches the
/// others over the event bus (their file watch is off here, so only the bus can tell them).
#[tokio::test]
async fn a_reload_through_the_api_reaches_every_instance() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("kyros.toml");
    write(&config, "[rate_limit]\nburst = 1\n", 0o600);
    let Some(a) = TestApp::builder(Backend::Postgres)
        .var("KYROS_CONFIG", config.to_str().expect("path"))
        .var("KYROS_RELOAD_ON_FILE_CHANGE", "false")
        .start()
        .await
    else {
        return;
    };
    let Some(b) = TestApp::builder(Backend::Postgres)
        .sharing_storage_with(&a)
        .var("SECRET_KEY", a.vars.value("SECRET_KEY").expect("secret"))
        .var(
            "REDIS_KEY_PREFIX",
            a.vars.value("REDIS_KEY_PREFIX").expect("prefix"),
        )
        .var("KYROS_CONFIG", config.to_str().expect("path"))
        .var("KYROS_RELOAD_ON_FILE_CHANGE", "false")
        .start()
        .await
    else {
        return;
    };
    let token = admin(&a).await;
    write(&config, "[rate_limit]\nburst = 2\n", 0o600);
    let res = reload(&a, &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(a.state.settings().rate_limit.burst, 2);
    let mut seen = 0;
    for _ in 0..100 {
        seen = b.state.settings().rate_limit.burst;
        if seen == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 2, "the other instance reloaded too");
    assert_eq!(b.state.live().generation, 2);
    // Both instances' audit writers: the "api" row is A's, the "peer" row B's.
    a.state.audit.flush().await;
    b.state.audit.flush().await;
    let res = a
        .client
        .get(a.url("/api/v1/admin/audit?event=settings.reload&outcome=success"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit");
    let rows = json(res).await;
    let triggers: Vec<&str> = rows["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["details"]["trigger"].as_str())
        .collect();
    assert!(
        triggers.contains(&"api") && triggers.contains(&"peer"),
        "{rows}"
    );
}

/// A Kubernetes-style secret directory: `secret_key` → `..data/secret_key`, `..data` → a
/// timestamped directory; an update writes a new directory and swaps the `..data` link.
struct SecretDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl SecretDir {
    fn new(secret: &str) -> SecretDir {
        let dir = tempfile::tempdir().expect("dir");
        std::os::unix::fs::symlink("..data/secret_key", dir.path().join("secret_key"))
            .expect("link");
        let mut me = SecretDir { dir, version: 0 };
        me.swap(secret);
        me
    }

    fn file(&self) -> String {
        self.dir.path().join("secret_key").display().to_string()
    }

    /// The new value, visible at once through the link (as the kubelet's atomic writer does).
    fn swap(&mut self, secret: &str) {
        self.version += 1;
        let data = format!("..2026_11_30_{}", self.version);
        std::fs::create_dir(self.dir.path().join(&data)).expect("data dir");
        write(
            &self.dir.path().join(&data).join("secret_key"),
            &format!("{secret}\n"),
            0o600,
        );
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).expect("tmp link");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap");
    }
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

/// `SECRET_KEY` rotated by swapping its file: the new key signs from then on (new `kid`), and
/// everything made under the previous one keeps working — an access token, a refresh token,
/// an API key, a browser session with its CSRF token, an enrolled TOTP secret — and is filed
/// again under the new key as it is used.
async fn a_rotated_secret_key_keeps_every_credential_working(backend: Backend) {
    let first = random_secret();
    let mut secrets = SecretDir::new(&first);
    let Some(app) = TestApp::builder(backend)
        .without("SECRET_KEY")
        .var("SECRET_KEY_FILE", secrets.file())
        .var("KYROS_RELOAD_ON_FILE_CHANGE", "false")
        .start()
        .await
    else {
        return;
    };
    let token = admin(&app).await;
    let first_kid = kyros::auth::tokens::key_id(&first.clone().into());
    assert_eq!(kid(&token), first_kid);

    // Credentials made under the first key.
    let login = json(app.login(ADMIN, PW).await).await;
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "rotation", "scopes": ["jobs:read"]}))
        .send()
        .await
        .expect("key");
    assert_eq!(res.status(), 201);
    let api_key = json(res).await["key"].as_str().expect("key").to_owned();
    let session = app.session(ADMIN, PW).await;
    app.create_user("otp-user", PW, Role::User).await;
    let otp_token = app.token("otp-user", PW).await;
    let res = app
        .client
        .post(app.url("/auth/mfa/enroll"))
        .bearer_auth(&otp_token)
        .json(&json!({}))
        .send()
        .await
        .expect("enroll");
    let otp_secret = json(res).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let code = kyros::auth::mfa::code_at(&otp_secret, app.clock_now()).expect("code");
    let res = app
        .client
        .post(app.url("/auth/mfa/confirm"))
        .bearer_auth(&otp_token)
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(res.status(), 200);
    let stored_otp = kyros::store::mfa::state(&app.state.db, app.state_user("otp-user").await.id)
        .await
        .expect("state")
        .mfa_secret
        .expect("secret");

    // With several instances (PostgreSQL + Redis), a second one reading the same secret file.
    let other = if backend == Backend::Postgres {
        TestApp::builder(backend)
            .sharing_storage_with(&app)
            .without("SECRET_KEY")
            .var("SECRET_KEY_FILE", secrets.file())
            .var("KYROS_RELOAD_ON_FILE_CHANGE", "false")
            .var(
                "REDIS_KEY_PREFIX",
                app.vars.value("REDIS_KEY_PREFIX").expect("prefix"),
            )
            .start()
            .await
    } else {
        None
    };

    // The rotation.
    let second = random_secret();
    secrets.swap(&second);
    let res = reload(&app, &token).await;
    assert_eq!(res.status(), 200);
    if let Some(other) = &other {
        // The reload reached the other instance, over the bus (it watches no file).
        let mut generation = 1;
        for _ in 0..100 {
            generation = other.state.live().generation;
            if generation >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(generation >= 2, "the other instance reloaded");
        let new_token = app.token(ADMIN, PW).await;
        assert_eq!(
            other
                .get_with_token("/auth/user", &new_token)
                .await
                .status(),
            200,
            "a token signed with the new key on one instance verifies on the other"
        );
        assert_eq!(
            other.get_with_token("/auth/user", &token).await.status(),
            200,
            "and one signed with the old key too"
        );
    }
    let report = json(res).await;
    assert!(
        report["changed"]
            .as_array()
            .expect("changed")
            .contains(&json!("SECRET_KEY")),
        "{report}"
    );

    // New tokens carry the new kid.
    let new_token = app.token(ADMIN, PW).await;
    assert_eq!(
        kid(&new_token),
        kyros::auth::tokens::key_id(&second.clone().into())
    );
    assert_ne!(kid(&new_token), first_kid);
    // The access token from before still works until it expires.
    assert_eq!(app.get_with_token("/auth/user", &token).await.status(), 200);
    // The API key.
    let res = app
        .client
        .get(app.url("/api/v1/jobs"))
        .header("x-api-key", &api_key)
        .send()
        .await
        .expect("jobs");
    assert_eq!(res.status(), 200, "the API key from before");
    // The browser session and its CSRF token.
    let res = app
        .with_csrf(reqwest::Method::POST, "/api/v1/jobs", &session)
        .json(&json!({"title": "after the rotation"}))
        .send()
        .await
        .expect("job");
    assert_eq!(res.status(), 201, "the session and CSRF token from before");
    // The refresh token.
    let res = app
        .client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(res.status(), 200, "the refresh token from before");
    let refreshed = json(res).await;
    assert_eq!(
        kid(refreshed["access_token"].as_str().expect("token")),
        kid(&new_token)
    );
    // The TOTP secret enrolled before.
    let mfa_token = app.token_after_mfa("otp-user", PW, &otp_secret).await;
    assert_eq!(
        app.get_with_token("/auth/user", &mfa_token).await.status(),
        200
    );
    let restored = kyros::store::mfa::state(&app.state.db, app.state_user("otp-user").await.id)
        .await
        .expect("state")
        .mfa_secret
        .expect("secret");
    assert_ne!(
        restored, stored_otp,
        "the TOTP secret is encrypted again under the new key"
    );

    // The old key verifies access tokens for one access-token lifetime after the rotation,
    // not longer: a token it signed with a longer `exp` (as another service of the platform,
    // or someone holding a leaked key, could) is refused after that.
    let user = app.state_user(ADMIN).await;
    let now = app.clock_now().timestamp();
    let long = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(first_kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512)
        },
        &json!({
            "sub": ADMIN, "user_id": user.id, "role": "admin", "iss": "kyros-praxis",
            "aud": "kyros-app", "iat": now, "nbf": now, "exp": now + 86_400,
            "jti": uuid::Uuid::new_v4().to_string(), "generation": user.token_generation,
        }),
        &jsonwebtoken::EncodingKey::from_secret(first.as_bytes()),
    )
    .expect("sign");
    assert_eq!(app.get_with_token("/auth/user", &long).await.status(), 200);
    app.clock.advance(chrono::Duration::minutes(121));
    assert_eq!(
        app.get_with_token("/auth/user", &long).await.status(),
        401,
        "the retired key verifies nothing after one access-token lifetime"
    );

    // Filed again under the new key: with only the new key in effect (the old one forgotten,
    // as after a restart without PREVIOUS_SECRET_KEYS), the API key, the session and the TOTP
    // secret still work.
    let Some(restarted) = TestApp::builder(backend)
        .sharing_storage_with(&app)
        .var("SECRET_KEY", second.clone())
        .start()
        .await
    else {
        return;
    };
    let res = restarted
        .client
        .get(restarted.url("/api/v1/jobs"))
        .header("x-api-key", &api_key)
        .send()
        .await
        .expect("jobs");
    assert_eq!(res.status(), 200, "the API key was filed again");
    let res = restarted
        .with_session(reqwest::Method::GET, "/auth/user", &session)
        .send()
        .await
        .expect("user");
    assert_eq!(res.status(), 200, "the session was filed again");
    // Past the TOTP step last used on the first instance (its clock ran ahead), then a login
    // with both factors.
    restarted.clock.advance(chrono::Duration::minutes(130));
    restarted.token_after_mfa("otp-user", PW, &otp_secret).await;
    // The old access token is not accepted by a service that no longer has its key.
    assert_eq!(
        restarted
            .get_with_token("/auth/user", &token)
            .await
            .status(),
        401
    );
}

backend_tests!(a_rotated_secret_key_keeps_every_credential_working);

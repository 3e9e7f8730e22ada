//! Settings validation and the start-up refusals of a weak deployment.

use std::process::{Command, Stdio};

use crate::common::{Backend, TestApp, random_secret};
use kyros::config::{Environment, SecretSource, Settings, Vars};
use secrecy::ExposeSecret;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    let mut vars = Vars::new();
    let dir = std::env::temp_dir().join(format!("kyros-config-{}", uuid::Uuid::new_v4()));
    vars.set("KYROS_DATA_DIR", dir.display().to_string());
    for (k, v) in pairs {
        vars.set(k, *v);
    }
    vars
}

fn refusal(pairs: &[(&str, &str)]) -> String {
    Settings::from_vars(&vars(pairs))
        .expect_err("must be refused")
        .0
}

#[test]
fn production_and_staging_refuse_missing_short_and_placeholder_secrets() {
    for env in ["production", "staging"] {
        let msg = refusal(&[("ENVIRONMENT", env)]);
        assert!(msg.contains("SECRET_KEY is required"), "{msg}");
        let msg = refusal(&[("ENVIRONMENT", env), ("SECRET_KEY", "0123456789abcdef")]);
        assert!(msg.contains("shorter than 32 bytes"), "{msg}");
        for placeholder in [
            "changethis",
            "your-secret-key-here",
            "your_very_secure_app_secret_minimum_32_chars_generated_with_openssl_rand_hex_32",
        ] {
            let msg = refusal(&[("ENVIRONMENT", env), ("SECRET_KEY", placeholder)]);
            assert!(msg.contains("placeholder"), "{placeholder}: {msg}");
            assert!(!msg.contains(placeholder), "the value is not repeated");
        }
        let msg = refusal(&[("ENVIRONMENT", env), ("SECRET_KEY", &"a".repeat(64))]);
        assert!(msg.contains("distinct"), "{msg}");
        let secret = random_secret();
        let ok = Settings::from_vars(&vars(&[("ENVIRONMENT", env), ("SECRET_KEY", &secret)]))
            .expect("accepted");
        assert_eq!(ok.secret_source, SecretSource::Configured);
        assert_eq!(ok.secret_key.expose_secret(), secret);
    }
}

#[test]
fn only_hs512_is_accepted_as_jwt_algorithm() {
    let msg = refusal(&[("JWT_ALGORITHM", "HS256")]);
    assert!(msg.contains("JWT_ALGORITHM must be HS512"), "{msg}");
    assert!(Settings::from_vars(&vars(&[("JWT_ALGORITHM", "HS512")])).is_ok());
}

#[test]
fn defaults_match_the_original_service() {
    let s = Settings::from_vars(&vars(&[])).expect("defaults");
    assert_eq!(s.environment, Environment::Local);
    assert_eq!(s.access_token_expire_minutes, 120);
    assert_eq!(s.refresh_token_expire_minutes, 10_080);
    assert_eq!(s.jwt_issuer, "kyros-praxis");
    assert_eq!(s.jwt_audience, "kyros-app");
    assert_eq!(s.cors_origins, vec!["http://localhost:3001".to_owned()]);
    assert_eq!(
        (
            s.rate_limit.requests,
            s.rate_limit.window_secs,
            s.rate_limit.burst
        ),
        (100, 900, 0)
    );
    assert_eq!(
        (
            s.rate_limit.production_requests,
            s.rate_limit.production_window_secs,
            s.rate_limit.production_burst
        ),
        (1000, 3600, 50)
    );
    assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
    assert!(s.redis_url.is_none());
    assert!(s.database_url.is_none());
}

#[test]
fn cors_origins_accept_csv_and_json_and_refuse_wildcards() {
    let s = Settings::from_vars(&vars(&[(
        "BACKEND_CORS_ORIGINS",
        "https://a.example/, https://b.example",
    )]))
    .expect("csv");
    assert_eq!(
        s.cors_origins,
        [
            "https://a.example",
            "https://b.example",
            "http://localhost:3001"
        ]
    );
    let s = Settings::from_vars(&vars(&[(
        "BACKEND_CORS_ORIGINS",
        r#"["https://c.example"]"#,
    )]))
    .expect("json");
    assert_eq!(
        s.cors_origins,
        ["https://c.example", "http://localhost:3001"]
    );
    assert!(refusal(&[("BACKEND_CORS_ORIGINS", "*")]).contains("'*'"));
}

#[test]
fn redis_and_database_urls_are_understood() {
    let s = Settings::from_vars(&vars(&[
        ("REDIS_HOST", "cache"),
        ("REDIS_PORT", "6380"),
        ("REDIS_PASSWORD", "pw"),
    ]))
    .expect("redis");
    assert_eq!(
        s.redis_url.expect("url").expose_secret(),
        "redis://:pw@cache:6380"
    );
    let s = Settings::from_vars(&vars(&[(
        "DATABASE_URL",
        "postgresql+asyncpg://u@db/kyros",
    )]))
    .expect("db");
    assert_eq!(s.database_url.as_deref(), Some("postgres://u@db/kyros"));
    assert!(refusal(&[("DATABASE_URL", "mysql://x")]).contains("DATABASE_URL"));
}

#[test]
fn local_secret_is_generated_once_with_mode_0600_and_reused() {
    let v = vars(&[]);
    let first = Settings::from_vars(&v).expect("first start");
    let SecretSource::GeneratedFile(path) = &first.secret_source else {
        panic!("expected a generated key, got {:?}", first.secret_source)
    };
    assert!(
        first
            .warnings
            .iter()
            .any(|w| w.contains("SECRET_KEY is not set"))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let second = Settings::from_vars(&v).expect("second start");
    assert_eq!(second.secret_source, SecretSource::StoredFile(path.clone()));
    assert_eq!(
        first.secret_key.expose_secret(),
        second.secret_key.expose_secret()
    );
    assert!(first.secret_key.expose_secret().len() >= 32);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

fn kyros(envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyros"));
    cmd.args(args)
        .env_clear()
        .env("KYROS_DATA_DIR", dir.path())
        .env("KYROS_BIND", "127.0.0.1:0")
        .current_dir(dir.path())
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run kyros")
}

#[test]
fn the_binary_exits_2_with_one_line_for_a_weak_production_secret() {
    for secret in [
        "changethis",
        "k3y-0f-15-byt3s",
        "your_very_secure_app_secret_minimum_32_chars_generated_with_openssl_rand_hex_32",
    ] {
        let out = kyros(
            &[("ENVIRONMENT", "production"), ("SECRET_KEY", secret)],
            &["serve"],
        );
        assert_eq!(out.status.code(), Some(2), "{secret}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("kyros: configuration error: SECRET_KEY"),
            "{stderr}"
        );
        assert!(!stderr.contains(secret), "the secret is not printed");
    }
    let out = kyros(&[("ENVIRONMENT", "production")], &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kyros(&[("JWT_ALGORITHM", "RS256")], &["migrate"]);
    assert_eq!(out.status.code(), Some(2));
}

async fn tokens_survive_a_restart_with_the_generated_local_key(backend: Backend) {
    let Some(first) = TestApp::builder(backend)
        .without("SECRET_KEY")
        .start()
        .await
    else {
        return;
    };
    assert!(matches!(
        first.state.settings().secret_source,
        SecretSource::GeneratedFile(_)
    ));
    first
        .create_user("resty", "restart password", kyros::model::Role::User)
        .await;
    let token = first.token("resty", "restart password").await;
    let second = TestApp::builder(backend)
        .without("SECRET_KEY")
        .sharing_storage_with(&first)
        .start()
        .await
        .expect("second start");
    first.stop().await;
    assert!(matches!(
        second.state.settings().secret_source,
        SecretSource::StoredFile(_)
    ));
    assert_eq!(
        second.get_with_token("/auth/user", &token).await.status(),
        200
    );
}

backend_tests!(tokens_survive_a_restart_with_the_generated_local_key);

//! The `kyros` command: migrations and user administration, checked through the API.

use crate::common::{Backend, Cli, json, stderr, stdout};

async fn user_administration_from_the_command_line(backend: Backend) {
    let Some(cli) = Cli::new(backend).await else {
        return;
    };
    let out = cli.run(&["migrate"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("migrations applied"));

    let out = cli.run(
        &[
            "user",
            "create",
            "--username",
            "ops",
            "--email",
            "ops@example.org",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("an operator password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("created user ops"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("an operator password"));

    // Same name again, a short password, and a missing password are refused with exit code 1.
    let out = cli.run(
        &[
            "user",
            "create",
            "--username",
            "ops",
            "--email",
            "x@example.org",
            "--password-stdin",
        ],
        Some("another password\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("username is already taken"),
        "{}",
        stderr(&out)
    );
    let out = cli.run(
        &[
            "user",
            "create",
            "--username",
            "short",
            "--email",
            "s@example.org",
            "--password-stdin",
        ],
        Some("abc\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 8 characters"));
    let out = cli.run(
        &[
            "user",
            "create",
            "--username",
            "np",
            "--email",
            "np@example.org",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--password-stdin"));

    let out = cli.run(&["user", "list"], None);
    assert!(out.status.success());
    let listing = stdout(&out);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("\tops\tops@example.org\tadmin\ttrue\t")),
        "{listing}"
    );
    assert_eq!(listing.lines().count(), 2, "header and one user");

    let app = cli.app(backend).await;
    let token = app.token("ops", "an operator password").await;
    assert_eq!(
        json(app.get_with_token("/auth/user", &token).await).await["role"],
        "admin"
    );

    let out = cli.run(
        &[
            "user",
            "set-role",
            "--username",
            "ops",
            "--role",
            "moderator",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.run(
        &[
            "user",
            "set-password",
            "--username",
            "ops",
            "--password-stdin",
        ],
        Some("a brand new password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(app.login("ops", "an operator password").await.status(), 401);
    let token = app.token("ops", "a brand new password").await;
    assert_eq!(
        json(app.get_with_token("/auth/user", &token).await).await["role"],
        "moderator"
    );

    let out = cli.run(&["user", "disable", "--username", "ops"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(app.login("ops", "a brand new password").await.status(), 401);
    // Changed by another process: the service's one-second user cache sees it on expiry.
    let mut refused = false;
    for _ in 0..50 {
        let status = app.get_with_token("/auth/user", &token).await.status();
        if status == 401 {
            refused = true;
            break;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the disabled user's token is refused");
    let out = cli.run(&["user", "enable", "--username", "ops"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    app.token("ops", "a brand new password").await;

    // Five wrong passwords lock the account; the operator lifts the lock.
    for i in 0..5 {
        assert_eq!(app.login("ops", &format!("wrong {i}")).await.status(), 401);
    }
    assert_eq!(
        app.login("ops", "a brand new password").await.status(),
        401,
        "locked"
    );
    let out = cli.run(&["user", "unlock", "--username", "ops"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ops is unlocked"));
    app.token("ops", "a brand new password").await;

    let out = cli.run(&["user", "disable", "--username", "ghost"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such user"));

    // API keys from the command line.
    let out = cli.run(
        &[
            "apikey",
            "create",
            "--owner",
            "ops",
            "--name",
            "runner",
            "--scopes",
            "jobs:read",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_owned();
    // The owner was enabled by another process a moment ago: the service's one-second user
    // cache may still hold the disabled row, so the key is tried until that has passed.
    let mut status = 0;
    for _ in 0..50 {
        let res = app
            .client
            .get(app.url("/api/v1/jobs"))
            .header("x-api-key", &key)
            .send()
            .await
            .expect("key");
        status = res.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the key made by the CLI works");
    let key_id = app.audit_rows("apikey.created").await[0].details.0["key_id"]
        .as_str()
        .expect("key id")
        .to_owned();
    let out = cli.run(&["apikey", "revoke", "--id", &key_id], None);
    assert!(out.status.success(), "{}", stderr(&out));

    // Every action above wrote the audit row its HTTP twin writes, by the actor `cli`.
    let ops = app.state_user("ops").await;
    for (event, count) in [
        ("user.created", 1),
        ("user.role_changed", 1),
        ("auth.password_changed", 1),
        ("user.disabled", 1),
        ("user.enabled", 1),
        ("user.unlocked", 1),
        ("apikey.created", 1),
        ("apikey.revoked", 1),
    ] {
        let rows = app.audit_rows(event).await;
        assert_eq!(rows.len(), count, "{event}");
        let row = &rows[0];
        assert_eq!(row.actor.as_deref(), Some("cli"), "{event}");
        assert_eq!(row.outcome, "success", "{event}");
        assert_eq!(row.details.0["via"], "cli", "{event}");
        if event.starts_with("user.") || event.starts_with("auth.") {
            assert_eq!(
                row.details.0["target_user_id"],
                serde_json::json!(ops.id),
                "{event}"
            );
        }
    }
    let role = &app.audit_rows("user.role_changed").await[0];
    assert_eq!(role.details.0["from"], "admin");
    assert_eq!(role.details.0["to"], "moderator");
    // Over HTTP the same service writes the same row, by the administrator.
    let admin = app
        .create_user("boss", "the boss password", kyros::model::Role::Admin)
        .await;
    let boss = app.token("boss", "the boss password").await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/admin/users/{}/unlock", ops.id)))
        .bearer_auth(&boss)
        .send()
        .await
        .expect("unlock");
    assert_eq!(res.status(), 204);
    let rows = app.audit_rows("user.unlocked").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].actor_id, Some(admin.id));
    assert_eq!(rows[0].details.0["via"], "api");
    assert_eq!(
        rows[0].details.0["target_user_id"],
        rows[1].details.0["target_user_id"]
    );
}

backend_tests!(user_administration_from_the_command_line);

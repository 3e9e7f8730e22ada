//! The `kyros` command: migrations and user administration, checked through the API.

mod common;

use common::{Backend, Cli, json, stderr, stdout};

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
}

backend_tests!(user_administration_from_the_command_line);

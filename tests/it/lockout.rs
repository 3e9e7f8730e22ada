//! Brute-force protection: accounts lock after repeated failures, answer exactly like a wrong
//! password while locked, unlock after a growing backoff or by an administrator.

use crate::common::{Backend, TestApp, json};
use chrono::Duration;
use kyros::model::Role;

const PW: &str = "the right password";

async fn setup(backend: Backend) -> Option<TestApp> {
    let app = TestApp::builder(backend)
        .var("KYROS_LOCKOUT_THRESHOLD", "3")
        .var("KYROS_LOCKOUT_BASE_SECONDS", "60")
        .var("KYROS_LOCKOUT_MAX_SECONDS", "600")
        .start()
        .await?;
    app.create_user("vic", PW, Role::User).await;
    app.create_user("boss", PW, Role::Admin).await;
    Some(app)
}

async fn locked_accounts_refuse_even_the_right_password_like_a_wrong_one(backend: Backend) {
    let Some(app) = setup(backend).await else {
        return;
    };
    let wrong = json(app.login("vic", "guess").await).await;
    app.login("vic", "guess 2").await;
    app.login("vic", "guess 3").await;
    let res = app.login("vic", PW).await;
    assert_eq!(res.status(), 401, "locked");
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        json(res).await,
        wrong,
        "indistinguishable from a wrong password"
    );
    let rows = app.audit_rows("auth.lockout").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].details.0["locked_seconds"], 60);
    let reasons: Vec<_> = app
        .audit_rows("auth.login")
        .await
        .iter()
        .map(|r| r.details.0["reason"].clone())
        .collect();
    assert_eq!(reasons[0], "locked");

    // The lock runs out; a success clears the count.
    app.clock.advance(Duration::seconds(59));
    assert_eq!(app.login("vic", PW).await.status(), 401, "still locked");
    assert_eq!(app.login("vic", "guess 4").await.status(), 401);
    assert_eq!(
        app.state_user("vic").await.failed_logins,
        3,
        "attempts during the lock do not extend it"
    );
    app.clock.advance(Duration::seconds(2));
    app.token("vic", PW).await;
    assert_eq!(app.state_user("vic").await.failed_logins, 0);
    assert!(app.state_user("vic").await.locked_until.is_none());
}

async fn the_backoff_grows_with_every_further_failure(backend: Backend) {
    let Some(app) = setup(backend).await else {
        return;
    };
    let mut seconds = Vec::new();
    for attempt in 0..7 {
        app.login("vic", &format!("guess {attempt}")).await;
        let user = app.state_user("vic").await;
        if let Some(until) = user.locked_until {
            seconds.push(
                ((until - app.clock_now()).num_milliseconds() as f64 / 1000.0).round() as i64,
            );
            // Wait the lock out, so the next wrong password counts.
            app.clock.advance(Duration::seconds(601));
        }
    }
    assert_eq!(
        seconds,
        [60, 120, 240, 480, 600],
        "doubling up to the maximum"
    );
}

async fn unknown_accounts_do_not_lock_anything_and_cost_the_same_work(backend: Backend) {
    let Some(app) = setup(backend).await else {
        return;
    };
    for i in 0..5 {
        assert_eq!(
            app.login("ghost", &format!("guess {i}")).await.status(),
            401
        );
    }
    assert!(app.audit_rows("auth.lockout").await.is_empty());
    app.token("vic", PW).await;
}

async fn an_administrator_can_unlock(backend: Backend) {
    let Some(app) = setup(backend).await else {
        return;
    };
    let admin = app.token("boss", PW).await;
    for i in 0..3 {
        app.login("vic", &format!("guess {i}")).await;
    }
    assert_eq!(app.login("vic", PW).await.status(), 401);
    let vic = app.state_user("vic").await;
    let url = app.url(&format!("/api/v1/admin/users/{}/unlock", vic.id));

    // Not for ordinary users.
    app.create_user("joe", PW, Role::Moderator).await;
    let joe = app.token("joe", PW).await;
    let res = app
        .client
        .post(&url)
        .bearer_auth(&joe)
        .send()
        .await
        .expect("joe");
    assert_eq!(res.status(), 403);
    assert_eq!(
        json(res).await["detail"],
        "Access denied. Required role: admin, user role: moderator"
    );
    assert_eq!(app.audit_rows("rbac.denied").await.len(), 1);

    let res = app
        .client
        .post(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("unlock");
    assert_eq!(res.status(), 204);
    app.token("vic", PW).await;
    let rows = app.audit_rows("user.unlocked").await;
    assert_eq!(rows[0].actor.as_deref(), Some("boss"));
    let res = app
        .client
        .post(app.url(&format!(
            "/api/v1/admin/users/{}/unlock",
            uuid::Uuid::new_v4()
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("unknown");
    assert_eq!(res.status(), 404);
}

/// Passwords sent at once: once the threshold is reached no further password of the account
/// is checked, so the guesses in flight cannot outnumber the threshold.
async fn concurrent_guesses_cannot_pass_the_threshold(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("KYROS_LOCKOUT_THRESHOLD", "3")
        .var("AUTH_RATE_LIMIT_REQUESTS", "1000")
        .var("RATE_LIMIT_REQUESTS", "1000")
        .start()
        .await
    else {
        return;
    };
    app.create_user("vic", PW, Role::User).await;
    let guesses: Vec<String> = (0..12).map(|i| format!("wrong guess {i}")).collect();
    let statuses: Vec<u16> =
        futures_util::future::join_all(guesses.iter().map(|g| app.login("vic", g)))
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // Only threshold-many passwords were checked; the other nine met the lock.
    assert_eq!(
        app.audit_reasons("auth.login").await,
        [("bad_password".to_owned(), 3), ("locked".to_owned(), 9)]
    );
    assert_eq!(app.state_user("vic").await.failed_logins, 3);
    assert_eq!(app.login("vic", PW).await.status(), 401, "locked");
}

/// Names equal after PRECIS UsernameCaseMapped (RFC 8265) are one name: for uniqueness, for
/// login and for the lockout count.
async fn look_alike_names_are_one_account(backend: Backend) {
    let Some(app) = setup(backend).await else {
        return;
    };
    let admin = app.token("boss", PW).await;
    for (i, look_alike) in ["\u{ff42}\u{ff4f}\u{ff53}\u{ff53}", "BOSS", "Boss"]
        .iter()
        .enumerate()
    {
        let res = app
            .client
            .post(app.url("/api/v1/admin/users"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"username": look_alike, "email": format!("look-alike-{i}@example.org"), "password": "another password", "role": "user"}))
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 409, "{look_alike}");
        assert_eq!(
            json(res).await["detail"],
            "A user with this username already exists"
        );
    }
    // The fullwidth spelling logs in to the same account.
    let res = app.login("\u{ff42}\u{ff4f}\u{ff53}\u{ff53}", PW).await;
    assert_eq!(res.status(), 200);
    // Failures under different spellings add up on the one account.
    for name in ["VIC", "\u{ff56}\u{ff49}\u{ff43}", "Vic"] {
        assert_eq!(app.login(name, "wrong").await.status(), 401);
    }
    assert!(
        app.state_user("vic").await.locked_at(app.clock_now()),
        "three failures under three spellings lock vic"
    );
    assert_eq!(app.login("vic", PW).await.status(), 401);
}

backend_tests!(
    concurrent_guesses_cannot_pass_the_threshold,
    look_alike_names_are_one_account,
    locked_accounts_refuse_even_the_right_password_like_a_wrong_one,
    the_backoff_grows_with_every_further_failure,
    unknown_accounts_do_not_lock_anything_and_cost_the_same_work,
    an_administrator_can_unlock,
);

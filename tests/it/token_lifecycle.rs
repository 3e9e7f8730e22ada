//! Refresh-token rotation and reuse detection, logout and revocation (across instances too).

use crate::common::{Backend, TestApp, json};
use chrono::Duration;
use kyros::auth::accounts;
use kyros::model::Role;
use serde_json::{Value, json};

const PW: &str = "lifecycle password";

async fn login(app: &TestApp, user: &str) -> Value {
    let res = app.login(user, PW).await;
    assert_eq!(res.status(), 200);
    json(res).await
}

async fn refresh(app: &TestApp, token: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": token}));
    if let Some(ip) = xff {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.expect("refresh")
}

async fn refresh_rotates_and_a_replay_revokes_the_family(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("rita", PW, Role::User).await;
    let first = login(&app, "rita").await;
    let r1 = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    assert!(r1.len() >= 43);

    let res = refresh(&app, &r1, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let second = json(res).await;
    assert_eq!(second["token_type"], "bearer");
    assert_eq!(second["expires_in"], 7200);
    let r2 = second["refresh_token"].as_str().expect("r2").to_owned();
    assert_ne!(r2, r1);
    let access = second["access_token"].as_str().expect("access");
    assert_eq!(app.get_with_token("/auth/user", access).await.status(), 200);

    // After the grace period, presenting r1 again is theft: the whole family dies.
    app.clock.advance(Duration::seconds(11));
    let res = refresh(&app, &r1, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await["detail"],
        "Invalid or expired refresh token"
    );
    assert_eq!(
        refresh(&app, &r2, None).await.status(),
        401,
        "the family is revoked"
    );
    let rows = app.audit_rows("auth.refresh_reuse").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor_id, Some(app.state_user("rita").await.id));
    let text = format!("{:?}", app.audit_rows("auth.refresh").await);
    assert!(
        !text.contains(&r1) && !text.contains(&r2),
        "no refresh token in the audit log"
    );
}

async fn a_concurrent_refresh_of_one_client_gets_a_grace_period(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("gina", PW, Role::User).await;
    let r1 = login(&app, "gina").await["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    let a = refresh(&app, &r1, None).await;
    let b = refresh(&app, &r1, None).await;
    assert_eq!(
        (a.status().as_u16(), b.status().as_u16()),
        (200, 200),
        "the same client, within the grace period"
    );
    let ra = json(a).await["refresh_token"]
        .as_str()
        .expect("ra")
        .to_owned();
    let rb = json(b).await["refresh_token"]
        .as_str()
        .expect("rb")
        .to_owned();
    assert_eq!(refresh(&app, &ra, None).await.status(), 200);
    assert_eq!(refresh(&app, &rb, None).await.status(), 200);
}

/// The grace admits one replay: a consumed token presented three times from one address within
/// the grace gives one sibling at most, and the third presentation is theft (family revoked).
async fn the_grace_period_cannot_multiply_a_family(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("gus", PW, Role::User).await;
    let r1 = login(&app, "gus").await["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    let mut statuses = Vec::new();
    let mut live = Vec::new();
    for _ in 0..3 {
        let res = refresh(&app, &r1, None).await;
        statuses.push(res.status().as_u16());
        if res.status() == 200 {
            live.push(
                json(res).await["refresh_token"]
                    .as_str()
                    .expect("r")
                    .to_owned(),
            );
        }
        app.clock.advance(Duration::seconds(2));
    }
    assert_eq!(statuses, [200, 200, 401]);
    // The third presentation revoked the family: none of the successors works any more.
    for token in &live {
        assert_eq!(refresh(&app, token, None).await.status(), 401);
    }
    assert_eq!(app.audit_rows("auth.refresh_reuse").await.len(), 1);
}

async fn concurrent_refreshes_from_different_clients_rotate_once(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    app.create_user("carl", PW, Role::User).await;
    let r1 = login(&app, "carl").await["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    let attempts = (0..8).map(|i| {
        let ip = format!("198.51.100.{i}");
        let (app, r1) = (&app, r1.clone());
        async move { refresh(app, &r1, Some(&ip)).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for res in results {
        match res.status().as_u16() {
            200 => winners.push(
                json(res).await["refresh_token"]
                    .as_str()
                    .expect("r")
                    .to_owned(),
            ),
            401 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh rotates the token");
    // The others were replays from other clients: the family, winner included, is revoked.
    assert_eq!(
        refresh(&app, &winners[0], Some("198.51.100.1"))
            .await
            .status(),
        401
    );
}

async fn refresh_tokens_expire_and_die_with_their_user(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .var("REFRESH_TOKEN_EXPIRE_MINUTES", "60")
        .start()
        .await
    else {
        return;
    };
    app.create_user("exp", PW, Role::User).await;
    let r = login(&app, "exp").await["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    app.clock.advance(Duration::minutes(61));
    assert_eq!(refresh(&app, &r, None).await.status(), 401);

    let r = login(&app, "exp").await["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    let user = app.state_user("exp").await;
    accounts::set_active(&app.state, &user, false, kyros::audit::Actor::System)
        .await
        .expect("disable");
    assert_eq!(refresh(&app, &r, None).await.status(), 401);
}

async fn logout_revokes_only_the_callers_tokens(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("lola", PW, Role::User).await;
    app.create_user("mike", PW, Role::User).await;
    let lola = login(&app, "lola").await;
    let lola_other_device = login(&app, "lola").await;
    let mike = login(&app, "mike").await;
    let access = lola["access_token"].as_str().expect("a");

    // Lola cannot log Mike out by sending his refresh token.
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(access)
        .json(&json!({"refresh_token": mike["refresh_token"]}))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    // As the original: `token_revoked` says whether the refresh token sent was revoked.
    assert_eq!(
        json(res).await,
        json!({"message": "Logged out successfully", "token_revoked": false, "access_revoked": true})
    );
    assert_eq!(
        app.get_with_token("/auth/user", access).await.status(),
        401,
        "the access token is revoked"
    );
    assert_eq!(
        refresh(&app, mike["refresh_token"].as_str().expect("m"), None)
            .await
            .status(),
        200,
        "Mike's family lives"
    );
    let other = lola_other_device["access_token"].as_str().expect("o");
    assert_eq!(
        app.get_with_token("/auth/user", other).await.status(),
        200,
        "other devices stay logged in"
    );

    // With her own refresh token, the family goes too.
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(other)
        .json(&json!({"refresh_token": lola_other_device["refresh_token"]}))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"message": "Logged out successfully", "token_revoked": true, "access_revoked": true})
    );
    assert_eq!(
        refresh(
            &app,
            lola_other_device["refresh_token"].as_str().expect("r"),
            None
        )
        .await
        .status(),
        401
    );
    // An unknown refresh token: nothing of it was revoked, and the answer says so.
    let third = login(&app, "lola").await;
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(third["access_token"].as_str().expect("a"))
        .json(&json!({"refresh_token": "no-such-refresh-token"}))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"message": "Logged out successfully", "token_revoked": false, "access_revoked": true})
    );
    assert_eq!(app.audit_rows("auth.logout").await.len(), 3);
}

async fn logout_everywhere_and_account_changes_revoke_everything(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.create_user("ed", PW, Role::Moderator).await;
    let a = login(&app, "ed").await;
    let b = login(&app, "ed").await;
    let session = app.session("ed", PW).await;
    let res = app
        .client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(a["access_token"].as_str().expect("a"))
        .send()
        .await
        .expect("logout-all");
    assert_eq!(res.status(), 200);
    for token in [&a, &b] {
        assert_eq!(
            app.get_with_token("/auth/user", token["access_token"].as_str().expect("t"))
                .await
                .status(),
            401
        );
        assert_eq!(
            refresh(&app, token["refresh_token"].as_str().expect("r"), None)
                .await
                .status(),
            401
        );
    }
    let res = app
        .with_session(reqwest::Method::GET, "/auth/user", &session)
        .send()
        .await
        .expect("s");
    assert_eq!(res.status(), 401);

    // A role change revokes tokens that carry the old role; a fresh login works.
    let c = login(&app, "ed").await;
    let ed = app.state_user("ed").await;
    accounts::set_role(&app.state, &ed, Role::User, kyros::audit::Actor::System)
        .await
        .expect("role");
    assert_eq!(
        app.get_with_token("/auth/user", c["access_token"].as_str().expect("c"))
            .await
            .status(),
        401
    );
    let d = login(&app, "ed").await;
    let profile = json(
        app.get_with_token("/auth/user", d["access_token"].as_str().expect("d"))
            .await,
    )
    .await;
    assert_eq!(profile["role"], "user");

    // So does a password change.
    let ed = app.state_user("ed").await;
    accounts::set_password(
        &app.state,
        &ed,
        "a whole new password".to_owned().into(),
        kyros::audit::Actor::System,
    )
    .await
    .expect("pw");
    assert_eq!(
        app.get_with_token("/auth/user", d["access_token"].as_str().expect("d"))
            .await
            .status(),
        401
    );
}

async fn logout_on_one_instance_is_seen_by_another(backend: Backend) {
    let Some(a) = TestApp::spawn(backend).await else {
        return;
    };
    let Some(b) = TestApp::builder(backend)
        .var("SECRET_KEY", a.secret())
        .var(
            "REDIS_KEY_PREFIX",
            a.vars.value("REDIS_KEY_PREFIX").unwrap_or("unused:"),
        )
        .sharing_storage_with(&a)
        .start()
        .await
    else {
        return;
    };
    a.create_user("x", PW, Role::User).await;
    let token = login(&a, "x").await["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    assert_eq!(b.get_with_token("/auth/user", &token).await.status(), 200);
    let res = a
        .client
        .post(a.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    // Redis pub/sub delivers it at once; the database poll within half a second. Bounded wait.
    let mut tries = 0;
    while b.get_with_token("/auth/user", &token).await.status() != 401 {
        tries += 1;
        assert!(tries < 100, "instance b never learned of the revocation");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

backend_tests!(
    refresh_rotates_and_a_replay_revokes_the_family,
    a_concurrent_refresh_of_one_client_gets_a_grace_period,
    the_grace_period_cannot_multiply_a_family,
    concurrent_refreshes_from_different_clients_rotate_once,
    refresh_tokens_expire_and_die_with_their_user,
    logout_revokes_only_the_callers_tokens,
    logout_everywhere_and_account_changes_revoke_everything,
    logout_on_one_instance_is_seen_by_another,
);

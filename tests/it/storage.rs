//! The user store behaves the same on SQLite and PostgreSQL.

use crate::common::{Backend, TestApp};
use chrono::{Duration, TimeZone, Utc};
use kyros::auth::accounts;
use kyros::model::Role;
use kyros::store::StoreError;
use kyros::store::users::{self, NewUser};

fn new_user(name: &str, email: &str) -> NewUser {
    NewUser {
        username: name.into(),
        username_key: accounts::username_key(name).expect("valid name"),
        email: email.into(),
        password_hash: format!("hash-of-{name}"),
        role: Role::User,
        active: true,
    }
}

async fn users_round_trip_with_utc_timestamps(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let db = &app.state.db;
    let at = Utc
        .with_ymd_and_hms(2026, 3, 4, 5, 6, 7)
        .single()
        .expect("time")
        + Duration::microseconds(123_456);
    let created = users::create(db, new_user("Zed", "Zed@Example.org"), at)
        .await
        .expect("create");
    assert_eq!(
        created.email, "zed@example.org",
        "emails are stored lower-case"
    );

    let found = accounts::find_user(db, "Zed")
        .await
        .expect("query")
        .expect("found");
    assert_eq!(found.id, created.id);
    assert_eq!(found.created_at, at);
    assert_eq!(found.updated_at, at);
    assert_eq!(found.role, Role::User);
    assert!(found.active);
    // Names are compared in their PRECIS form (RFC 8265): case and width do not matter.
    for same in ["zed", "ZED", "\u{ff3a}\u{ff45}\u{ff44}"] {
        assert_eq!(
            accounts::find_user(db, same)
                .await
                .expect("query")
                .map(|u| u.id),
            Some(created.id),
            "{same}"
        );
    }
    assert_eq!(
        users::find_by_id(db, created.id)
            .await
            .expect("query")
            .expect("found")
            .username,
        "Zed"
    );
    assert!(
        users::find_by_id(db, uuid::Uuid::new_v4())
            .await
            .expect("query")
            .is_none()
    );
}

async fn usernames_and_emails_are_unique_ignoring_case(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let db = &app.state.db;
    let now = Utc::now();
    users::create(db, new_user("amy", "amy@example.org"), now)
        .await
        .expect("create");
    let dup_name = users::create(db, new_user("AMY", "other@example.org"), now).await;
    assert!(
        matches!(dup_name, Err(StoreError::Conflict("username"))),
        "{dup_name:?}"
    );
    let dup_mail = users::create(db, new_user("amy2", "AMY@example.org"), now).await;
    assert!(
        matches!(dup_mail, Err(StoreError::Conflict("email"))),
        "{dup_mail:?}"
    );
    assert_eq!(users::count(db).await.expect("count"), 1);
}

async fn updates_change_only_what_they_name(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let db = &app.state.db;
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let u = users::create(db, new_user("ben", "ben@example.org"), t0)
        .await
        .expect("create");
    let t1 = t0 + Duration::hours(1);
    users::set_role(db, u.id, Role::Admin, t1)
        .await
        .expect("role");
    users::set_active(db, u.id, false, t1)
        .await
        .expect("active");
    let got = users::find_by_id(db, u.id)
        .await
        .expect("q")
        .expect("found");
    assert_eq!(
        (got.role, got.active, got.updated_at, got.created_at),
        (Role::Admin, false, t1, t0)
    );

    assert!(
        !users::replace_password_hash(db, u.id, "stale", "new", t1)
            .await
            .expect("cas"),
        "stale expectation"
    );
    assert!(
        users::replace_password_hash(db, u.id, "hash-of-ben", "new", t1)
            .await
            .expect("cas")
    );
    assert_eq!(
        users::find_by_id(db, u.id)
            .await
            .expect("q")
            .expect("found")
            .password_hash,
        "new"
    );

    let missing = uuid::Uuid::new_v4();
    assert!(matches!(
        users::set_role(db, missing, Role::User, t1).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        users::delete(db, missing).await,
        Err(StoreError::NotFound)
    ));
    users::delete(db, u.id).await.expect("delete");
    assert!(users::find_by_id(db, u.id).await.expect("q").is_none());
}

async fn list_is_ordered_by_creation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let db = &app.state.db;
    let t0 = Utc::now();
    for (i, name) in ["c", "a", "b"].iter().enumerate() {
        users::create(
            db,
            new_user(name, &format!("{name}@example.org")),
            t0 + Duration::seconds(i as i64),
        )
        .await
        .expect("create");
    }
    let names: Vec<String> = users::list(db)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["c", "a", "b"]);
}

/// Rows written before names had a stored comparison form: after start-up they are found by any
/// spelling of their name, and a row whose form another row already holds keeps working by its
/// exact name (it cannot be merged silently).
async fn rows_from_before_keep_working(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let db = &app.state.db;
    let now = Utc::now();
    users::create(db, new_user("admin", "admin@example.org"), now)
        .await
        .expect("admin");
    // Two rows as an older version wrote them (no key): a plain one and a fullwidth look-alike
    // that the older version accepted beside `admin`.
    for (name, email) in [
        ("Legacy", "legacy@example.org"),
        (
            "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}",
            "fullwidth@example.org",
        ),
    ] {
        kyros::on_pool!(db, pool => sqlx::query(
            "INSERT INTO users (id, username, email, password_hash, role, active, created_at, updated_at) \
             VALUES ($1, $2, $3, 'x', 'user', $4, $5, $5)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(name)
        .bind(email)
        .bind(true)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
        .expect("legacy row"));
    }
    accounts::backfill_username_keys(db)
        .await
        .expect("backfill");
    let legacy = accounts::find_user(db, "LEGACY").await.expect("q");
    assert_eq!(legacy.map(|u| u.username).as_deref(), Some("Legacy"));
    let fullwidth = "\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}";
    let found = accounts::find_user(db, fullwidth)
        .await
        .expect("q")
        .expect("found");
    assert_eq!(
        found.username, fullwidth,
        "the exact name still finds the old row"
    );
    let found = accounts::find_user(db, "Admin")
        .await
        .expect("q")
        .expect("found");
    assert_eq!(
        found.username, "admin",
        "every other spelling is the keyed row's"
    );
    // Backfilling again changes nothing.
    accounts::backfill_username_keys(db).await.expect("again");
}

backend_tests!(
    rows_from_before_keep_working,
    users_round_trip_with_utc_timestamps,
    usernames_and_emails_are_unique_ignoring_case,
    updates_change_only_what_they_name,
    list_is_ordered_by_creation,
);

/// SQLite's write-ahead log does not grow without bound under constant writes: while a reader
/// holds a snapshot, the log keeps every write (the automatic checkpoint cannot restart it); once
/// the reader is done, the service's periodic checkpoint folds it into the database file and
/// truncates it, and a log restarted later is cut back to `WAL_SIZE_LIMIT`.
#[tokio::test]
async fn the_sqlite_write_ahead_log_is_folded_back_and_truncated() {
    use sqlx::Connection;
    let (dir, db) = crate::common::sqlite_file_db().await;
    let kyros::store::Db::Sqlite(sqlite) = &db else {
        panic!("no DATABASE_URL: SQLite")
    };
    let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
        .fetch_one(&sqlite.pool)
        .await
        .expect("pragma");
    assert_eq!(limit as u64, kyros::store::WAL_SIZE_LIMIT);

    let file = dir.path().join("kyros.db");
    let wal = dir.path().join("kyros.db-wal");
    // A reader with an open snapshot, as a long SSE replay or a busy pool would have.
    let url = format!("sqlite://{}", file.display());
    let mut reader = sqlx::SqliteConnection::connect(&url).await.expect("reader");
    sqlx::query("BEGIN")
        .execute(&mut reader)
        .await
        .expect("begin");
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut reader)
        .await
        .expect("read");
    for i in 0..400 {
        users::create(
            &db,
            new_user(&format!("wal-{i}"), &format!("wal-{i}@example.org")),
            Utc::now(),
        )
        .await
        .expect("user");
    }
    let grown = std::fs::metadata(&wal).expect("wal").len();
    assert!(
        grown > 2 * 1024 * 1024,
        "the log kept the writes behind the reader: {grown} bytes"
    );
    // While the reader holds its snapshot, the checkpoint cannot finish (it waits the busy
    // timeout, so this is not run here); once it is done, it does.
    sqlx::query("COMMIT")
        .execute(&mut reader)
        .await
        .expect("end");
    assert!(kyros::store::checkpoint_wal(&db).await.expect("checkpoint"));
    assert_eq!(std::fs::metadata(&wal).expect("wal").len(), 0);
    // Everything written is in the database file.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE username LIKE 'wal-%'")
        .fetch_one(&mut reader)
        .await
        .expect("count");
    assert_eq!(n, 400);
}

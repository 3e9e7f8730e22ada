//! Jobs: the original contract, the state machine, ownership, ETags and conditional requests.

use crate::common::{Backend, TestApp, json, python_etag};
use kyros::model::Role;
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "jobs test password";

async fn setup(backend: Backend) -> Option<(TestApp, String, String, String)> {
    let app = TestApp::spawn(backend).await?;
    app.create_user("ann", PW, Role::User).await;
    app.create_user("bob", PW, Role::User).await;
    app.create_user("mod", PW, Role::Moderator).await;
    let (ann, bob, m) = (
        app.token("ann", PW).await,
        app.token("bob", PW).await,
        app.token("mod", PW).await,
    );
    Some((app, ann, bob, m))
}

fn req(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let res = req(app, Method::POST, "/api/v1/jobs", token)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let job = json(res).await;
    assert_eq!(
        etag,
        python_etag(&job),
        "the ETag equals CPython's canonical form"
    );
    assert_eq!(
        location,
        format!("/api/v1/jobs/{}", job["id"].as_str().expect("id"))
    );
    job
}

async fn status(app: &TestApp, token: &str, id: &str, to: &str) -> reqwest::Response {
    req(
        app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status?status={to}"),
        token,
    )
    .send()
    .await
    .expect("status")
}

async fn the_lifecycle_follows_the_state_machine(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let job = create(&app, &ann, json!({"title": "  Build the model  ", "description": "nightly", "priority": 5, "metadata": {"k": "v"}})).await;
    assert_eq!(job["name"], "Build the model");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["description"], "nightly");
    assert_eq!(job["priority"], 5);
    assert_eq!(job["metadata"], json!({"k": "v"}));
    assert!(job["started_at"].is_null() && job["completed_at"].is_null());
    let id = job["id"].as_str().expect("id");

    let res = status(&app, &ann, id, "completed").await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        json(res).await["detail"],
        "Invalid status transition from pending to completed"
    );
    let res = status(&app, &ann, id, "running").await;
    assert_eq!(res.status(), 200);
    let running = json(res).await;
    assert!(running["started_at"].is_string());
    app.clock.advance(chrono::Duration::seconds(5));
    // The JSON body form works as well.
    let res = req(
        &app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status"),
        &ann,
    )
    .json(&json!({"status": "failed"}))
    .send()
    .await
    .expect("s");
    assert_eq!(res.status(), 200);
    let failed = json(res).await;
    assert!(failed["completed_at"].is_string());
    assert_eq!(
        status(&app, &ann, id, "running").await.status(),
        409,
        "failed → running is not allowed"
    );
    let retried = json(status(&app, &ann, id, "pending").await).await;
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["attempts"], 1);
    assert!(retried["started_at"].is_null() && retried["completed_at"].is_null());
    assert_eq!(status(&app, &ann, id, "cancelled").await.status(), 200);
    assert_eq!(
        status(&app, &ann, id, "pending").await.status(),
        409,
        "cancelled is final"
    );
    let res = status(&app, &ann, id, "exploded").await;
    assert_eq!(res.status(), 422);

    let res = req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &ann)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await,
        json!({"message": "Job deleted successfully"})
    );
    let res = req(&app, Method::GET, &format!("/api/v1/jobs/{id}"), &ann)
        .send()
        .await
        .expect("gone");
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["detail"], "Job not found");
}

async fn bad_input_gets_422_not_500(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    for (body, field) in [
        (json!({"title": "   "}), "title"),
        (json!({}), "title"),
        (json!({"title": "x".repeat(256)}), "title"),
        (json!({"title": "ok", "priority": 5000}), "priority"),
        (json!({"title": "ok", "metadata": [1]}), "metadata"),
    ] {
        let res = req(&app, Method::POST, "/api/v1/jobs/", &ann)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 422, "{body}");
        assert_eq!(json(res).await["detail"][0]["loc"][1], field);
    }
    let res = req(&app, Method::GET, "/api/v1/jobs?limit=5000", &ann)
        .send()
        .await
        .expect("cap");
    assert_eq!(res.status(), 422, "the limit is capped");
    let res = req(&app, Method::GET, "/api/v1/jobs?status=weird", &ann)
        .send()
        .await
        .expect("status");
    assert_eq!(res.status(), 422);
}

async fn users_see_their_own_jobs_and_moderators_all(backend: Backend) {
    let Some((app, ann, bob, m)) = setup(backend).await else {
        return;
    };
    let a = create(&app, &ann, json!({"title": "ann's"})).await;
    create(&app, &bob, json!({"title": "bob's"})).await;
    let id = a["id"].as_str().expect("id");
    let names = |v: Value| {
        v.as_array()
            .expect("array")
            .iter()
            .map(|j| j["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            json(
                req(&app, Method::GET, "/api/v1/jobs", &ann)
                    .send()
                    .await
                    .expect("l")
            )
            .await
        ),
        [json!("ann's")]
    );
    assert_eq!(
        names(
            json(
                req(&app, Method::GET, "/api/v1/jobs/", &m)
                    .send()
                    .await
                    .expect("l")
            )
            .await
        )
        .len(),
        2
    );
    assert_eq!(
        req(&app, Method::GET, &format!("/api/v1/jobs/{id}"), &bob)
            .send()
            .await
            .expect("g")
            .status(),
        404
    );
    assert_eq!(
        status(&app, &bob, id, "running").await.status(),
        404,
        "bob cannot change ann's job"
    );
    assert_eq!(
        req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &bob)
            .send()
            .await
            .expect("d")
            .status(),
        404
    );
    assert_eq!(
        status(&app, &m, id, "running").await.status(),
        200,
        "a moderator can"
    );
    assert_eq!(
        app.client
            .get(app.url("/api/v1/jobs"))
            .send()
            .await
            .expect("anon")
            .status(),
        401
    );
}

async fn lists_are_ordered_filtered_paged_and_conditional(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        app.clock.advance(chrono::Duration::seconds(1));
        ids.push(create(&app, &ann, json!({"title": format!("job {i}")})).await["id"].clone());
    }
    status(&app, &ann, ids[0].as_str().expect("id"), "running").await;
    let res = req(&app, Method::GET, "/api/v1/jobs?limit=2&skip=1", &ann)
        .send()
        .await
        .expect("page");
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let page = json(res).await;
    assert_eq!(etag, python_etag(&page));
    let page_ids: Vec<_> = page
        .as_array()
        .expect("array")
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(
        page_ids,
        [ids[3].clone(), ids[2].clone()],
        "newest first, stable pages"
    );
    let running = json(
        req(&app, Method::GET, "/api/v1/jobs?status=running", &ann)
            .send()
            .await
            .expect("f"),
    )
    .await;
    assert_eq!(running.as_array().expect("array").len(), 1);

    for inm in [
        etag.clone(),
        etag.trim_matches('"').to_owned(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".into(),
    ] {
        let res = req(&app, Method::GET, "/api/v1/jobs?limit=2&skip=1", &ann)
            .header("if-none-match", &inm)
            .send()
            .await
            .expect("304");
        assert_eq!(res.status(), 304, "{inm}");
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert!(res.headers().get("content-type").is_none());
        assert!(res.bytes().await.expect("body").is_empty());
    }
    let res = req(&app, Method::GET, "/api/v1/jobs?limit=2&skip=1", &ann)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .expect("200");
    assert_eq!(res.status(), 200);
}

async fn if_match_guards_updates(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let job = create(&app, &ann, json!({"title": "guarded"})).await;
    let id = job["id"].as_str().expect("id");
    let res = req(&app, Method::GET, &format!("/api/v1/jobs/{id}"), &ann)
        .send()
        .await
        .expect("get");
    let etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    let res = req(
        &app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status?status=running"),
        &ann,
    )
    .header("if-match", "\"stale\"")
    .send()
    .await
    .expect("stale");
    assert_eq!(res.status(), 412);
    let res = req(
        &app,
        Method::PUT,
        &format!("/api/v1/jobs/{id}/status?status=running"),
        &ann,
    )
    .header("if-match", &etag)
    .send()
    .await
    .expect("fresh");
    assert_eq!(res.status(), 200);
    let new_etag = res.headers()["etag"].to_str().expect("ascii").to_owned();
    assert_ne!(new_etag, etag);
    let res = req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &ann)
        .header("if-match", &etag)
        .send()
        .await
        .expect("old");
    assert_eq!(res.status(), 412, "the old ETag no longer matches");
    let res = req(&app, Method::DELETE, &format!("/api/v1/jobs/{id}"), &ann)
        .header("if-match", &new_etag)
        .send()
        .await
        .expect("new");
    assert_eq!(res.status(), 200);
}

fn next_link(res: &reqwest::Response) -> Option<String> {
    let link = res.headers().get("link")?.to_str().expect("ascii");
    let target = link.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(target.to_owned())
}

/// Keyset pagination: following `Link: rel="next"` visits every job the caller may see exactly
/// once, newest first, even when jobs arrive between pages; a cursor the caller may not see,
/// and `after` with `skip`, are 422s.
async fn keyset_pages_follow_the_link(backend: Backend) {
    let Some((app, ann, bob, m)) = setup(backend).await else {
        return;
    };
    for i in 0..7 {
        create(&app, &ann, json!({"title": format!("ann {i}")})).await;
    }
    let bobs = create(&app, &bob, json!({"title": "bob's"})).await;
    let all = json(
        req(&app, Method::GET, "/api/v1/jobs?limit=1000", &ann)
            .send()
            .await
            .expect("all"),
    )
    .await;
    let all: Vec<String> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(all.len(), 7);

    let mut seen = Vec::new();
    let mut next = Some("/api/v1/jobs?limit=3".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let res = req(&app, Method::GET, &path, &ann)
            .send()
            .await
            .expect("page");
        assert_eq!(res.status(), 200, "{path}");
        next = next_link(&res);
        let page = json(res).await;
        seen.extend(
            page.as_array()
                .expect("page")
                .iter()
                .map(|j| j["id"].as_str().expect("id").to_owned()),
        );
        pages += 1;
        if pages == 1 {
            // A job created between pages is newer than the cursor: not in the later pages.
            // (The test clock stands still unless moved; jobs of one instant are ordered by id.)
            app.clock.advance(chrono::Duration::seconds(1));
            create(&app, &ann, json!({"title": "late"})).await;
        }
        assert!(pages <= 4, "the pages do not end");
    }
    assert_eq!(pages, 3, "3 + 3 + 1");
    assert_eq!(seen, all, "every job once, in the list's order");

    // With a status filter the link keeps it.
    let res = req(
        &app,
        Method::GET,
        "/api/v1/jobs?limit=2&status=pending",
        &ann,
    )
    .send()
    .await
    .expect("status page");
    let link = next_link(&res).expect("a full page links the next");
    assert!(link.contains("status=pending"), "{link}");

    // Another user's job is no cursor (the same answer as an unknown id); skip + after is refused.
    for path in [
        format!("/api/v1/jobs?after={}", bobs["id"].as_str().expect("id")),
        format!("/api/v1/jobs?after={}", uuid::Uuid::new_v4()),
    ] {
        let res = req(&app, Method::GET, &path, &ann)
            .send()
            .await
            .expect("cursor");
        assert_eq!(res.status(), 422);
        assert_eq!(
            json(res).await["detail"][0]["loc"],
            json!(["query", "after"])
        );
    }
    let res = req(
        &app,
        Method::GET,
        &format!("/api/v1/jobs?skip=1&after={}", all[0]),
        &ann,
    )
    .send()
    .await
    .expect("skip and after");
    assert_eq!(res.status(), 422);
    assert_eq!(
        json(res).await["detail"][0]["loc"],
        json!(["query", "skip"])
    );
    // A moderator sees every job, so bob's job is a cursor for them.
    let res = req(
        &app,
        Method::GET,
        &format!("/api/v1/jobs?after={}", bobs["id"].as_str().expect("id")),
        &m,
    )
    .send()
    .await
    .expect("moderator cursor");
    assert_eq!(res.status(), 200);
}

/// On SQLite every form of the list and of the claim reads an index in its order: no table scan
/// and no sort, so a deep keyset page costs what the first one does and a claim one entry.
#[tokio::test]
async fn every_list_query_reads_an_index_in_order() {
    use kyros::store::jobs::{ListFilter, list_sql};
    let (_dir, db) = crate::common::sqlite_file_db().await;
    let kyros::store::Db::Sqlite(sqlite) = &db else {
        panic!("SQLite expected");
    };
    let at = chrono::Utc::now();
    let id = uuid::Uuid::new_v4();
    for status in [None, Some("pending")] {
        for owner in [None, Some(id)] {
            for after in [None, Some((at, id))] {
                let filter = ListFilter {
                    status,
                    owner,
                    after,
                    ..Default::default()
                };
                let sql = format!("EXPLAIN QUERY PLAN {}", list_sql(&filter));
                let mut query =
                    sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql));
                if let Some(s) = status {
                    query = query.bind(s);
                }
                if let Some(o) = owner {
                    query = query.bind(o);
                }
                if let Some((a, i)) = after {
                    query = query.bind(a).bind(i);
                }
                let plan: Vec<String> = query
                    .bind(100_i64)
                    .bind(0_i64)
                    .fetch_all(&sqlite.pool)
                    .await
                    .expect("plan")
                    .into_iter()
                    .map(|r| r.3)
                    .collect();
                let plan = plan.join(" | ");
                assert!(plan.contains("USING INDEX jobs_"), "{filter:?}: {plan}");
                if after.is_some() {
                    // The cursor is a range search in the index, not a walk from its start.
                    assert!(plan.contains("(created_at,id)<(?,?)"), "{filter:?}: {plan}");
                }
                if owner.is_some() && status.is_some() {
                    assert!(
                        plan.contains("jobs_owner_status_page"),
                        "{filter:?}: {plan}"
                    );
                }
                assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: sorts: {plan}");
                assert!(
                    !plan.starts_with("SCAN jobs |") && plan != "SCAN jobs",
                    "{filter:?}: {plan}"
                );
            }
        }
    }

    // Claims and leases, each on the index made for it (a claim reads one entry, in order).
    use kyros::store::jobs::{
        CLAIM_ANY_SQL, CLAIM_OWN_SQL, EXPIRED_LEASES_SQLITE, LEASED_BY_SQLITE,
    };
    for (sql, index, bind_id, bind_at) in [
        (CLAIM_ANY_SQL, "jobs_claim", false, false),
        (CLAIM_OWN_SQL, "jobs_owner_claim", true, false),
        (EXPIRED_LEASES_SQLITE, "jobs_lease_expiry", false, true),
        (LEASED_BY_SQLITE, "jobs_lease_owner", true, false),
    ] {
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {sql}"
        )));
        if bind_id {
            query = query.bind(id);
        }
        if bind_at {
            query = query.bind(at);
        }
        let plan: Vec<String> = query
            .fetch_all(&sqlite.pool)
            .await
            .expect("plan")
            .into_iter()
            .map(|r| r.3)
            .collect();
        let plan = plan.join(" | ");
        assert!(
            plan.contains(&format!("USING INDEX {index} ")),
            "{index}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{index}: sorts: {plan}");
    }

    // The event log: each filter an index range in id order (a resume, a live tail, the latest).
    use kyros::store::events::{Direction, EventFilter, events_sql};
    for direction in [Direction::After, Direction::Latest] {
        for (stream, task, owner) in [
            (Some("orchestrator"), None, None),
            (None, Some("t"), None),
            (None, None, Some(id)),
            (Some("orchestrator"), None, Some(id)),
        ] {
            let filter = EventFilter {
                stream: stream.map(str::to_owned),
                task_id: task.map(str::to_owned),
                run_id: None,
                owner_id: owner,
                after_id: 0,
                lifecycle_only: false,
            };
            let sql = format!("EXPLAIN QUERY PLAN {}", events_sql(&filter, direction));
            let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql));
            if direction == Direction::After {
                query = query.bind(5_i64);
            }
            if let Some(s) = stream {
                query = query.bind(s);
            }
            if let Some(t) = task {
                query = query.bind(t);
            }
            if let Some(o) = owner {
                query = query.bind(o);
            }
            let plan: Vec<String> = query
                .bind(100_i64)
                .fetch_all(&sqlite.pool)
                .await
                .expect("plan")
                .into_iter()
                .map(|r| r.3)
                .collect();
            let plan = plan.join(" | ");
            assert!(plan.contains("USING INDEX events_"), "{filter:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: sorts: {plan}");
        }
    }
}

/// The same property on PostgreSQL, where plans depend on statistics: with sequential scans,
/// sorts and bitmap scans priced out (`enable_* = off`), every list, claim and lease query and
/// every read of the event log is an index scan in the query's order — so an index able to serve
/// it exists (on a large table the planner then has it to choose; `bench/scale.sh` measures it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_every_hot_query_from_an_index_in_order() {
    use kyros::store::events::{Direction, EventFilter, events_sql};
    use kyros::store::jobs::{
        CLAIM_ANY_PG, CLAIM_OWN_PG, EXPIRED_LEASES_SQL, LEASED_BY_SQL, ListFilter, list_sql,
    };
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let kyros::store::Db::Postgres(pool) = &app.state.db else {
        panic!("PostgreSQL expected");
    };
    let mut conn = pool.acquire().await.expect("connection");
    for setting in ["enable_seqscan", "enable_sort", "enable_bitmapscan"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("SET {setting} = off")))
            .execute(&mut *conn)
            .await
            .expect("set");
    }
    let at = chrono::Utc::now();
    let id = uuid::Uuid::new_v4();
    let check = |what: String, plan: Vec<String>| {
        let plan = plan.join("\n");
        assert!(plan.contains("Index"), "{what}: no index: {plan}");
        assert!(
            !plan.contains("Seq Scan"),
            "{what}: scans the table: {plan}"
        );
        assert!(!plan.contains("Sort"), "{what}: sorts: {plan}");
    };

    for status in [None, Some("pending")] {
        for owner in [None, Some(id)] {
            for after in [None, Some((at, id))] {
                let filter = ListFilter {
                    status,
                    owner,
                    after,
                    ..Default::default()
                };
                let sql = format!("EXPLAIN {}", list_sql(&filter));
                let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
                if let Some(s) = status {
                    query = query.bind(s);
                }
                if let Some(o) = owner {
                    query = query.bind(o);
                }
                if let Some((a, i)) = after {
                    query = query.bind(a).bind(i);
                }
                let plan = query
                    .bind(100_i64)
                    .bind(0_i64)
                    .fetch_all(&mut *conn)
                    .await
                    .expect("plan");
                check(format!("{filter:?}"), plan);
            }
        }
    }

    let claim = |sql: &str| format!("EXPLAIN {sql}");
    let labels = sqlx::types::Json(vec!["gpu".to_owned()]);
    let plan = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(claim(CLAIM_ANY_PG)))
        .bind(&labels)
        .fetch_all(&mut *conn)
        .await
        .expect("plan");
    check("claim from the shared queue".into(), plan);
    let plan = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(claim(CLAIM_OWN_PG)))
        .bind(id)
        .bind(&labels)
        .fetch_all(&mut *conn)
        .await
        .expect("plan");
    check("claim of one owner".into(), plan);
    let plan = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "EXPLAIN {EXPIRED_LEASES_SQL}"
    )))
    .bind(at)
    .fetch_all(&mut *conn)
    .await
    .expect("plan");
    // Which index serves the lease queries is the planner's choice from statistics (an empty
    // table here); that one can serve them is the property.
    check("expired leases".into(), plan);
    let plan =
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!("EXPLAIN {LEASED_BY_SQL}")))
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .expect("plan");
    check("an agent's leases".into(), plan);

    for direction in [Direction::After, Direction::Latest] {
        for (stream, task, owner) in [
            (None, None, None),
            (Some("orchestrator"), None, None),
            (None, Some("t"), None),
            (None, None, Some(id)),
        ] {
            let filter = EventFilter {
                stream: stream.map(str::to_owned),
                task_id: task.map(str::to_owned),
                run_id: None,
                owner_id: owner,
                after_id: 0,
                lifecycle_only: false,
            };
            let sql = format!("EXPLAIN {}", events_sql(&filter, direction));
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            if direction == Direction::After {
                query = query.bind(5_i64);
            }
            if let Some(s) = stream {
                query = query.bind(s);
            }
            if let Some(t) = task {
                query = query.bind(t);
            }
            if let Some(o) = owner {
                query = query.bind(o);
            }
            let plan = query
                .bind(100_i64)
                .fetch_all(&mut *conn)
                .await
                .expect("plan");
            if owner.is_some() {
                assert!(
                    plan.join("\n").contains("events_owner"),
                    "{filter:?}: {plan:?}"
                );
            }
            check(format!("events {direction:?} {filter:?}"), plan);
        }
    }
}

/// The names of a job list answer, in order.
async fn titles(app: &TestApp, token: &str, query: &str) -> (Vec<String>, Option<String>) {
    let res = req(app, Method::GET, &format!("/api/v1/jobs{query}"), token)
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), 200, "{query}");
    let total = res
        .headers()
        .get("x-total-count")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let list = json(res).await;
    let names = list
        .as_array()
        .expect("array")
        .iter()
        .map(|j| j["name"].as_str().expect("name").to_owned())
        .collect();
    (names, total)
}

async fn lists_are_searched_sorted_filtered_and_counted(backend: Backend) {
    let Some((app, ann, bob, m)) = setup(backend).await else {
        return;
    };
    for (title, priority) in [
        ("Nightly build", 1),
        ("nightly_tests 100%", 5),
        ("Deploy", 3),
    ] {
        create(&app, &ann, json!({"title": title, "priority": priority})).await;
        app.clock.advance(chrono::Duration::seconds(10));
    }
    let middle = kyros::clock::Clock::now(&*app.clock) - chrono::Duration::seconds(15);
    create(&app, &bob, json!({"title": "bob's nightly"})).await;

    // Search: anywhere in the title, any case; % and _ are themselves.
    assert_eq!(
        titles(&app, &ann, "?q=NIGHTLY&total=true").await,
        (
            vec!["nightly_tests 100%".to_owned(), "Nightly build".to_owned()],
            Some("2".to_owned())
        )
    );
    assert_eq!(
        titles(&app, &ann, "?q=100%25").await.0,
        ["nightly_tests 100%"]
    );
    assert_eq!(titles(&app, &ann, "?q=y_t").await.0, ["nightly_tests 100%"]);
    assert!(
        titles(&app, &ann, "?q=y%25t").await.0.is_empty(),
        "% is not a wildcard"
    );
    // A user sees only their own; a moderator everybody's, by owner, with owner names.
    assert_eq!(
        titles(&app, &m, "?q=nightly&total=true").await.1,
        Some("3".to_owned())
    );
    assert_eq!(titles(&app, &m, "?owner=bob").await.0, ["bob's nightly"]);
    assert!(
        titles(&app, &ann, "?owner=bob").await.0.is_empty(),
        "not ann's to see"
    );
    assert!(titles(&app, &m, "?owner=nobody").await.0.is_empty());
    let res = req(&app, Method::GET, "/api/v1/jobs?owner=ANN", &m)
        .send()
        .await
        .expect("list");
    let list = json(res).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(3),
        "usernames compare as at login"
    );
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|j| j["owner_name"] == "ann")
    );
    let res = req(&app, Method::GET, "/api/v1/jobs", &ann)
        .send()
        .await
        .expect("list");
    assert!(
        json(res).await[0].get("owner_name").is_none(),
        "a user's own list names nobody"
    );
    // Sorting.
    assert_eq!(
        titles(&app, &ann, "?sort=priority").await.0,
        ["nightly_tests 100%", "Deploy", "Nightly build"]
    );
    assert_eq!(
        titles(&app, &ann, "?sort=title&order=asc").await.0,
        ["Deploy", "Nightly build", "nightly_tests 100%"]
    );
    assert_eq!(
        titles(&app, &ann, "?order=asc").await.0,
        ["Nightly build", "nightly_tests 100%", "Deploy"]
    );
    // Submission window.
    let from = middle.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(
        titles(
            &app,
            &ann,
            &format!("?created_from={}", from.replace('+', "%2B"))
        )
        .await
        .0,
        ["Deploy"]
    );
    assert_eq!(
        titles(
            &app,
            &ann,
            &format!("?created_to={}&sort=title", from.replace('+', "%2B"))
        )
        .await
        .0,
        ["nightly_tests 100%", "Nightly build"]
    );
    // Keyset pages follow the default order only; bad values are 422s.
    let first = titles(&app, &ann, "?limit=1").await;
    assert_eq!(first.0.len(), 1);
    for bad in [
        format!("?sort=priority&after={}", uuid::Uuid::new_v4()),
        "?sort=owner".to_owned(),
        "?order=up".to_owned(),
        format!("?q={}", "x".repeat(256)),
        "?created_from=yesterday".to_owned(),
    ] {
        let res = req(&app, Method::GET, &format!("/api/v1/jobs{bad}"), &ann)
            .send()
            .await
            .expect("list");
        assert_eq!(res.status(), 422, "{bad}");
    }
}

async fn the_overview_counts_in_the_database(backend: Backend) {
    let Some((app, ann, _, _)) = setup(backend).await else {
        return;
    };
    let empty = req(&app, Method::GET, "/api/v1/jobs/overview", &ann)
        .send()
        .await
        .expect("overview");
    assert_eq!(empty.status(), 200);
    let empty = json(empty).await;
    assert_eq!(empty["total"], 0);
    assert!(empty["oldest_pending"].is_null());
    assert_eq!(empty["series"].as_array().map(Vec::len), Some(24));
    assert_eq!(empty["counts"]["pending"], 0);

    let old = create(&app, &ann, json!({"title": "waiting longest"})).await;
    app.clock.advance(chrono::Duration::hours(2));
    let (ann, bob, m) = (
        app.token("ann", PW).await,
        app.token("bob", PW).await,
        app.token("mod", PW).await,
    );
    let done = create(&app, &ann, json!({"title": "done"})).await;
    let failed = create(&app, &ann, json!({"title": "failed"})).await;
    create(&app, &bob, json!({"title": "bob's"})).await;
    for (job, to) in [(&done, "completed"), (&failed, "failed")] {
        let id = job["id"].as_str().expect("id");
        assert_eq!(status(&app, &ann, id, "running").await.status(), 200);
        assert_eq!(status(&app, &ann, id, to).await.status(), 200);
    }
    app.clock.advance(chrono::Duration::minutes(1));
    let res = req(&app, Method::GET, "/api/v1/jobs/overview?hours=6", &ann)
        .send()
        .await
        .expect("overview");
    let o = json(res).await;
    assert_eq!(o["total"], 3, "ann's jobs only: {o}");
    assert_eq!(o["counts"]["pending"], 1);
    assert_eq!(o["counts"]["completed"], 1);
    assert_eq!(o["counts"]["failed"], 1);
    assert_eq!(o["counts"]["cancelled"], 0);
    assert_eq!(o["oldest_pending"]["id"], old["id"]);
    assert!(
        o["oldest_pending"]["waiting_secs"]
            .as_i64()
            .is_some_and(|s| s >= 7200)
    );
    let series = o["series"].as_array().expect("series");
    assert_eq!(series.len(), 6);
    let sum = |field: &str| {
        series
            .iter()
            .map(|b| b[field].as_i64().expect("n"))
            .sum::<i64>()
    };
    assert_eq!(
        (sum("submitted"), sum("completed"), sum("failed")),
        (3, 1, 1)
    );
    assert!(
        series.windows(2).all(|w| {
            let at = |b: &Value| {
                chrono::DateTime::parse_from_rfc3339(b["at"].as_str().expect("at")).expect("time")
            };
            (at(&w[1]) - at(&w[0])).num_seconds() == 3600
        }),
        "hourly buckets, oldest first"
    );
    let res = req(&app, Method::GET, "/api/v1/jobs/overview", &m)
        .send()
        .await
        .expect("overview");
    assert_eq!(
        json(res).await["total"],
        4,
        "a moderator counts everybody's"
    );
    for bad in [
        "?hours=0",
        "?hours=721",
        "?bucket_secs=59",
        "?hours=720&bucket_secs=60",
    ] {
        let res = req(
            &app,
            Method::GET,
            &format!("/api/v1/jobs/overview{bad}"),
            &ann,
        )
        .send()
        .await
        .expect("overview");
        assert_eq!(res.status(), 422, "{bad}");
    }
}

async fn bulk_changes_and_reruns_go_through_the_state_machine(backend: Backend) {
    let Some((app, ann, bob, _)) = setup(backend).await else {
        return;
    };
    let pending = create(&app, &ann, json!({"title": "pending"})).await;
    let running = create(&app, &ann, json!({"title": "running"})).await;
    let done = create(
        &app,
        &ann,
        json!({"title": "done", "priority": 7, "metadata": {"k": 1}, "requires": ["gpu"]}),
    )
    .await;
    let bobs = create(&app, &bob, json!({"title": "bob's"})).await;
    let id = |j: &Value| j["id"].as_str().expect("id").to_owned();
    assert_eq!(
        status(&app, &ann, &id(&running), "running").await.status(),
        200
    );
    for to in ["running", "completed"] {
        assert_eq!(status(&app, &ann, &id(&done), to).await.status(), 200);
    }
    let res = req(&app, Method::POST, "/api/v1/jobs/bulk", &ann)
        .json(&json!({"action": "cancel", "ids": [id(&pending), id(&running), id(&done), id(&bobs), id(&pending)]}))
        .send()
        .await
        .expect("bulk");
    assert_eq!(res.status(), 200);
    let answer = json(res).await;
    assert_eq!(answer["succeeded"], 2);
    assert_eq!(answer["failed"], 2, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "an id given twice is done once");
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["job"]["status"], "cancelled");
    assert_eq!(results[1]["job"]["status"], "cancelled");
    assert_eq!(results[2]["status"], 409, "completed cannot be cancelled");
    assert!(
        results[2]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("completed"))
    );
    assert_eq!(
        results[3]["status"], 404,
        "bob's job does not exist for ann"
    );
    let res = req(
        &app,
        Method::GET,
        &format!("/api/v1/jobs/{}", id(&bobs)),
        &bob,
    )
    .send()
    .await
    .expect("bob's");
    assert_eq!(json(res).await["status"], "pending", "untouched");
    for bad in [
        json!({"action": "cancel", "ids": []}),
        json!({"action": "delete", "ids": [id(&pending)]}),
        json!({"action": "retry", "ids": (0..101).map(|_| uuid::Uuid::new_v4()).collect::<Vec<_>>()}),
    ] {
        let res = req(&app, Method::POST, "/api/v1/jobs/bulk", &ann)
            .json(&bad)
            .send()
            .await
            .expect("bulk");
        assert_eq!(res.status(), 422, "{bad}");
    }

    // Run again: a new pending job with the same input, the caller's.
    let res = req(
        &app,
        Method::POST,
        &format!("/api/v1/jobs/{}/rerun", id(&done)),
        &ann,
    )
    .send()
    .await
    .expect("rerun");
    assert_eq!(res.status(), 201);
    let again = json(res).await;
    assert_ne!(again["id"], done["id"]);
    assert_eq!(again["status"], "pending");
    assert_eq!(again["attempts"], 0);
    for field in ["name", "priority", "metadata", "requires", "description"] {
        assert_eq!(again[field], done[field], "{field}");
    }
    let res = req(
        &app,
        Method::POST,
        &format!("/api/v1/jobs/{}/rerun", id(&bobs)),
        &ann,
    )
    .send()
    .await
    .expect("rerun");
    assert_eq!(res.status(), 404);
}

backend_tests!(
    keyset_pages_follow_the_link,
    the_lifecycle_follows_the_state_machine,
    bad_input_gets_422_not_500,
    users_see_their_own_jobs_and_moderators_all,
    lists_are_ordered_filtered_paged_and_conditional,
    if_match_guards_updates,
    lists_are_searched_sorted_filtered_and_counted,
    the_overview_counts_in_the_database,
    bulk_changes_and_reruns_go_through_the_state_machine,
);

//! `tollgate seed --demo` through the CLI, on both databases: the demo app's users, plans,
//! AI calls and recovery cases are there and consistent (`ledger verify`, the API's own view
//! of a user), seeding again adds nothing, and an app `demo` the seed did not make is left alone.

use serde_json::Value;
use tollgate::store::ledger::{self, Target};
use tollgate::store::{identity, migrate, recovery, usage};

use crate::cli::{as_refs, db_vars, run};
use crate::helpers::{TestDb, spawn_app_on};

/// Every ledger entry and usage record of the demo's users: what a second seed must not add to.
async fn footprint(db: &tollgate::store::Db, app_id: i64) -> (usize, usize, i64) {
    let (mut entries, mut calls, mut balance) = (0, 0, 0);
    for i in 1..=12 {
        let u = identity::user_by_external_id(db, app_id, &format!("demo-user-{i:02}"))
            .await
            .unwrap()
            .unwrap();
        let t = Target {
            app_id,
            user_id: u.id,
        };
        entries += ledger::entries(db, t, None, 1000).await.unwrap().len();
        calls += usage::list(db, t, None, 1000).await.unwrap().len();
        balance += ledger::balances(db, t).await.unwrap().balance;
    }
    (entries, calls, balance)
}

#[tokio::test]
async fn the_demo_seed_writes_a_consistent_try_out_instance_once() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let vars = db_vars(&test_db);
    let vars = as_refs(&vars);

    let (code, stdout, stderr) = run(&["seed"], &vars).await;
    assert_eq!(
        code, 2,
        "seed without a data set is a usage error: {stdout}{stderr}"
    );
    assert!(stderr.contains("--demo"), "{stderr}");

    let (code, stdout, stderr) = run(&["seed", "--demo"], &vars).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "seeded app demo: 12 users, 21 store deliveries applied, 64 AI calls, \
             recovery cases: 1 lost, 1 open, 2 recovered"
        ),
        "{stdout}"
    );
    let app = identity::app_by_slug(&db, "demo").await.unwrap().unwrap();
    let (entries, calls, balance) = footprint(&db, app.id).await;
    assert_eq!(calls, 64);
    assert!(
        entries > 64 * 2,
        "a hold and its settle per call, and grants: {entries}"
    );
    let (code, stdout, stderr) = run(&["ledger", "verify"], &vars).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("12 account(s) match"), "{stdout}");

    // Each delivery went through the processing code and is listed as processed.
    let deliveries = tollgate::store::billing::webhooks(&db, None, Some(app.id), 100)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 21);
    assert!(
        deliveries.iter().all(|d| d.status == "processed"),
        "{deliveries:?}"
    );

    // The cases, user by user: 5 and 6 recovered, 7 open, 8 lost.
    for (i, state) in [(5, "recovered"), (6, "recovered"), (7, "open"), (8, "lost")] {
        let u = identity::user_by_external_id(&db, app.id, &format!("demo-user-{i:02}"))
            .await
            .unwrap()
            .unwrap();
        let cases = recovery::cases(
            &db,
            Target {
                app_id: app.id,
                user_id: u.id,
            },
        )
        .await
        .unwrap();
        assert_eq!(cases.len(), 1, "user {i}: {cases:?}");
        assert_eq!(cases[0].state, state, "user {i}");
    }

    // Again: nothing added, and it says so.
    let (code, stdout, stderr) = run(&["seed", "--demo"], &vars).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("was seeded before; nothing added"),
        "{stdout}"
    );
    assert_eq!(footprint(&db, app.id).await, (entries, calls, balance));

    // The API sees what the seed wrote: a Pro subscriber's plan and calls.
    let (code, stdout, stderr) = run(
        &["keys", "create", "--app", "demo", "--user", "demo-user-01"],
        &vars,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.lines().last().unwrap().to_string();
    let server = spawn_app_on(
        test_db,
        |_| {},
        tollgate::startup::Role::Api,
        axum::Router::new(),
    )
    .await;
    let get = async |path: &str| -> Value {
        let r = server.client.get(server.url(path)).bearer_auth(&key).send();
        r.await.unwrap().json().await.unwrap()
    };
    let me = get("/v1/me").await;
    assert_eq!(me["plan"]["id"], "pro", "{me}");
    assert_eq!(me["entitlements"], serde_json::json!(["premium"]), "{me}");
    let used = get("/v1/me/usage").await;
    let records = used["data"].as_array().expect("a list of calls");
    assert_eq!(records.len(), 7, "user 1 made 2 + 5 % 7 calls: {used}");
    assert!(records.iter().all(|r| r["model"] == "mock"), "{used}");
    drop(db);
}

#[tokio::test]
async fn an_app_named_demo_that_the_seed_did_not_make_is_left_alone() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let vars = db_vars(&test_db);
    let vars = as_refs(&vars);
    let (code, _, stderr) = run(&["apps", "create", "demo"], &vars).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&["seed", "--demo"], &vars).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("exists and the demo seed did not make it; nothing was seeded"),
        "{stderr}"
    );
    let app = identity::app_by_slug(&db, "demo").await.unwrap().unwrap();
    assert!(
        identity::user_by_external_id(&db, app.id, "demo-user-01")
            .await
            .unwrap()
            .is_none()
    );
}

//! A process killed between reserve and settle: the hold it leaves is resolved by the expiry job
//! in another process (settled at its recorded usage, else released) and the ledger verifies.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate::domain::identity::KeyKind;
use tollgate::store::identity::{self, KeySpec};
use tollgate::store::ledger::{self, Credit, Note, Target};
use tollgate::store::migrate;

use crate::helpers::TestDb;
use crate::jobs::wait_until;
use crate::jobs_processes::{spawn_api, spawn_worker, terminate};

const CREDIT: i64 = 1_000_000;

#[tokio::test]
async fn holds_of_a_killed_process_are_settled_at_their_usage_or_released_by_the_expiry_job() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let app = identity::create_app(&db, "plain", "Plain")
        .await
        .unwrap()
        .unwrap();
    let (alice, _) = identity::find_or_create_user(&db, app.id, "alice")
        .await
        .unwrap();
    let t = Target {
        app_id: app.id,
        user_id: alice.id,
    };
    let credit = Credit {
        kind: "grant",
        amount: 10 * CREDIT,
        source: "top_up",
        expires_at: None,
        note: Note::default(),
    };
    ledger::credit(&db, t, &credit, None).await.unwrap();
    let spec = KeySpec {
        app_id: Some(app.id),
        ..Default::default()
    };
    let app_key = identity::create_key(&db, KeyKind::App, &spec)
        .await
        .unwrap()
        .1
        .secret;

    // An API process on a port of our choosing.
    let (mut api, base) = spawn_api(&test_db, &[]).await;
    let client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&app_key)
            .json(&body)
            .send()
    };
    let used: Value = post(
        "/v1/users/alice/holds".into(),
        json!({ "amount_micros": 4 * CREDIT, "expires_in_secs": 1 }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let used_id = used["id"].as_i64().unwrap();
    let r = post(
        format!("/v1/holds/{used_id}/usage"),
        json!({ "used_micros": 1_500_000 }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let idle: Value = post(
        "/v1/users/alice/holds".into(),
        json!({ "amount_micros": 2 * CREDIT, "expires_in_secs": 1 }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(idle["state"], "open");

    // Killed between reserve and settle.
    api.start_kill().unwrap();
    api.wait().await.unwrap();
    let b = ledger::balances(&db, t).await.unwrap();
    assert_eq!((b.balance, b.held), (10 * CREDIT, 6 * CREDIT));

    let worker = spawn_worker(&test_db, &[("TOLLGATE_LEDGER__EXPIRY_CRON", "* * * * * *")]);
    wait_until(Duration::from_secs(30), || async {
        ledger::balances(&db, t).await.unwrap().held == 0
    })
    .await;
    terminate(worker).await;

    let b = ledger::balances(&db, t).await.unwrap();
    assert_eq!(
        b.balance, 8_500_000,
        "charged the recorded usage, released the rest"
    );
    let entries = ledger::entries(&db, t, None, 10).await.unwrap();
    let closing: Vec<(&str, i64, Option<&str>)> = entries
        .iter()
        .filter(|e| e.kind == "settle" || e.kind == "release")
        .map(|e| (e.kind.as_str(), e.amount, e.reason.as_deref()))
        .collect();
    assert_eq!(closing.len(), 2, "{entries:?}");
    assert!(closing.contains(&("settle", -1_500_000, Some("hold expired"))));
    assert!(closing.contains(&("release", 0, Some("hold expired"))));
    let (_, mismatches) = ledger::verify(&db).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

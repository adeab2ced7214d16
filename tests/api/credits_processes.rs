//! A process killed between reserve and settle: the hold it leaves is resolved by the expiry job
//! in another process (settled at its recorded usage, else released) and the ledger verifies.

use std::time::Duration;
use tollgate::store::ledger::EntryKind;

use serde_json::{Value, json};
use tollgate::domain::identity::KeyKind;
use tollgate::store::identity::{self, KeySpec};
use tollgate::store::ledger::{self, Credit, Note, Target};
use tollgate::store::migrate;

use crate::helpers::TestDb;
use crate::jobs::wait_until;
use crate::jobs_processes::{spawn_api, spawn_api_env, spawn_worker, terminate};

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
        kind: EntryKind::Grant,
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

#[tokio::test]
async fn a_stream_cut_by_a_crash_is_settled_with_an_estimated_usage_record() {
    let f = crate::idempotency_crash::fixture().await;
    // The built-in mock streams 400 words 25 ms apart (10 s); the hold expires 4 s after it
    // was taken; the API process is killed after 2.5 s of streaming, its progress recorded.
    let api_env = [
        ("TOLLGATE_PROVIDERS__MOCK__OUTPUT_TOKENS", "400"),
        ("TOLLGATE_PROVIDERS__MOCK__CHUNK_DELAY_MS", "25"),
        ("TOLLGATE_LEDGER__HOLD_TIMEOUT_SECS", "4"),
    ];
    let (mut api, base) = spawn_api_env(&f.test_db, &[], &api_env).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&f.user_key)
        .json(&json!({ "model": "mock", "stream": true,
            "messages": [{ "role": "user", "content": "tell me a long story" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut response = response;
    let started = std::time::Instant::now();
    let mut received = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        received += response
            .chunk()
            .await
            .unwrap()
            .expect("still streaming")
            .len();
    }
    assert!(received > 0);
    api.start_kill().unwrap();
    api.wait().await.unwrap();
    assert!(
        tollgate::store::usage::list(&f.db, f.t, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "the killed process wrote no record"
    );

    let worker = spawn_worker(
        &f.test_db,
        &[("TOLLGATE_LEDGER__EXPIRY_CRON", "* * * * * *")],
    );
    wait_until(Duration::from_secs(30), || async {
        ledger::balances(&f.db, f.t).await.unwrap().held == 0
    })
    .await;
    terminate(worker).await;

    let entries = ledger::entries(&f.db, f.t, None, 10).await.unwrap();
    let settle = entries
        .iter()
        .find(|e| e.kind == "settle")
        .expect("settled at the usage the stream recorded");
    assert_eq!(settle.reason.as_deref(), Some("hold expired"));
    let charged = -settle.amount;
    assert!(charged > 0, "{settle:?}");
    let records = tollgate::store::usage::list(&f.db, f.t, None, 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (
            r.status.as_str(),
            r.estimated,
            r.stream,
            r.model.as_str(),
            r.provider.as_str()
        ),
        ("expired", true, true, "mock", "mock"),
        "{r:?}"
    );
    assert_eq!(r.request_id, request_id);
    assert_eq!(r.cost_micros, charged, "the record says what was charged");
    assert!(r.output_tokens > 0 && r.output_tokens < 400, "{r:?}");
    assert!(r.input_tokens > 0, "{r:?}");
    let (_, mismatches) = ledger::verify(&f.db).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

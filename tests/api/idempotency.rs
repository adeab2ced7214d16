//! `Idempotency-Key`: replay with `Idempotent-Replayed: true`, 422 for another request under the
//! same key, 409 while the first still runs, 400 for over-long keys, scoping to the caller, no
//! storing of 5xx answers, and pruning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tollgate::http::AppState;
use tollgate::startup::Role as ServerRole;
use tollgate::store::{idempotency, ledger, now_ms};

use crate::credits::seed;
use crate::helpers::{TestApp, problem, spawn_app, spawn_app_full};

/// How many times the test routes really ran (each test runs in its own process).
static RUNS: AtomicU64 = AtomicU64::new(0);

async fn slow() -> (StatusCode, axum::Json<Value>) {
    let n = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(800)).await;
    (StatusCode::CREATED, axum::Json(json!({ "run": n })))
}

async fn failing() -> StatusCode {
    RUNS.fetch_add(1, Ordering::SeqCst);
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn app_with_test_routes() -> TestApp {
    let routes: Router<AppState> = Router::new()
        .route("/test/slow", post(slow))
        .route("/test/failing", post(failing));
    spawn_app_full(|_| {}, ServerRole::All, routes).await
}

async fn post_keyed(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_repeated_grant_replays_the_first_answer_and_credits_once() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let path = "/admin/v1/apps/plain/users/alice/grants";
    let body = json!({ "amount_micros": 2_000_000, "reason": "support" });
    let first = post_keyed(&app, path, &s.owner, "grant-001", body.clone()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_type = first.headers()["content-type"].clone();
    let first_body: Value = first.json().await.unwrap();

    let again = post_keyed(&app, path, &s.owner, "grant-001", body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], first_type);
    assert!(again.headers().get("x-request-id").is_some());
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);

    let b = ledger::balances(&app.db, s.target()).await.unwrap();
    assert_eq!(b.balance, 2_000_000);
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    for line in [
        "tollgate_idempotency_requests_total{outcome=\"replayed\"} 1",
        "tollgate_ledger_entries_total{kind=\"grant\"} 1",
        "tollgate_ledger_micros_total{kind=\"grant\"} 2000000",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_422_and_changes_nothing() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let path = "/admin/v1/apps/plain/users/alice/grants";
    post_keyed(
        &app,
        path,
        &s.owner,
        "k",
        json!({ "amount_micros": 1_000_000 }),
    )
    .await;
    let other = post_keyed(
        &app,
        path,
        &s.owner,
        "k",
        json!({ "amount_micros": 9_000_000 }),
    )
    .await;
    let p = problem(other, 422).await;
    assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    assert!(p["request_id"].is_string());
    let b = ledger::balances(&app.db, s.target()).await.unwrap();
    assert_eq!(b.balance, 1_000_000);
}

#[tokio::test]
async fn a_repeat_while_the_first_still_runs_gets_409_then_the_replay() {
    let app = app_with_test_routes().await;
    let s = seed(&app, "plain").await;
    let (first, second) = tokio::join!(
        post_keyed(&app, "/test/slow", &s.user_key, "slow-1", json!({})),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            post_keyed(&app, "/test/slow", &s.user_key, "slow-1", json!({})).await
        }
    );
    assert_eq!(first.status(), 201);
    let p = problem(second, 409).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("still being processed")
    );
    let third = post_keyed(&app, "/test/slow", &s.user_key, "slow-1", json!({})).await;
    assert_eq!(third.headers()["idempotent-replayed"], "true");
    assert_eq!(third.json::<Value>().await.unwrap()["run"], 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the handler ran once");
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = app_with_test_routes().await;
    let s = seed(&app, "plain").await;
    let a = post_keyed(&app, "/test/slow", &s.user_key, "same", json!({})).await;
    let b = post_keyed(&app, "/test/slow", &s.app_key, "same", json!({})).await;
    assert_eq!(
        (a.status(), b.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(b.headers().get("idempotent-replayed").is_none());
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_server_error_is_not_stored_so_a_retry_runs_again() {
    let app = app_with_test_routes().await;
    let s = seed(&app, "plain").await;
    for _ in 0..2 {
        let r = post_keyed(&app, "/test/failing", &s.user_key, "f-1", json!({})).await;
        assert_eq!(r.status(), 500);
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keys_longer_than_255_characters_are_refused_with_400() {
    let app = app_with_test_routes().await;
    let s = seed(&app, "plain").await;
    let long = "k".repeat(256);
    let p = problem(
        post_keyed(&app, "/test/slow", &s.user_key, &long, json!({})).await,
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("255"));
    let ok = post_keyed(&app, "/test/slow", &s.user_key, &"k".repeat(255), json!({})).await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn keys_are_kept_for_the_retention_then_pruned_and_run_again() {
    let app = app_with_test_routes().await;
    let s = seed(&app, "plain").await;
    post_keyed(&app, "/test/slow", &s.user_key, "p-1", json!({})).await;
    let day_ago = now_ms() - 24 * 3_600_000;
    assert_eq!(
        idempotency::prune(&app.db, day_ago, 100).await.unwrap(),
        0,
        "a fresh key is kept"
    );
    let replay = post_keyed(&app, "/test/slow", &s.user_key, "p-1", json!({})).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    assert_eq!(
        idempotency::prune(&app.db, now_ms() + 1, 100)
            .await
            .unwrap(),
        1
    );
    let fresh = post_keyed(&app, "/test/slow", &s.user_key, "p-1", json!({})).await;
    assert!(fresh.headers().get("idempotent-replayed").is_none());
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

/// The value of one counter line of the exposition text, 0 when absent.
fn counter(metrics: &str, line: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_keyed_request_checks_its_api_key_once_through_every_layer() {
    // The rate limiter, the Idempotency-Key layer and the route's extractor all need the
    // caller; they share one check (they made three before).
    let app = spawn_app().await;
    let s = seed(&app, "once").await;
    let path = "/admin/v1/apps/once/users/alice/grants";
    let body = json!({ "amount_micros": 1_000_000, "reason": "support" });
    let granted = post_keyed(&app, path, &s.owner, "grant-once", body.clone()).await;
    assert_eq!(granted.status(), 201);
    let last = if s.owner.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &s.owner[..s.owner.len() - 1]);
    let refused = post_keyed(&app, path, &wrong, "grant-wrong", body).await;
    assert_eq!(refused.status(), 401);

    let metrics = app.get_metrics(None).await.text().await.unwrap();
    let ok = counter(&metrics, "tollgate_api_key_checks_total{outcome=\"ok\"}");
    let unknown = counter(
        &metrics,
        "tollgate_api_key_checks_total{outcome=\"unknown\"}",
    );
    assert_eq!((ok, unknown), (1, 1), "key checks:\n{metrics}");
}

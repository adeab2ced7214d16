use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::sync::Notify;
use tollgate::http::AppState;
use tollgate::startup::Role;

use crate::helpers::spawn_app_full;

/// A route that signals when a request enters it, then takes `duration` to answer.
fn signalling_route(path: &str, duration: Duration) -> (Router<AppState>, Arc<Notify>) {
    let entered = Arc::new(Notify::new());
    let signal = entered.clone();
    let router = Router::new().route(
        path,
        get(move || {
            let signal = signal.clone();
            async move {
                signal.notify_one();
                tokio::time::sleep(duration).await;
                "finished"
            }
        }),
    );
    (router, entered)
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let (slow, entered) = signalling_route("/test/slow", Duration::from_millis(300));
    let mut app = spawn_app_full(|_| {}, Role::All, slow).await;

    let in_flight = tokio::spawn(app.client.get(app.url("/test/slow")).send());
    entered.notified().await;
    let stopped = app.stop();
    let (stopped, response) = tokio::join!(stopped, in_flight);
    stopped.expect("a clean stop");

    let response = response
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");

    let after = reqwest::Client::new().get(app.url("/health")).send().await;
    assert!(after.is_err(), "a stopped server accepts no connection");
}

/// Connections still busy when `run_until_stopped` returns are dropped when the process exits
/// (the binary returns from `main` right after); here we check the wait itself is bounded.
#[tokio::test]
async fn stopping_waits_no_longer_than_the_grace_period() {
    let (stuck, entered) = signalling_route("/test/stuck", Duration::from_secs(60));
    let mut app = spawn_app_full(
        |c| {
            c.http.shutdown_timeout_ms = 200;
            c.http.request_timeout_ms = 120_000;
        },
        Role::All,
        stuck,
    )
    .await;
    let in_flight = tokio::spawn(app.client.get(app.url("/test/stuck")).send());
    entered.notified().await;
    let started = std::time::Instant::now();
    app.stop().await.expect("a clean stop");
    // A functional bound (the handler wanted 60 s), not a benchmark.
    assert!(started.elapsed() < Duration::from_secs(10));
    in_flight.abort();
}

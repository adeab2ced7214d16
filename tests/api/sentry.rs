//! Errors reach a (fake, local) Sentry ingest as real envelopes, tagged with role, environment
//! and request id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use secrecy::SecretString;
use tollgate::startup::Role;

use crate::helpers::spawn_app_full;

#[derive(Clone, Default)]
pub struct FakeSentry {
    pub received: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn ingest(
    State(fake): State<FakeSentry>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let auth = headers["x-sentry-auth"].to_str().unwrap().to_string();
    fake.received.lock().unwrap().push((project, auth, body));
    "{}"
}

pub async fn start_fake_sentry() -> (FakeSentry, u16) {
    let fake = FakeSentry::default();
    let app = Router::new()
        .route("/api/{project}/envelope/", post(ingest))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, port)
}

async fn explode() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn an_internal_error_is_reported_to_sentry_with_role_environment_and_request_id() {
    let (fake, port) = start_fake_sentry().await;
    let dsn = format!("http://publickey123@127.0.0.1:{port}/42");
    let app = spawn_app_full(
        |c| c.sentry_dsn = Some(SecretString::from(dsn)),
        Role::Api,
        Router::new().route("/test/panic", get(explode)),
    )
    .await;
    let response = app.get("/test/panic").await;
    assert_eq!(response.status(), 500);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    tollgate::ops::sentry::flush(Duration::from_secs(5)).await;

    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "one event for one error: {received:?}");
    let (project, auth, body) = &received[0];
    assert_eq!(project, "42");
    assert!(
        auth.starts_with("Sentry sentry_version=7, sentry_key=publickey123"),
        "{auth}"
    );
    let lines: Vec<&str> = body.lines().collect();
    let item: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(item["type"], "event");
    let event: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(event["level"], "error");
    assert_eq!(event["environment"], "development");
    assert_eq!(event["tags"]["service"], "api");
    assert_eq!(event["tags"]["request_id"], request_id.as_str());
    assert_eq!(event["message"]["formatted"], "internal error");
    assert!(
        event["extra"]["error"]
            .as_str()
            .unwrap()
            .contains("panicked")
    );
}

#[tokio::test]
async fn client_errors_are_not_reported() {
    let (fake, port) = start_fake_sentry().await;
    let dsn = format!("http://k@127.0.0.1:{port}/1");
    let app = spawn_app_full(
        |c| c.sentry_dsn = Some(SecretString::from(dsn)),
        Role::All,
        Router::new(),
    )
    .await;
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    tollgate::ops::sentry::flush(Duration::from_secs(5)).await;
    assert!(fake.received.lock().unwrap().is_empty());
}

//! Errors and panics reach a (fake, local) Sentry ingest as the sentry crate's envelopes: one
//! event per error, with its stack trace, tagged with role, environment and request id (or the
//! job).

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

async fn fail() -> tollgate::error::Error {
    tollgate::error::Error::Internal(anyhow::anyhow!("the database said no"))
}

/// The events the fake received, each envelope's event item as JSON.
pub fn events(fake: &FakeSentry) -> Vec<serde_json::Value> {
    let received = fake.received.lock().unwrap().clone();
    received
        .iter()
        .filter_map(|(_, _, body)| {
            let lines: Vec<&str> = body.lines().collect();
            let item = lines.iter().position(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["type"] == "event")
            })?;
            Some(serde_json::from_str(lines[item + 1]).unwrap())
        })
        .collect()
}

/// The frames of the event's first exception or thread stack trace.
fn frames(event: &serde_json::Value) -> Vec<serde_json::Value> {
    let from = |list: &serde_json::Value| {
        list["values"].as_array().and_then(|v| {
            v.iter()
                .find_map(|x| x["stacktrace"]["frames"].as_array().cloned())
        })
    };
    from(&event["exception"])
        .or_else(|| from(&event["threads"]))
        .unwrap_or_default()
}

async fn app_reporting_to(port: u16, project: u32) -> crate::helpers::TestApp {
    let dsn = format!("http://publickey123@127.0.0.1:{port}/{project}");
    spawn_app_full(
        |c| c.sentry_dsn = Some(SecretString::from(dsn)),
        Role::Api,
        Router::new()
            .route("/test/panic", get(explode))
            .route("/test/fail", get(fail)),
    )
    .await
}

/// Sends a request that fails with a 500, waits for its report to leave; its request id.
async fn failing_request(app: &crate::helpers::TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status(), 500);
    let id = response.headers()["x-request-id"].to_str().unwrap();
    let id = id.to_string();
    tollgate::ops::sentry::flush(Duration::from_secs(5)).await;
    id
}

#[tokio::test]
async fn a_panic_in_a_handler_is_one_event_with_its_stack_trace_role_environment_and_request_id() {
    let (fake, port) = start_fake_sentry().await;
    let app = app_reporting_to(port, 42).await;
    let request_id = failing_request(&app, "/test/panic").await;

    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "one event for one panic: {received:?}");
    let (project, auth, _) = &received[0];
    assert_eq!(project, "42");
    assert!(auth.starts_with("Sentry "), "{auth}");
    assert!(auth.contains("sentry_key=publickey123"), "{auth}");
    let event = &events(&fake)[0];
    assert_eq!(event["level"], "fatal", "{event}");
    assert_eq!(event["environment"], "development");
    assert_eq!(
        event["release"],
        concat!("tollgate@", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(event["tags"]["service"], "api");
    assert_eq!(event["tags"]["request_id"], request_id.as_str());
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["value"], "boom", "{event}");
    assert_eq!(exception["mechanism"]["type"], "panic");
    // The stack trace reaches the handler that panicked.
    let frames = frames(event);
    assert!(
        frames.iter().any(|f| f["function"]
            .as_str()
            .is_some_and(|n| n.contains("explode"))),
        "{frames:?}"
    );
}

#[tokio::test]
async fn an_internal_error_is_one_event_with_a_stack_trace_and_the_request_id() {
    let (fake, port) = start_fake_sentry().await;
    let app = app_reporting_to(port, 7).await;
    let request_id = failing_request(&app, "/test/fail").await;
    let events = events(&fake);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    // Sentry's protocol leaves out a level of `error`, its default.
    assert!(
        matches!(event["level"].as_str(), None | Some("error")),
        "{event}"
    );
    assert_eq!(event["message"], "internal error", "{event}");
    assert_eq!(event["tags"]["request_id"], request_id.as_str());
    assert_eq!(event["tags"]["service"], "api");
    let fields = &event["contexts"]["Rust Tracing Fields"];
    assert_eq!(fields["error"], "the database said no", "{event}");
    assert!(!frames(event).is_empty(), "attach_stacktrace: {event}");
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PanickingJob {}

impl tollgate::jobs::Job for PanickingJob {
    const KIND: &'static str = "test.panics";
    const MAX_ATTEMPTS: i64 = 1;
    async fn run(self, _ctx: tollgate::jobs::JobContext) -> anyhow::Result<()> {
        panic!("boom in a job")
    }
}

#[tokio::test]
async fn a_panic_in_a_job_is_one_event_tagged_with_the_job() {
    use tollgate::jobs::{EnqueueOptions, Runtime};
    let (fake, port) = start_fake_sentry().await;
    let test_db = crate::helpers::TestDb::new().await;
    let db = test_db.connect().await;
    tollgate::store::migrate::run(&db).await.unwrap();
    let mut config = test_db.config();
    config.sentry_dsn = Some(SecretString::from(format!("http://k@127.0.0.1:{port}/3")));
    tollgate::telemetry::init(&config, "all");
    let mut registry = tollgate::jobs::kinds::builtin().clone();
    registry.register::<PanickingJob>();
    let rt = Runtime::new(db.clone(), Arc::new(config), registry).await;
    let job = rt
        .client
        .enqueue(&PanickingJob {}, EnqueueOptions::default())
        .await
        .unwrap();
    assert_eq!(rt.worker().run_available("default").await.unwrap(), 1);
    tollgate::ops::sentry::flush(Duration::from_secs(5)).await;
    let events = events(&fake);
    assert_eq!(
        events.len(),
        1,
        "the panic, not also its \"job failed\" log: {events:?}"
    );
    let event = &events[0];
    assert_eq!(event["exception"]["values"][0]["value"], "boom in a job");
    assert_eq!(event["tags"]["service"], "worker");
    assert_eq!(event["tags"]["job_kind"], "test.panics");
    assert_eq!(event["tags"]["job_id"], job.id.to_string());
    let failed = tollgate::store::jobs::admin::get(&db, job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.state, "discarded");
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

use tollgate::startup::Role;

use crate::helpers::{redis_url, spawn_app, spawn_app_full, spawn_app_with};

#[tokio::test]
async fn health_reports_pass_and_the_version_without_touching_the_database() {
    let app = spawn_app().await;
    app.db.close().await;
    let response = app.get_health().await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/health+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    assert_eq!(body["ok"], true);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn ready_names_database_and_migrations_with_their_latency() {
    let app = spawn_app().await;
    let response = app.get_ready().await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/health+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    let checks = body["checks"].as_object().unwrap();
    assert_eq!(
        checks.keys().collect::<Vec<_>>(),
        ["database", "migrations"]
    );
    for check in checks.values() {
        assert_eq!(check[0]["status"], "pass");
        assert_eq!(check[0]["observedUnit"], "ms");
        assert!(check[0]["observedValue"].as_f64().unwrap() >= 0.0);
    }
}

#[tokio::test]
async fn ready_fails_with_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.db.close().await;
    let response = app.get_ready().await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    assert_eq!(body["checks"]["database"][0]["status"], "fail");
    assert!(body["checks"]["database"][0]["output"].is_string());
}

#[tokio::test]
async fn ready_checks_redis_when_it_is_configured() {
    let app = spawn_app_with(|c| c.redis.url = Some(redis_url())).await;
    let body: serde_json::Value = app.get_ready().await.json().await.unwrap();
    assert_eq!(body["checks"]["redis"][0]["status"], "pass", "{body}");

    // Nothing listens on port 1: Redis is down, and readiness says so. With the rate limits
    // failing closed the replica cannot serve: 503. (Failing open, the default, it still
    // serves: 200 with `warn`, tested in rate_limits.rs.)
    let app = spawn_app_with(|c| {
        c.redis.url = Some("redis://127.0.0.1:1".into());
        c.rate_limits.on_redis_error = tollgate::config::FailMode::Closed;
    })
    .await;
    let response = app.get_ready().await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["redis"][0]["status"], "fail");
    assert_eq!(body["checks"]["database"][0]["status"], "pass");
}

#[tokio::test]
async fn the_worker_role_serves_only_health_ready_and_metrics() {
    let app = spawn_app_full(|_| {}, Role::Worker, axum::Router::new()).await;
    assert_eq!(app.get_health().await.status(), 200);
    assert_eq!(app.get_ready().await.status(), 200);
    assert_eq!(app.get_metrics(None).await.status(), 200);
    assert_eq!(app.get("/openapi.json").await.status(), 404);
}

#[tokio::test]
async fn the_openapi_document_lists_the_routes() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec: serde_json::Value = response.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/health", "/ready", "/metrics"] {
        assert!(spec["paths"][path]["get"].is_object(), "{path} missing");
    }
    assert!(spec["components"]["schemas"]["Problem"].is_object());
}

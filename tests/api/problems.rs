use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use tollgate::http::AppState;
use tollgate::http::extract::Json;
use tollgate::startup::Role;

use crate::helpers::{TestApp, problem, spawn_app, spawn_app_full};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OrderIn {
    sku: String,
    quantity: u32,
}

async fn create_order(Json(_order): Json<OrderIn>) -> &'static str {
    "ok"
}

async fn explode() -> &'static str {
    panic!("secret=hunter2 in a panic message")
}

async fn dawdle() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

fn test_routes() -> Router<AppState> {
    Router::new()
        .route("/test/orders", post(create_order))
        .route("/test/panic", get(explode))
        .route("/test/slow", get(dawdle))
}

async fn app_with_test_routes() -> TestApp {
    spawn_app_full(
        |c| {
            c.http.body_limit_bytes = 256;
            c.http.request_timeout_ms = 200;
        },
        Role::All,
        test_routes(),
    )
    .await
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let body = problem(app.get("/v1/nothing-here").await, 404).await;
    assert_eq!(body["type"], "urn:tollgate:problem:not-found");
    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    let app = spawn_app().await;
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    let body = problem(response, 405).await;
    assert_eq!(body["type"], "urn:tollgate:problem:method-not-allowed");
}

#[tokio::test]
async fn a_valid_body_passes_the_json_extractor() {
    let app = app_with_test_routes().await;
    let response = app
        .post_json("/test/orders", r#"{"sku":"pack-100","quantity":2}"#)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = app_with_test_routes().await;
    let body = problem(app.post_json("/test/orders", r#"{"sku": "#).await, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn invalid_fields_are_listed_one_by_one() {
    let app = app_with_test_routes().await;
    let body = problem(
        app.post_json("/test/orders", r#"{"sku":"a","quantity":-1}"#)
            .await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "quantity");

    let body = problem(
        app.post_json(
            "/test/orders",
            r#"{"sku":"a","quantity":1,"coupon":"FREE"}"#,
        )
        .await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "coupon");
    // A missing field under its own name, as a wrong type is (was "(body)").
    let missing = problem(app.post_json("/test/orders", r#"{"sku":"a"}"#).await, 422).await;
    assert_eq!(missing["errors"][0]["field"], "quantity", "{missing}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field")
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = app_with_test_routes().await;
    let response = app
        .client
        .post(app.url("/test/orders"))
        .header("content-type", "text/plain")
        .body("sku=a")
        .send()
        .await
        .unwrap();
    problem(response, 415).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = app_with_test_routes().await;
    let big = format!(r#"{{"sku":"{}","quantity":1}}"#, "x".repeat(1000));
    let body = problem(app.post_json("/test/orders", &big).await, 413).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("http.body_limit_bytes")
    );
}

#[tokio::test]
async fn a_panicking_handler_is_an_opaque_500_problem_and_the_server_lives_on() {
    let app = app_with_test_routes().await;
    let body = problem(app.get("/test/panic").await, 500).await;
    assert!(!body.to_string().contains("hunter2"));
    assert_eq!(app.get_health().await.status(), 200);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_503_problem() {
    let app = app_with_test_routes().await;
    let body = problem(app.get("/test/slow").await, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("request_timeout_ms"),
        "{body}"
    );
}

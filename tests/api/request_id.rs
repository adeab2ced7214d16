use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn a_request_without_an_id_gets_a_generated_one() {
    let app = spawn_app().await;
    let a = app.get_health().await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let b = app.get_health().await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a} is a UUID");
}

#[tokio::test]
async fn a_sane_incoming_id_is_echoed() {
    let app = spawn_app().await;
    let response = app
        .get_with_header("/health", "x-request-id", "client-req_42.a:b")
        .await;
    assert_eq!(response.headers()["x-request-id"], "client-req_42.a:b");
}

#[tokio::test]
async fn an_unsafe_incoming_id_is_replaced() {
    let app = spawn_app().await;
    for bad in ["has space", "<script>", &"x".repeat(200)] {
        let response = app.get_with_header("/health", "x-request-id", bad).await;
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }
}

#[tokio::test]
async fn the_request_id_is_in_the_problem_body() {
    let app = spawn_app().await;
    let response = app
        .get_with_header("/nowhere", "x-request-id", "trace-me-123")
        .await;
    let body = problem(response, 404).await;
    assert_eq!(body["request_id"], "trace-me-123");
}

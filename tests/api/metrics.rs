use secrecy::SecretString;

use crate::helpers::{problem, spawn_app, spawn_app_with};

const TOKEN: &str = "a-metrics-token-of-at-least-32-chars";

#[tokio::test]
async fn metrics_are_open_when_no_token_is_configured() {
    let app = spawn_app().await;
    assert_eq!(app.get_health().await.status(), 200);
    let response = app.get_metrics(None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let request_line = text
        .lines()
        .find(|l| l.starts_with("tollgate_http_requests_total{") && l.contains("route=\"/health\""))
        .unwrap_or_else(|| panic!("no request counter for /health in\n{text}"));
    assert!(request_line.contains("method=\"GET\"") && request_line.contains("status=\"200\""));
    for name in [
        "tollgate_http_request_duration_seconds_bucket{",
        "tollgate_http_requests_in_flight",
        "tollgate_db_pool_connections{",
        "tollgate_db_pool_max_connections{",
        "tollgate_build_info{version=\"",
    ] {
        assert!(text.contains(name), "{name} missing in\n{text}");
    }
}

#[tokio::test]
async fn unknown_paths_share_one_route_label() {
    let app = spawn_app().await;
    app.get("/random/a1").await;
    app.get("/random/b2").await;
    let text = app.get_metrics(None).await.text().await.unwrap();
    assert!(text.contains("route=\"unmatched\""));
    assert!(!text.contains("/random/a1"));
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let app = spawn_app_with(|c| c.metrics_token = Some(SecretString::from(TOKEN))).await;
    let response = app.get_metrics(None).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"tollgate\""
    );
    problem(response, 401).await;
    problem(app.get_metrics(Some("wrong-token")).await, 401).await;
    let prefix = &TOKEN[..TOKEN.len() - 1];
    problem(app.get_metrics(Some(prefix)).await, 401).await;
    assert_eq!(app.get_metrics(Some(TOKEN)).await.status(), 200);
}

#[tokio::test]
async fn the_rate_limit_counters_have_help_lines() {
    let app = spawn_app().await;
    app.get("/v1/compat?platform=ios&version=1.0.0").await;
    let text = app.get_metrics(None).await.text().await.unwrap();
    let name = "tollgate_rate_limit_requests_total";
    assert!(text.contains(&format!("{name}{{")), "counted: {text}");
    assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
}

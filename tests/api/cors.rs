use crate::helpers::{spawn_app, spawn_app_with};

async fn preflight(app: &crate::helpers::TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/health"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_configured_origins_are_allowed() {
    let app =
        spawn_app_with(|c| c.http.cors_origins = vec!["https://app.example.com".into()]).await;
    let allowed = preflight(&app, "https://app.example.com").await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = preflight(&app, "https://evil.example.com").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_configured_origins_no_cross_origin_access_is_granted() {
    let app = spawn_app().await;
    let response = preflight(&app, "https://app.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_request_id_and_rate_limit_headers_are_readable_by_browsers() {
    let app =
        spawn_app_with(|c| c.http.cors_origins = vec!["https://app.example.com".into()]).await;
    let response = app
        .get_with_header("/health", "origin", "https://app.example.com")
        .await;
    let exposed: Vec<&str> = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    for name in [
        "x-request-id",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(exposed.contains(&name), "{name} not exposed: {exposed:?}");
    }
}

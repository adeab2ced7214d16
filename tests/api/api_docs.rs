//! `/docs`: the interactive API reference, served from the binary (no CDN), on by default
//! outside production and switchable by `http.api_docs`.

use crate::helpers::{problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_reference_page_and_its_assets_come_from_the_binary() {
    let app = spawn_app().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/init.js",
    ] {
        assert!(html.contains(asset), "{html}");
        let r = app.get(asset).await;
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("//unpkg.com") && !body.contains("cdn.jsdelivr"),
            "{asset} loads from a CDN"
        );
        if asset.ends_with("bundle.js") {
            assert!(body.len() > 1_000_000 && body.contains("SwaggerUIBundle"));
        }
    }
    let init = app.get("/docs/init.js").await.text().await.unwrap();
    assert!(init.contains("url: \"/openapi.json\""), "{init}");
    // What the page describes is served beside it.
    assert_eq!(app.get("/openapi.json").await.status(), 200);
}

#[tokio::test]
async fn switched_off_the_reference_is_not_found() {
    let app = spawn_app_with(|c| c.http.api_docs = Some(false)).await;
    for path in ["/docs", "/docs/swagger-ui-bundle.js"] {
        let body = problem(app.get(path).await, 404).await;
        assert!(body["request_id"].is_string(), "{body}");
    }
}

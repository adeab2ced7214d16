//! `/docs`: an interactive reference of `/openapi.json` (Swagger UI, vendored under
//! `vendor/swagger-ui/` and embedded in the binary: it works offline and loads nothing from a
//! CDN). On outside production; in production only with `http.api_docs = true`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const INDEX: &str = include_str!("docs/index.html");
const INIT: &str = include_str!("docs/init.js");
const BUNDLE: &str = include_str!("../../vendor/swagger-ui/swagger-ui-bundle.js");
const CSS: &str = include_str!("../../vendor/swagger-ui/swagger-ui.css");

/// Only this server's own scripts and styles; images inline (Swagger UI's icons).
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/docs",
            get(|s| serve(s, "text/html; charset=utf-8", INDEX)),
        )
        .route(
            "/docs/init.js",
            get(|s| serve(s, "text/javascript; charset=utf-8", INIT)),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|s| serve(s, "text/javascript; charset=utf-8", BUNDLE)),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|s| serve(s, "text/css; charset=utf-8", CSS)),
        )
}

async fn serve(
    State(state): State<AppState>,
    content_type: &'static str,
    body: &'static str,
) -> Response {
    if !state.config.api_docs_enabled() {
        return super::problems::not_found().await.into_response();
    }
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The assets change only with the binary.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

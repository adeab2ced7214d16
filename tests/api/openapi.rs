use crate::helpers::spawn_app;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

/// docs/openapi.json is what the code serves; `UPDATE_OPENAPI=1 cargo nextest run openapi`
/// rewrites it after a route changes.
#[tokio::test]
async fn the_committed_openapi_document_matches_the_code() {
    let app = spawn_app().await;
    let served = app.get("/openapi.json").await.text().await.unwrap();
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(COMMITTED, format!("{served}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).expect("docs/openapi.json exists");
    assert_eq!(
        committed.trim_end(),
        served.trim_end(),
        "docs/openapi.json is stale: run UPDATE_OPENAPI=1 cargo nextest run openapi"
    );
}

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

/// Generated clients name each call by its operationId (openapi-typescript, openapi-generator):
/// two operations with one id make a client that does not compile.
#[tokio::test]
async fn every_operation_has_its_own_operation_id() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut seen = std::collections::BTreeMap::<String, String>::new();
    let mut repeats = Vec::new();
    let sections = ["paths", "webhooks"];
    for section in sections {
        for (path, item) in doc[section].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                let here = format!("{method} {path}");
                if let Some(first) = seen.insert(id.clone(), here.clone()) {
                    repeats.push(format!("{id}: {first} and {here}"));
                }
            }
        }
    }
    assert!(repeats.is_empty(), "repeated operationIds: {repeats:#?}");
}

/// The events tollgate sends are in the document as OpenAPI 3.1 webhooks, one per type, each
/// body's `data` the type's schema.
#[tokio::test]
async fn every_event_type_is_a_documented_webhook() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let hooks = doc["webhooks"].as_object().expect("a webhooks section");
    let types: Vec<&str> = hooks.keys().map(String::as_str).collect();
    assert_eq!(
        types.len(),
        tollgate::domain::events::EventType::ALL.len(),
        "{types:?}"
    );
    let low = &hooks["credits.low"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(low["properties"]["type"]["const"], "credits.low");
    assert_eq!(
        low["properties"]["data"]["$ref"],
        "#/components/schemas/CreditsBalance"
    );
    for (kind, hook) in hooks {
        let data = &hook["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
            ["data"]["$ref"];
        let name = data
            .as_str()
            .unwrap()
            .trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{kind}: {name} is a component"
        );
    }
}

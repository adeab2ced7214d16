//! Real clients against the gateway: the official `openai`, `anthropic` and `google-genai` Python
//! packages
//! (installed by `.ci/run`), pointed at tollgate in front of the fake providers. Checks what the
//! SDKs parse and that every call was charged exactly once, at the right amount.

use serde_json::Value;
use tollgate::store::ledger::EntryKind;

use crate::gateway::{GPT_CALL, balance, gateway_app};
use crate::gateway_native::{CLAUDE_CALL, GEMINI_CALL, native_app};
use crate::helpers::TestApp;
use crate::python::python_with;

#[tokio::test]
async fn the_official_openai_python_package_works_and_each_call_is_charged_once() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let poor = app.user_key("poor", "bob").await;
    let start = balance(&app, &key).await;
    let out = run_client("openai", "openai_client.py", &app.url("/v1"), &key, &poor).await;
    assert_eq!(out["plain"]["content"], "Hello");
    assert_eq!(out["plain"]["completion_tokens"], 30);
    assert_eq!(out["stream"]["text"], "Hello");
    assert_eq!(out["stream"]["usage_chunks"], 0, "{out}");
    assert_eq!(out["stream_with_usage"]["last_usage"], 30);
    assert_eq!(out["stream_with_usage"]["last_choices"], 0);
    assert_eq!(out["tool_call"]["name"], "get_weather");
    assert_eq!(out["tool_call"]["arguments"]["location"], "Paris");
    assert_eq!(out["empty_balance"]["status"], 402);
    assert_eq!(
        out["empty_balance"]["type"],
        "urn:tollgate:problem:insufficient-credits"
    );
    // Four successful calls, four provider requests, four charges; the refused one reached
    // no provider.
    assert_eq!(fake.received().len(), 4);
    assert_eq!(balance(&app, &key).await, start - 4 * GPT_CALL);
}

/// A user key of app `slug` whose credits are all spent.
async fn spent_user(app: &TestApp, slug: &str, external_id: &str) -> String {
    let key = app.user_key(slug, external_id).await;
    let t = app.user_target(slug, external_id).await;
    let all = balance(app, &key).await;
    let note = tollgate::store::ledger::Note::default();
    tollgate::store::ledger::charge(&app.db, t, EntryKind::Adjustment, all, 0, note, None)
        .await
        .unwrap();
    key
}

/// Runs tests/clients/`script` (which imports `module`) against `base_url` with a funded and a spent key; the JSON it
/// printed.
async fn run_client(module: &str, script: &str, base_url: &str, key: &str, poor: &str) -> Value {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = python_with(module)
        .arg(path)
        .env("TOLLGATE_BASE_URL", base_url)
        .env("TOLLGATE_KEY", key)
        .env("TOLLGATE_POOR_KEY", poor)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_official_anthropic_python_package_works_through_the_pass_through() {
    let (app, fake, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let poor = spent_user(&app, "ai", "bob").await;
    let out = run_client(
        "anthropic",
        "anthropic_client.py",
        &app.url("/anthropic"),
        &key,
        &poor,
    )
    .await;
    assert_eq!(out["plain"]["text"], "Hello", "{out}");
    assert_eq!(out["plain"]["stop_reason"], "end_turn");
    assert_eq!(out["plain"]["output_tokens"], 15);
    assert_eq!(out["stream"]["text"], "Hello", "{out}");
    assert_eq!(out["stream"]["output_tokens"], 15);
    assert_eq!(out["empty_balance"]["status"], 402, "{out}");
    assert_eq!(
        out["empty_balance"]["type"],
        "urn:tollgate:problem:insufficient-credits"
    );
    // Two calls, two provider requests, two charges; the refused one reached no provider.
    assert_eq!(fake.received().len(), 2);
    assert_eq!(balance(&app, &key).await, start - 2 * CLAUDE_CALL);
}

#[tokio::test]
async fn the_official_google_genai_python_package_works_through_the_pass_through() {
    let (app, _, fake) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let poor = spent_user(&app, "ai", "bob").await;
    let out = run_client(
        "google.genai",
        "genai_client.py",
        &app.url("/gemini"),
        &key,
        &poor,
    )
    .await;
    assert_eq!(out["plain"]["text"], "Hi there", "{out}");
    assert_eq!(out["plain"]["prompt_tokens"], 12);
    assert_eq!(out["plain"]["candidates_tokens"], 3);
    assert_eq!(out["stream"]["text"], "Hi there", "{out}");
    assert_eq!(out["stream"]["chunks"], 2);
    assert_eq!(out["empty_balance"]["status"], 402, "{out}");
    assert_eq!(fake.received().len(), 2);
    assert_eq!(balance(&app, &key).await, start - 2 * GEMINI_CALL);
}

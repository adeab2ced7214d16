//! Real clients against the gateway: the official `openai`, `anthropic` and `google-genai` Python
//! packages
//! (installed by `.ci/run`), pointed at tollgate in front of the fake providers. Checks what the
//! SDKs parse and that every call was charged exactly once, at the right amount.

use serde_json::Value;

use crate::gateway::{GPT_CALL, balance, gateway_app};
use crate::gateway_native::{CLAUDE_CALL, GEMINI_CALL, native_app};
use crate::helpers::TestApp;

/// True when `python3 -c "import <module>"` works. Without it the test fails in CI and is
/// skipped, loudly, elsewhere (a fresh machine runs `cargo nextest run` without pip installs).
pub fn python_has(module: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install the Python package `{module}` (see .ci/run)"
        );
        eprintln!("SKIPPED: the Python package `{module}` is not installed (pip install {module})");
    }
    ok
}

#[tokio::test]
async fn the_official_openai_python_package_works_and_each_call_is_charged_once() {
    if !python_has("openai") {
        return;
    }
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let poor = app.user_key("poor", "bob").await;
    let start = balance(&app, &key).await;
    let out = run_client("openai_client.py", &app.url("/v1"), &key, &poor).await;
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
    tollgate::store::ledger::charge(&app.db, t, "adjustment", all, 0, note, None)
        .await
        .unwrap();
    key
}

/// Runs tests/clients/`script` against `base_url` with a funded and a spent key; the JSON it
/// printed.
async fn run_client(script: &str, base_url: &str, key: &str, poor: &str) -> Value {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new("python3")
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
    if !python_has("anthropic") {
        return;
    }
    let (app, fake, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let poor = spent_user(&app, "ai", "bob").await;
    let out = run_client("anthropic_client.py", &app.url("/anthropic"), &key, &poor).await;
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
    if !python_has("google.genai") {
        return;
    }
    let (app, _, fake) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let poor = spent_user(&app, "ai", "bob").await;
    let out = run_client("genai_client.py", &app.url("/gemini"), &key, &poor).await;
    assert_eq!(out["plain"]["text"], "Hi there", "{out}");
    assert_eq!(out["plain"]["prompt_tokens"], 12);
    assert_eq!(out["plain"]["candidates_tokens"], 3);
    assert_eq!(out["stream"]["text"], "Hi there", "{out}");
    assert_eq!(out["stream"]["chunks"], 2);
    assert_eq!(out["empty_balance"]["status"], 402, "{out}");
    assert_eq!(fake.received().len(), 2);
    assert_eq!(balance(&app, &key).await, start - 2 * GEMINI_CALL);
}

//! The AI gateway end to end against a local fake OpenAI: forwarding, streaming, the usage
//! chunk, exact charges, fallbacks, estimates, disconnects, refusals, and concurrency against a
//! small balance. Runs on SQLite and PostgreSQL.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use tollgate::config::{AppConfig, Config, ModelConfig};
use tollgate::domain::money::Micros;
use tollgate::domain::pricing::Price;
use tollgate::store::identity;
use tollgate::store::ledger::{self, UserPlan};

use crate::fake_openai::{self, API_KEY, FakeOpenAi};
use crate::helpers::{TestApp, problem, spawn_app_with};

/// What one call to `gpt` costs with the fake's usage (10 input + 2 cached + 30 output tokens
/// at $2 / $1 / $8 per 1M = $0.000262, × 1.3 markup = $0.0003406, at $0.01 a credit).
pub const GPT_CALL: i64 = 34_060;
const CREDIT: i64 = 1_000_000;

pub fn model(upstream: &str, fallbacks: &[&str]) -> ModelConfig {
    provider_model("openai", upstream, fallbacks)
}

pub fn provider_model(provider: &str, upstream: &str, fallbacks: &[&str]) -> ModelConfig {
    ModelConfig {
        provider: provider.into(),
        upstream: Some(upstream.into()),
        fallbacks: fallbacks.iter().map(|f| f.to_string()).collect(),
        max_output_tokens: None,
    }
}

pub fn app_config(slug: &str, credits: &str) -> AppConfig {
    serde_json::from_value(json!({
        "slug": slug, "credit_usd": "0.01", "markup": "1.3", "default_plan": "free",
        "plans": [{ "id": "free", "name": "Free", "credits": credits,
            "models": ["gpt", "broken", "nousage", "slow", "tools", "picky", "mock", "embed", "claude*",
                       "gemini*"] }]
    }))
    .unwrap()
}

/// The fake upstream and an app whose models point at it: `ai` (10 credits a month), `poor`
/// (none) and `small` (1 credit).
/// $2 input, $1 cached input, $8 output per 1M tokens.
pub fn test_price() -> Price {
    Price {
        input: Micros::parse("2.00").unwrap(),
        output: Micros::parse("8.00").unwrap(),
        cached_input: Some(Micros::parse("1.00").unwrap()),
        ..Price::default()
    }
}

pub async fn gateway_app() -> (TestApp, FakeOpenAi) {
    gateway_app_with(|_| {}).await
}

/// [`gateway_app`] with more config changes.
pub async fn gateway_app_with(more: impl FnOnce(&mut Config)) -> (TestApp, FakeOpenAi) {
    let (fake, url) = fake_openai::start().await;
    let app = spawn_app_with(|c: &mut Config| {
        gateway_config(c, &url);
        more(c);
    })
    .await;
    (app, fake)
}

/// The models, prices and apps of [`gateway_app_with`], pointed at the fake at `url`.
pub fn gateway_config(c: &mut Config, url: &str) {
    c.providers.openai.base_url = url.to_string();
    c.providers.openai.api_key = Some(API_KEY.to_string().into());
    for (name, m) in [
        ("gpt", model("gpt-4o-mini-2024-07-18", &[])),
        ("broken", model("fail-500", &["gpt"])),
        ("nousage", model("no-usage", &[])),
        ("slow", model("slow", &[])),
        ("tools", model("tools", &[])),
        ("picky", model("picky", &[])),
        ("secret", model("gpt-4o", &[])),
        ("embed", model("text-embedding-3-small", &[])),
    ] {
        c.models.insert(name.into(), m);
        c.prices.insert(name.into(), test_price());
    }
    c.apps = vec![
        app_config("ai", "10"),
        app_config("poor", "0"),
        app_config("small", "1"),
    ];
}

pub async fn chat(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.send_as(Method::POST, "/v1/chat/completions", key, Some(body))
        .await
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

pub async fn balance(app: &TestApp, key: &str) -> i64 {
    let me: Value = app.get_as("/v1/me", key).await.json().await.unwrap();
    me["credits"]["balance_micros"].as_i64().unwrap()
}

pub async fn usage(app: &TestApp, key: &str) -> Vec<Value> {
    let page: Value = app.get_as("/v1/me/usage", key).await.json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

/// SSE `data` payloads of a whole streamed answer.
pub fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn a_plain_call_is_forwarded_and_charged_exactly_the_reported_usage() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    assert_eq!(balance(&app, &key).await, 10 * CREDIT);

    let r = chat(&app, &key, hello("gpt")).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
    // The provider saw its own model name and the client's body.
    let sent = fake.received();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(sent[0]["messages"][0]["content"], "Say hello");

    assert_eq!(balance(&app, &key).await, 10 * CREDIT - GPT_CALL);
    let records = usage(&app, &key).await;
    assert_eq!(records.len(), 1);
    let u = &records[0];
    assert_eq!(
        (&u["model"], &u["provider"], &u["status"]),
        (&json!("gpt"), &json!("openai"), &json!("ok"))
    );
    assert_eq!(
        (
            u["input_tokens"].as_i64(),
            u["cached_input_tokens"].as_i64(),
            u["output_tokens"].as_i64()
        ),
        (Some(10), Some(2), Some(30))
    );
    assert_eq!(u["cost_micros"], GPT_CALL);
    assert_eq!(u["estimated"], false);
    let ledger: Value = app
        .get_as("/v1/me/ledger", &key)
        .await
        .json()
        .await
        .unwrap();
    let settles: Vec<&Value> = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "settle")
        .collect();
    assert_eq!(settles.len(), 1);
    assert_eq!(settles[0]["amount_micros"], -GPT_CALL);
}

#[tokio::test]
async fn a_stream_hides_the_usage_chunk_unless_asked_and_is_charged_from_it() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;

    let mut body = hello("gpt");
    body["stream"] = json!(true);
    let r = chat(&app, &key, body.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let got = events(&r.text().await.unwrap());
    assert_eq!(got.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = got[..got.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "the usage chunk the client did not ask for is stripped: {chunks:?}"
    );
    // Upstream was asked for usage anyway.
    assert_eq!(fake.received()[0]["stream_options"]["include_usage"], true);
    assert_eq!(balance(&app, &key).await, start - GPT_CALL);

    // A client that asks for usage gets the chunk, as from OpenAI.
    body["stream_options"] = json!({"include_usage": true});
    let got = events(&chat(&app, &key, body).await.text().await.unwrap());
    let last: Value = serde_json::from_str(&got[got.len() - 2]).unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 30);
    assert_eq!(balance(&app, &key).await, start - 2 * GPT_CALL);
}

#[tokio::test]
async fn a_streamed_tool_call_reaches_the_client_whole() {
    let (app, _fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let mut body = hello("tools");
    body["stream"] = json!(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let got = events(&chat(&app, &key, body).await.text().await.unwrap());
    let args: String = got
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(args, r#"{"location": "Paris"}"#);
    assert_eq!(usage(&app, &key).await[0]["cost_micros"], GPT_CALL);
}

#[tokio::test]
async fn a_failing_model_falls_back_and_only_the_answering_call_is_charged() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let r = chat(&app, &key, hello("broken")).await;
    assert_eq!(r.status(), 200);
    let models: Vec<Value> = fake.received().iter().map(|b| b["model"].clone()).collect();
    assert_eq!(models, [json!("fail-500"), json!("gpt-4o-mini-2024-07-18")]);
    assert_eq!(balance(&app, &key).await, start - GPT_CALL);
    let records = usage(&app, &key).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["model"], "gpt");
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"tollgate_gateway_fallbacks_total{from="broken",to="gpt"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_provider_refusal_is_passed_on_and_nothing_is_charged() {
    let (app, _fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let p = problem(chat(&app, &key, hello("picky")).await, 400).await;
    assert_eq!(p["type"], "urn:tollgate:problem:upstream-error");
    assert!(p["detail"].as_str().unwrap().contains("temperature"), "{p}");
    assert_eq!(balance(&app, &key).await, start);
    assert!(usage(&app, &key).await.is_empty());
}

#[tokio::test]
async fn missing_usage_is_estimated_flagged_and_never_free() {
    let (app, _fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    for stream in [false, true] {
        let mut body = hello("nousage");
        body["stream"] = json!(stream);
        let r = chat(&app, &key, body).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Hel"));
    }
    let records = usage(&app, &key).await;
    assert_eq!(records.len(), 2);
    for u in &records {
        assert_eq!(u["estimated"], true, "{u}");
        // "Say hello" (9 chars) ≈ 3 tokens; "Hello" ≈ 2 tokens.
        assert_eq!(
            (u["input_tokens"].as_i64(), u["output_tokens"].as_i64()),
            (Some(3), Some(2))
        );
        assert!(u["cost_micros"].as_i64().unwrap() > 0);
    }
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"tollgate_gateway_usage_estimated_total{provider="openai",model="nousage"} 2"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_charged_for_what_was_generated_once() {
    let (app, _fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let mut body = hello("slow");
    body["stream"] = json!(true);
    let mut r = chat(&app, &key, body).await;
    assert_eq!(r.status(), 200);
    let mut seen = 0;
    while seen < 200 {
        seen += r.chunk().await.unwrap().unwrap().len();
    }
    drop(r);
    let mut records = Vec::new();
    for _ in 0..100 {
        records = usage(&app, &key).await;
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(records.len(), 1, "the call was settled");
    let u = &records[0];
    assert_eq!(u["status"], "client_disconnected");
    assert_eq!(u["estimated"], true);
    let out = u["output_tokens"].as_i64().unwrap();
    // 200 chunks of "word " would be 250 tokens; the client left long before.
    assert!(out > 0 && out < 250, "{u}");
    let cost = u["cost_micros"].as_i64().unwrap();
    assert!(cost > 0);
    assert_eq!(balance(&app, &key).await, start - cost);
    let ledger: Value = app
        .get_as("/v1/me/ledger", &key)
        .await
        .json()
        .await
        .unwrap();
    let closes = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "settle" || e["kind"] == "release")
        .count();
    assert_eq!(closes, 1);
}

#[tokio::test]
async fn calls_are_refused_before_the_provider_without_credits_plan_or_model() {
    let (app, fake) = gateway_app().await;
    let poor = app.user_key("poor", "bob").await;
    let p = problem(chat(&app, &poor, hello("gpt")).await, 402).await;
    assert_eq!(p["type"], "urn:tollgate:problem:insufficient-credits");

    let key = app.user_key("ai", "alice").await;
    problem(chat(&app, &key, hello("secret")).await, 403).await;
    problem(chat(&app, &key, hello("nope")).await, 404).await;
    let p = problem(
        chat(&app, &key, json!({"model": "gpt", "n": 2, "stream": "yes"})).await,
        422,
    )
    .await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["messages", "stream", "n"]);
    assert!(fake.received().is_empty());

    let models: Value = app.get_as("/v1/models", &key).await.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "broken", "embed", "gpt", "mock", "nousage", "picky", "slow", "tools"
        ]
    );
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_replays_without_a_second_call_or_charge() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let send = || {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("idempotency-key", "retry-1")
            .json(&hello("gpt"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first_body = first.text().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(fake.received().len(), 1);
    assert_eq!(balance(&app, &key).await, start - GPT_CALL);
}

#[tokio::test]
async fn a_plan_changed_by_another_process_applies_to_the_next_call() {
    let (app, _fake) = gateway_app_with(|c| {
        c.apps = vec![
            serde_json::from_value(json!({
                "slug": "ai", "credit_usd": "0.01", "markup": "1.3", "default_plan": "free",
                "plans": [
                    { "id": "free", "name": "Free", "credits": "10", "models": ["gpt"] },
                    { "id": "basic", "name": "Basic", "credits": "10", "models": ["secret"] }
                ]
            }))
            .unwrap(),
        ];
    })
    .await;
    let key = app.user_key("ai", "alice").await;
    assert_eq!(chat(&app, &key, hello("gpt")).await.status(), 200);
    // As the worker applying a store's webhook would: the serving process is not told.
    let t = app.user_target("ai", "alice").await;
    let basic = UserPlan {
        plan_id: Some("basic".into()),
        ..UserPlan::default()
    };
    assert!(ledger::set_plan(&app.db, t, &basic, None).await.unwrap());
    problem(chat(&app, &key, hello("gpt")).await, 403).await;
    assert_eq!(
        usage(&app, &key).await.len(),
        1,
        "the refused call was not charged"
    );
    assert_eq!(chat(&app, &key, hello("secret")).await.status(), 200);
    assert_eq!(usage(&app, &key).await.len(), 2);
}

#[tokio::test]
async fn many_concurrent_streams_against_a_small_balance_never_overspend() {
    // No cap on calls in flight: all 200 race for the balance.
    let (app, _fake) = gateway_app_with(|c| c.gateway.max_concurrent_calls_per_user = 0).await;
    let key = app.user_key("small", "carol").await;
    assert_eq!(balance(&app, &key).await, CREDIT);
    let mut body = hello("gpt");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(30);
    let calls = (0..200).map(|_| async {
        let r = chat(&app, &key, body.clone()).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, text)
    });
    let results = join_all(calls).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count() as i64;
    let refused = results.iter().filter(|(s, _)| *s == 402).count() as i64;
    assert_eq!(
        ok + refused,
        200,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(ok >= 1);
    let end = balance(&app, &key).await;
    assert!(end >= 0);
    assert_eq!(end, CREDIT - ok * GPT_CALL);
    let (_, mismatches) = tollgate::store::ledger::verify(&app.db).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn the_built_in_mock_serves_new_development_apps_for_a_visible_charge() {
    let app = spawn_app_with(|_| {}).await;
    let settings = Config::defaults().new_app_settings();
    identity::create_app_with(&app.db, "dev", "Dev", &settings)
        .await
        .unwrap()
        .unwrap();
    let key = app.user_key("dev", "dana").await;
    assert_eq!(balance(&app, &key).await, 100 * CREDIT);
    let r = chat(
        &app,
        &key,
        json!({"model": "mock", "messages": [{"role": "user", "content": "Say hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("This is a mock answer")
    );
    // "Say hi" ≈ 2 tokens at $1/1M + 12 tokens at $2/1M + the $0.01 fee = $0.010026 = 1.0026 credits.
    assert_eq!(balance(&app, &key).await, 100 * CREDIT - 1_002_600);
    // The mock embeds too: one vector per input.
    let r = app
        .send_as(
            Method::POST,
            "/v1/embeddings",
            &key,
            Some(json!({"model": "mock", "input": ["one", "two"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["data"][1]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn a_retried_stream_is_replayed_whole_and_charged_once_and_409_while_running() {
    let (app, fake) = gateway_app().await;
    retried_stream_runs_once(app, fake).await;
}

#[tokio::test]
async fn a_stream_longer_than_the_idempotency_lock_keeps_its_key_locked_until_it_ends() {
    // The stream takes ~4 s; without renewal the 2 s lock would expire and a retry would run
    // the call again. (2 s, not 1: renewals every ~0.7 s leave a busy test machine margin.)
    let (app, fake) = gateway_app_with(|c| c.ledger.idempotency_lock_secs = 2).await;
    retried_stream_runs_once(app, fake).await;
}

/// A keyed stream of the slow model (~4 s), left by its client after the first chunk and
/// retried every 100 ms: 409 while it runs, then the whole stream replayed; one provider call,
/// one charge.
async fn retried_stream_runs_once(app: TestApp, fake: FakeOpenAi) {
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let mut body = hello("slow");
    body["stream"] = json!(true);
    let send = |idempotency_key: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("idempotency-key", idempotency_key)
            .json(&body)
            .send()
    };
    // The client leaves early; the answer still runs to its end and is stored.
    let mut first = send("stream-1").await.unwrap();
    assert_eq!(first.status(), 200);
    first.chunk().await.unwrap().unwrap();
    drop(first);
    let p = problem(send("stream-1").await.unwrap(), 409).await;
    assert_eq!(p["type"], "urn:tollgate:problem:conflict");
    // 200 chunks 20 ms apart: done within ~4 s.
    let mut replay = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = send("stream-1").await.unwrap();
        if r.status() == 200 {
            replay = Some(r);
            break;
        }
        assert_eq!(r.status(), 409);
    }
    let replay = replay.expect("the stream finished and was stored");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert!(
        replay.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let got = events(&replay.text().await.unwrap());
    assert_eq!(got.last().unwrap(), "[DONE]");
    assert_eq!(got.iter().filter(|e| e.contains("word ")).count(), 200);
    assert_eq!(fake.received().len(), 1, "one provider call");
    let records = usage(&app, &key).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "ok");
    assert_eq!(
        balance(&app, &key).await,
        start - GPT_CALL,
        "charged once, in full"
    );
}

#[tokio::test]
async fn embeddings_are_forwarded_and_charged_on_their_prompt_tokens() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let r = app
        .send_as(
            Method::POST,
            "/v1/embeddings",
            &key,
            Some(json!({"model": "embed", "input": ["first text", "second text"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(fake.received()[0]["model"], "text-embedding-3-small");
    // 8 prompt tokens at $2 per 1M, × 1.3, at $0.01 a credit.
    assert_eq!(balance(&app, &key).await, start - 2_080);
    let u = &usage(&app, &key).await[0];
    assert_eq!(
        (u["input_tokens"].as_i64(), u["output_tokens"].as_i64()),
        (Some(8), Some(0))
    );
    let p = problem(
        app.send_as(
            Method::POST,
            "/v1/embeddings",
            &key,
            Some(json!({"model": "embed", "input": [{}]})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "input");
}

#[tokio::test]
async fn a_user_with_too_many_calls_in_flight_gets_429_until_one_ends() {
    let (app, fake) = gateway_app_with(|c| c.gateway.max_concurrent_calls_per_user = 2).await;
    let key = app.user_key("ai", "alice").await;
    let other = app.user_key("ai", "bob").await;
    let mut body = hello("slow");
    body["stream"] = json!(true);
    let mut first = chat(&app, &key, body.clone()).await;
    let mut second = chat(&app, &key, body.clone()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    first.chunk().await.unwrap();
    second.chunk().await.unwrap();
    let p = problem(chat(&app, &key, hello("gpt")).await, 429).await;
    assert_eq!(p["type"], "urn:tollgate:problem:rate-limited");
    assert_eq!(
        chat(&app, &other, hello("gpt")).await.status(),
        200,
        "per user"
    );
    // The refused call reached no provider and charged nothing.
    assert_eq!(fake.received().len(), 3);
    drop(first);
    // The first call settles (client gone) and frees its place.
    let mut freed = false;
    for _ in 0..100 {
        if chat(&app, &key, hello("gpt")).await.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed);
    drop(second);
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(metrics.contains(r#"tollgate_gateway_concurrency_refused_total{app="ai"}"#));
}

#[tokio::test]
async fn a_failing_provider_trips_its_breaker_and_is_not_called_until_the_cooldown() {
    let (app, fake) = gateway_app_with(|c| {
        c.gateway.breaker_failures = 3;
        c.gateway.breaker_cooldown_ms = 60_000;
        c.models.insert("down".into(), model("fail-500", &[]));
        c.prices.insert("down".into(), test_price());
        c.apps[0].plans[0].models.push("down".into());
    })
    .await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    for _ in 0..3 {
        problem(chat(&app, &key, hello("down")).await, 502).await;
    }
    assert_eq!(fake.received().len(), 3);
    // Open: refused at once, the provider not called, nothing charged.
    let p = problem(chat(&app, &key, hello("down")).await, 503).await;
    assert!(
        p["detail"].as_str().unwrap().contains("circuit breaker"),
        "{p}"
    );
    assert_eq!(fake.received().len(), 3);
    assert_eq!(balance(&app, &key).await, start);
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(metrics.contains(r#"reason="circuit_open""#), "{metrics}");
}

#[tokio::test]
async fn a_plans_tokens_per_minute_refuse_calls_once_used_up() {
    let (app, fake) = gateway_app_with(|c| c.apps[0].plans[0].tokens_per_minute = Some(50)).await;
    let key = app.user_key("ai", "alice").await;
    // Each call uses 42 tokens (12 prompt + 30 completion): the second starts under 50.
    for _ in 0..2 {
        assert_eq!(chat(&app, &key, hello("gpt")).await.status(), 200);
    }
    let r = chat(&app, &key, hello("gpt")).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let p = problem(r, 429).await;
    assert_eq!(p["type"], "urn:tollgate:problem:rate-limited");
    assert_eq!(fake.received().len(), 2);
    assert_eq!(
        chat(&app, &app.user_key("ai", "bob").await, hello("gpt"))
            .await
            .status(),
        200,
        "per user"
    );
}

/// A call refused (credits) or failed at the provider does not count against the plan's
/// request quota; answered calls do.
#[tokio::test]
async fn only_answered_calls_count_against_the_request_quota() {
    let (app, _fake) = gateway_app_with(|c| {
        for a in &mut c.apps {
            a.plans[0].quotas.insert(
                "requests".into(),
                serde_json::from_value(json!({"limit": 2, "period": "month"})).unwrap(),
            );
        }
    })
    .await;
    let key = app.user_key("ai", "alice").await;
    let used = |me: Value| me["quotas"][0]["used"].as_i64().unwrap_or(0);
    problem(chat(&app, &key, hello("picky")).await, 400).await;
    let poor = app.user_key("poor", "bob").await;
    problem(chat(&app, &poor, hello("gpt")).await, 402).await;
    let me_poor: Value = app.get_as("/v1/me", &poor).await.json().await.unwrap();
    assert_eq!(used(me_poor), 0);
    for _ in 0..2 {
        assert_eq!(chat(&app, &key, hello("gpt")).await.status(), 200);
    }
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    assert_eq!(used(me), 2);
    let p = problem(chat(&app, &key, hello("gpt")).await, 429).await;
    assert_eq!(p["type"], "urn:tollgate:problem:quota-exceeded");
}

#[tokio::test]
async fn a_call_whose_credits_another_process_spent_while_it_was_sent_is_dropped_and_not_charged() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    // The first call holds before it sends (this process has not seen alice's balance yet);
    // its batch tells the process that she can pay for more.
    assert_eq!(chat(&app, &key, hello("gpt")).await.status(), 200);
    let after_one = balance(&app, &key).await;
    assert_eq!(after_one, 10 * CREDIT - GPT_CALL);
    // Another process (the app's own debit, a replica's calls) spends everything.
    let t = app.user_target("ai", "alice").await;
    let note = ledger::Note::default();
    ledger::charge(
        &app.db,
        t,
        ledger::EntryKind::Debit,
        after_one,
        0,
        note,
        None,
    )
    .await
    .unwrap();
    // The second call goes out while its hold is written; the hold is refused, the provider's
    // answer dropped, and the client told 402.
    let p = problem(chat(&app, &key, hello("gpt")).await, 402).await;
    assert_eq!(p["type"], "urn:tollgate:problem:insufficient-credits");
    assert_eq!(balance(&app, &key).await, 0);
    assert_eq!(usage(&app, &key).await.len(), 1, "one call was charged");
    assert!(fake.received().len() <= 2);
    let text = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        text.contains("tollgate_gateway_refused_after_send_total{app=\"ai\"} 1"),
        "{text}"
    );
    // The third call is refused before any provider request: the refusal taught the process.
    let sent = fake.received().len();
    problem(chat(&app, &key, hello("gpt")).await, 402).await;
    assert_eq!(fake.received().len(), sent);
    let (_, mismatches) = ledger::verify(&app.db).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

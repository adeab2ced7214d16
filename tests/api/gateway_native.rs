//! Native pass-through to Anthropic (`/anthropic/v1/messages`) and Gemini
//! (`/gemini/v1beta/models/{model}:generateContent`), against local fakes of both: bodies and
//! events pass untouched (model mapped), usage comes from the providers' own accounting, the
//! SDKs' key headers authenticate, fallbacks stay within the provider.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::config::Config;

use crate::fake_anthropic::{self, FakeAnthropic};
use crate::fake_gemini::{self, FakeGemini};
use crate::gateway::{app_config, balance, chat, provider_model, test_price, usage};
use crate::helpers::{TestApp, problem, spawn_app_with};

/// Anthropic: 25 input + 5 cache-write (priced as input) + 10 cache-read + 15 output tokens
/// = 30 × $2 + 10 × $1 + 15 × $8 = $0.00019 per 1M-scaled; × 1.3 at $0.01 a credit.
pub const CLAUDE_CALL: i64 = 24_700;
/// Gemini: 12 prompt of which 4 cached, 3 candidates + 7 thoughts = 8 × $2 + 4 × $1 + 10 × $8
/// = $0.0001; × 1.3 at $0.01 a credit.
pub const GEMINI_CALL: i64 = 13_000;

pub async fn native_app() -> (TestApp, FakeAnthropic, FakeGemini) {
    let (anthropic, anthropic_url) = fake_anthropic::start().await;
    let (gemini, gemini_url) = fake_gemini::start().await;
    let app = spawn_app_with(|c: &mut Config| {
        c.providers.anthropic.base_url = anthropic_url;
        c.providers.anthropic.api_key = Some(fake_anthropic::API_KEY.to_string().into());
        c.providers.gemini.base_url = gemini_url;
        c.providers.gemini.api_key = Some(fake_gemini::API_KEY.to_string().into());
        c.providers.openai.api_key = Some("sk-unused".to_string().into());
        for (name, m) in [
            (
                "claude",
                provider_model("anthropic", "claude-sonnet-4-5", &[]),
            ),
            (
                "claude-busy",
                provider_model("anthropic", "claude-busy", &["gpt", "claude"]),
            ),
            ("claude-cut", provider_model("anthropic", "claude-cut", &[])),
            (
                "claude-tools",
                provider_model("anthropic", "claude-tools", &[]),
            ),
            ("gemini", provider_model("gemini", "gemini-2.5-flash", &[])),
            ("gpt", provider_model("openai", "gpt-4o", &[])),
        ] {
            c.models.insert(name.into(), m);
            c.prices.insert(name.into(), test_price());
        }
        c.apps = vec![app_config("ai", "10")];
    })
    .await;
    (app, anthropic, gemini)
}

/// A request the way the Anthropic SDK sends it: the key in `x-api-key`.
async fn anthropic_call(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/anthropic/v1/messages"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn claude(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream, "system": "Be brief",
           "messages": [{"role": "user", "content": "Say hello"}]})
}

#[tokio::test]
async fn anthropic_messages_pass_through_and_are_charged_from_their_usage() {
    let (app, fake, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;

    let r = anthropic_call(&app, &key, claude("claude", false)).await;
    assert_eq!(r.status(), 200);
    let message: Value = r.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hello");
    let (version, sent) = &fake.received()[0];
    assert_eq!(version, "2023-06-01", "the default version is sent");
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "Be brief");
    assert_eq!(balance(&app, &key).await, start - CLAUDE_CALL);

    // Streamed, with the client's own version header passed on.
    let r = app
        .client
        .post(app.url("/anthropic/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&claude("claude", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(balance(&app, &key).await, start - 2 * CLAUDE_CALL);
    let records = usage(&app, &key).await;
    let u = &records[0];
    assert_eq!(
        (&u["provider"], &u["estimated"]),
        (&json!("anthropic"), &json!(false))
    );
    assert_eq!(
        (
            u["input_tokens"].as_i64(),
            u["cached_input_tokens"].as_i64(),
            u["output_tokens"].as_i64()
        ),
        (Some(30), Some(10), Some(15))
    );
}

#[tokio::test]
async fn an_anthropic_stream_cut_before_its_output_count_is_charged_on_an_estimate() {
    let (app, _, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let r = anthropic_call(&app, &key, claude("claude-cut", true)).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let u = &usage(&app, &key).await[0];
    assert_eq!(u["estimated"], true);
    // The connection closed cleanly, but before `message_stop`: a cut stream.
    assert_eq!(u["status"], "upstream_broken");
    // Input from message_start as reported; output estimated from "Hel".
    assert_eq!(
        (u["input_tokens"].as_i64(), u["output_tokens"].as_i64()),
        (Some(30), Some(1))
    );
    assert!(u["cost_micros"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_cut_anthropic_stream_served_as_chat_chunks_ends_with_an_error_and_done() {
    let (app, _, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let body = json!({"model": "claude-cut", "stream": true,
                      "messages": [{"role": "user", "content": "Say hello"}]});
    let r = chat(&app, &key, body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let error: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "upstream_broken", "{text}");
    assert_eq!(usage(&app, &key).await[0]["status"], "upstream_broken");
}

#[tokio::test]
async fn an_overloaded_anthropic_model_falls_back_within_anthropic_only() {
    let (app, fake, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let r = anthropic_call(&app, &key, claude("claude-busy", false)).await;
    assert_eq!(r.status(), 200);
    // `gpt` is skipped: it does not speak the Anthropic format.
    let models: Vec<Value> = fake
        .received()
        .iter()
        .map(|(_, b)| b["model"].clone())
        .collect();
    assert_eq!(models, [json!("claude-busy"), json!("claude-sonnet-4-5")]);
    assert_eq!(balance(&app, &key).await, start - CLAUDE_CALL);
}

#[tokio::test]
async fn gemini_generate_content_passes_through_streamed_or_not() {
    let (app, _, fake) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}],
                      "generationConfig": {"maxOutputTokens": 100}});
    // The key the way Google's SDKs send it.
    let send = |path: &str| {
        app.client
            .post(app.url(path))
            .header("x-goog-api-key", &key)
            .json(&body)
            .send()
    };
    let r = send("/gemini/v1beta/models/gemini:generateContent")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"],
        "Hi there"
    );
    assert_eq!(balance(&app, &key).await, start - GEMINI_CALL);

    let r = send("/gemini/v1beta/models/gemini:streamGenerateContent?alt=sse")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    assert_eq!(balance(&app, &key).await, start - 2 * GEMINI_CALL);
    let targets: Vec<String> = fake.received().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        targets,
        [
            "gemini-2.5-flash:generateContent",
            "gemini-2.5-flash:streamGenerateContent"
        ]
    );
    let p = problem(
        send("/gemini/v1beta/models/gemini:streamGenerateContent")
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "alt");
    // An API version Google does not have is no route, and reaches no provider.
    let p = problem(
        send("/gemini/v2/models/gemini:generateContent")
            .await
            .unwrap(),
        404,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("v1beta or v1"),
        "{p}"
    );
    assert_eq!(fake.received().len(), 2);
    assert_eq!(usage(&app, &key).await[0]["output_tokens"], 10);
}

#[tokio::test]
async fn a_model_called_through_another_providers_route_is_refused_by_name() {
    let (app, anthropic, gemini) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let p = problem(anthropic_call(&app, &key, claude("gpt", false)).await, 422).await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/chat/completions"),
        "{p}"
    );
    let p = problem(
        app.client
            .post(app.url("/gemini/v1beta/models/claude:generateContent"))
            .header("x-goog-api-key", &key)
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/anthropic/v1/messages"),
        "{p}"
    );
    let p = problem(
        app.send_as(
            Method::POST,
            "/anthropic/v1/messages",
            &key,
            Some(json!({"model": "claude"})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        p["errors"].as_array().unwrap().len(),
        2,
        "messages and max_tokens: {p}"
    );
    assert!(anthropic.received().is_empty() && gemini.received().is_empty());
}

/// Anthropic usage as OpenAI reports it: prompt = 25 input + 5 cache writes + 10 cache reads.
const CLAUDE_PROMPT_TOKENS: i64 = 40;

#[tokio::test]
async fn chat_completions_on_an_anthropic_model_are_translated_both_ways() {
    let (app, fake, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let r = chat(
        &app,
        &key,
        json!({"model": "claude", "max_tokens": 200, "stop": ["END"], "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Say hello"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], CLAUDE_PROMPT_TOKENS);
    assert_eq!(answer["usage"]["completion_tokens"], 15);
    let (_, sent) = &fake.received()[0];
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "Be brief");
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}])
    );
    assert_eq!(balance(&app, &key).await, start - CLAUDE_CALL);

    // Untranslatable fields are named, and nothing is called or charged.
    let p = problem(
        chat(
            &app,
            &key,
            json!({"model": "claude", "logprobs": true,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(p["type"], "urn:tollgate:problem:unsupported-field");
    assert_eq!(p["errors"][0]["field"], "logprobs");
    assert_eq!(fake.received().len(), 1);
    assert_eq!(balance(&app, &key).await, start - CLAUDE_CALL);
}

#[tokio::test]
async fn a_streamed_tool_call_from_anthropic_arrives_as_openai_chunks() {
    let (app, fake, _) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let r = chat(
        &app,
        &key,
        json!({"model": "claude-tools", "stream": true, "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let got = crate::gateway::events(&r.text().await.unwrap());
    assert_eq!(got.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = got[..got.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let call = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (&call["id"], &call["function"]["name"]),
        (&json!("toolu_fake1"), &json!("get_weather"))
    );
    let args: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap()["location"],
        "Paris"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["completion_tokens"], 15);
    // The tools went over as Anthropic tools.
    let (_, sent) = &fake.received()[0];
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["stream"], true);
    // 25 input + 15 output at $2 / $8 per 1M, × 1.3 at $0.01 a credit.
    assert_eq!(balance(&app, &key).await, start - 22_100);
}

#[tokio::test]
async fn chat_completions_on_a_gemini_model_are_translated_streamed_or_not() {
    let (app, _, fake) = native_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let body = json!({"model": "gemini", "max_tokens": 100,
        "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": "Be brief"},
                     {"role": "user", "content": "Say hi"}]});
    let r = chat(&app, &key, body.clone()).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 12);
    assert_eq!(answer["usage"]["completion_tokens"], 10);
    let (target, sent) = &fake.received()[0];
    assert_eq!(target, "gemini-2.5-flash:generateContent");
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 100);
    assert_eq!(
        sent["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(balance(&app, &key).await, start - GEMINI_CALL);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let r = chat(&app, &key, streamed).await;
    assert_eq!(r.status(), 200);
    let got = crate::gateway::events(&r.text().await.unwrap());
    assert_eq!(got.last().unwrap(), "[DONE]");
    let text: String = got[..got.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(text, "Hi there");
    assert_eq!(
        fake.received()[1].0,
        "gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(balance(&app, &key).await, start - 2 * GEMINI_CALL);
}

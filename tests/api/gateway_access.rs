//! Access follows payment on the AI path, and a call never costs more than its hold: a plan
//! changed by another process opens the paywall on the next call (quota and model refusals
//! included), a call without an output cap sends one upstream in each provider's own field
//! (lowered to what the user can pay), and a non-streamed call whose client hung up is still
//! settled when it ends.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate::config::Config;
use tollgate::store::ledger::{self, UserPlan};

use crate::fake_anthropic;
use crate::fake_gemini;
use crate::fake_openai::LONG_ANSWER_TOKENS;
use crate::gateway::{balance, chat, gateway_app_with, provider_model, test_price, usage};
use crate::helpers::{TestApp, problem};

/// What a call to a model at [`test_price`] costs with the OpenAI fake's usage (10 input + 2
/// cached + `output` tokens at $2 / $1 / $8 per 1M, × 1.3, at $0.01 a credit).
fn fake_call_cost(output: u64) -> i64 {
    (22 + 8 * output as i64) * 130
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn two_plans(quota: Option<i64>) -> tollgate::config::AppConfig {
    let mut free = json!({ "id": "free", "name": "Free", "credits": "10", "models": ["gpt"] });
    if let Some(limit) = quota {
        free["quotas"] = json!({ "requests": { "limit": limit, "period": "month" } });
    }
    serde_json::from_value(json!({
        "slug": "ai", "credit_usd": "0.01", "markup": "1.3", "default_plan": "free",
        "plans": [free, { "id": "pro", "name": "Pro", "credits": "10", "models": ["gpt", "secret"] }]
    }))
    .unwrap()
}

/// Puts the user on `pro` the way the worker applying a store's webhook does: straight into the
/// database, without telling the serving process.
async fn upgrade_elsewhere(app: &TestApp) {
    let t = app.user_target("ai", "alice").await;
    let pro = UserPlan {
        plan_id: Some("pro".into()),
        ..UserPlan::default()
    };
    assert!(ledger::set_plan(&app.db, t, &pro, None).await.unwrap());
}

#[tokio::test]
async fn a_user_who_used_up_the_free_quota_is_let_in_on_the_next_call_after_upgrading() {
    let (app, _fake) = gateway_app_with(|c| c.apps = vec![two_plans(Some(5))]).await;
    let key = app.user_key("ai", "alice").await;
    for _ in 0..5 {
        assert_eq!(chat(&app, &key, hello("gpt")).await.status(), 200);
    }
    let p = problem(chat(&app, &key, hello("gpt")).await, 429).await;
    assert_eq!(p["type"], "urn:tollgate:problem:quota-exceeded");
    upgrade_elsewhere(&app).await;
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    assert_eq!(me["plan"]["id"], "pro");
    assert_eq!(
        chat(&app, &key, hello("gpt")).await.status(),
        200,
        "the paywall opened"
    );
    assert_eq!(usage(&app, &key).await.len(), 6);
}

#[tokio::test]
async fn a_model_the_new_plan_includes_is_served_on_the_next_call_after_upgrading() {
    let (app, _fake) = gateway_app_with(|c| c.apps = vec![two_plans(None)]).await;
    let key = app.user_key("ai", "alice").await;
    // The serving process has read the free plan.
    assert_eq!(chat(&app, &key, hello("gpt")).await.status(), 200);
    problem(chat(&app, &key, hello("secret")).await, 403).await;
    upgrade_elsewhere(&app).await;
    assert_eq!(chat(&app, &key, hello("secret")).await.status(), 200);
}

/// The fakes of all three providers behind one app; `long` (OpenAI), `claude` and `gemini`
/// may write at most `MODEL_MAX` tokens a call.
const MODEL_MAX: u32 = 2_000;

async fn capped_app() -> (
    TestApp,
    crate::fake_openai::FakeOpenAi,
    fake_anthropic::FakeAnthropic,
    fake_gemini::FakeGemini,
) {
    let (anthropic, anthropic_url) = fake_anthropic::start().await;
    let (gemini, gemini_url) = fake_gemini::start().await;
    let (app, openai) = gateway_app_with(move |c: &mut Config| {
        c.providers.anthropic.base_url = anthropic_url;
        c.providers.anthropic.api_key = Some(fake_anthropic::API_KEY.to_string().into());
        c.providers.gemini.base_url = gemini_url;
        c.providers.gemini.api_key = Some(fake_gemini::API_KEY.to_string().into());
        for (name, provider, upstream) in [
            ("long", "openai", "long"),
            ("claude", "anthropic", "claude-sonnet-4-5"),
            ("gemini", "gemini", "gemini-2.5-flash"),
        ] {
            let mut m = provider_model(provider, upstream, &[]);
            m.max_output_tokens = Some(MODEL_MAX);
            c.models.insert(name.into(), m);
            c.prices.insert(name.into(), test_price());
        }
        for a in &mut c.apps {
            a.plans[0].models.push("long".into());
        }
    })
    .await;
    (app, openai, anthropic, gemini)
}

#[tokio::test]
async fn a_call_without_a_cap_sends_the_models_maximum_upstream_and_costs_exactly_its_usage() {
    let (app, openai, _, _) = capped_app().await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let r = chat(&app, &key, hello("long")).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    let sent = openai.received();
    assert_eq!(
        sent[0]["max_completion_tokens"], MODEL_MAX,
        "the cap, in OpenAI's field"
    );
    let records = usage(&app, &key).await;
    assert_eq!(records[0]["output_tokens"], MODEL_MAX);
    let cost = fake_call_cost(MODEL_MAX as u64);
    assert_eq!(records[0]["cost_micros"], cost);
    assert_eq!(
        balance(&app, &key).await,
        start - cost,
        "price × the provider's usage"
    );

    // The client's own cap is theirs: sent as they wrote it, nothing added.
    let mut body = hello("long");
    body["max_tokens"] = json!(100);
    assert_eq!(chat(&app, &key, body).await.status(), 200);
    let sent = openai.received();
    assert_eq!(sent[1]["max_tokens"], 100);
    assert!(
        sent[1].get("max_completion_tokens").is_none(),
        "{}",
        sent[1]
    );
    assert_eq!(usage(&app, &key).await[0]["output_tokens"], 100);
}

#[tokio::test]
async fn a_user_who_cannot_pay_the_models_maximum_gets_an_answer_cut_at_what_they_can_pay() {
    let (app, openai, _, _) = capped_app().await;
    // 1 credit pays about 940 output tokens of `long`, less than its 2,000.
    let key = app.user_key("small", "sam").await;
    let start = balance(&app, &key).await;
    assert_eq!(start, 1_000_000);
    let r = chat(&app, &key, hello("long")).await;
    assert_eq!(r.status(), 200);
    let cap = openai.received()[0]["max_completion_tokens"]
        .as_u64()
        .unwrap();
    assert!((800..(MODEL_MAX as u64)).contains(&cap), "lowered to {cap}");
    let cost = fake_call_cost(cap);
    assert!(cost <= start);
    assert_eq!(balance(&app, &key).await, start - cost);
    assert!(LONG_ANSWER_TOKENS > cap);
}

#[tokio::test]
async fn anthropic_and_gemini_calls_without_a_cap_send_it_in_their_own_fields() {
    let (app, _, anthropic, gemini) = capped_app().await;
    let key = app.user_key("ai", "alice").await;
    for model in ["claude", "gemini"] {
        for stream in [false, true] {
            let mut body = hello(model);
            body["stream"] = json!(stream);
            let r = chat(&app, &key, body).await;
            assert_eq!(r.status(), 200, "{model} stream={stream}");
            r.text().await.unwrap();
        }
    }
    // Native Gemini, as the SDK sends it: no generationConfig at all.
    let native = app
        .client
        .post(app.url("/gemini/v1beta/models/gemini:generateContent"))
        .header("x-goog-api-key", &key)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(native.status(), 200);
    let claude = anthropic.received();
    assert_eq!(claude.len(), 2);
    for (_, body) in &claude {
        assert_eq!(body["max_tokens"], MODEL_MAX, "{body}");
    }
    let gemini = gemini.received();
    assert_eq!(gemini.len(), 3);
    for (_, body) in &gemini {
        assert_eq!(
            body["generationConfig"]["maxOutputTokens"], MODEL_MAX,
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_non_streamed_call_whose_client_hung_up_is_settled_when_it_ends() {
    let (app, _fake) = gateway_app_with(|c| {
        c.models.insert(
            "slow-answer".into(),
            provider_model("openai", "slow-answer", &[]),
        );
        c.prices.insert("slow-answer".into(), test_price());
        for a in &mut c.apps {
            a.plans[0].models.push("slow-answer".into());
        }
    })
    .await;
    let key = app.user_key("ai", "alice").await;
    let start = balance(&app, &key).await;
    let gone = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&hello("slow-answer"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the answer");
    let t = app.user_target("ai", "alice").await;
    let mut settled = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if ledger::balances(&app.db, t).await.unwrap().held == 0 {
            settled = true;
            break;
        }
    }
    assert!(
        settled,
        "the hold was closed when the call ended, not left to the expiry job"
    );
    let records = usage(&app, &key).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "ok");
    assert_eq!(balance(&app, &key).await, start - fake_call_cost(30));
}

//! The gateway's limits hold across replicas sharing Redis: tokens per minute, calls in flight
//! and a provider's circuit breaker are one state, not one per process.

use serde_json::{Value, json};
use tollgate::config::Config;

use crate::fake_openai::{self, FakeOpenAi};
use crate::gateway::{gateway_config, model, test_price};
use crate::helpers::{Replica, TestApp, problem, redis_url, spawn_app_with, spawn_replica};

/// Two replicas on one database and one Redis (a prefix of their own), with `more` applied to
/// both; their fake provider; alice's key.
async fn two_replicas(more: fn(&mut Config)) -> (TestApp, Replica, FakeOpenAi, String) {
    let (fake, url) = fake_openai::start().await;
    let prefix = format!("tollgate-test:{}:", uuid::Uuid::now_v7().simple());
    let setup = |c: &mut Config| {
        gateway_config(c, &url);
        c.redis.url = Some(redis_url());
        c.rate_limits.redis_prefix = prefix.clone();
        more(c);
    };
    let a = spawn_app_with(setup).await;
    let b = spawn_replica(&a._test_db, setup).await;
    let key = a.user_key("ai", "alice").await;
    (a, b, fake, key)
}

async fn chat_at(url: String, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

#[tokio::test]
async fn tokens_per_minute_used_on_one_replica_count_on_the_other() {
    let (a, b, fake, key) = two_replicas(|c| c.apps[0].plans[0].tokens_per_minute = Some(40)).await;
    // 42 tokens (12 prompt + 30 completion) on replica A: the minute is used up.
    let r = chat_at(a.url("/v1/chat/completions"), &key, hello("gpt")).await;
    assert_eq!(r.status(), 200);
    let r = chat_at(b.url("/v1/chat/completions"), &key, hello("gpt")).await;
    let p = problem(r, 429).await;
    assert_eq!(p["type"], "urn:tollgate:problem:rate-limited");
    assert_eq!(
        fake.received().len(),
        1,
        "the refused call reached no provider"
    );
}

#[tokio::test]
async fn calls_in_flight_on_one_replica_count_on_the_other() {
    let (a, b, fake, key) = two_replicas(|c| c.gateway.max_concurrent_calls_per_user = 1).await;
    let mut body = hello("slow");
    body["stream"] = json!(true);
    let mut streaming = chat_at(a.url("/v1/chat/completions"), &key, body).await;
    assert_eq!(streaming.status(), 200);
    streaming.chunk().await.unwrap();
    let r = chat_at(b.url("/v1/chat/completions"), &key, hello("gpt")).await;
    problem(r, 429).await;
    assert_eq!(fake.received().len(), 1);
    // When the stream ends its place is given back, for either replica.
    drop(streaming);
    let mut freed = false;
    for _ in 0..100 {
        let r = chat_at(b.url("/v1/chat/completions"), &key, hello("gpt")).await;
        if r.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(freed, "the place came back");
}

#[tokio::test]
async fn a_breaker_opened_by_one_replica_is_open_on_the_other() {
    let (a, b, fake, key) = two_replicas(|c| {
        c.gateway.breaker_failures = 2;
        c.gateway.breaker_cooldown_ms = 60_000;
        c.models.insert("down".into(), model("fail-500", &[]));
        c.prices.insert("down".into(), test_price());
        c.apps[0].plans[0].models.push("down".into());
    })
    .await;
    for _ in 0..2 {
        let r = chat_at(a.url("/v1/chat/completions"), &key, hello("down")).await;
        problem(r, 502).await;
    }
    assert_eq!(fake.received().len(), 2);
    let r = chat_at(b.url("/v1/chat/completions"), &key, hello("down")).await;
    let p = problem(r, 503).await;
    assert!(
        p["detail"].as_str().unwrap().contains("circuit breaker"),
        "{p}"
    );
    assert_eq!(
        fake.received().len(),
        2,
        "replica B did not call the failing provider"
    );
}

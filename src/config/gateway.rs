//! `[gateway]` (timeouts, the hold's output cap), `[providers.*]` (where each AI provider is and
//! its key) and `[models.*]` (the names clients ask for → provider + upstream model, with an
//! ordered fallback list). See docs/gateway.md.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{PriceTable, Problem};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Opening a connection to a provider.
    pub connect_timeout_ms: u64,
    /// From sending the request to the response headers (the provider's first byte). A timeout
    /// here moves on to the next fallback model.
    pub first_byte_timeout_ms: u64,
    /// Longest silence between two chunks of a response once it has started.
    pub idle_timeout_ms: u64,
    /// Output tokens held for a call that sets no `max_tokens`/`max_completion_tokens`.
    pub default_max_output_tokens: u32,
    /// Calls one user may have in flight at once, per process (0 = no limit).
    pub max_concurrent_calls_per_user: u32,
    /// Failures in a row (5xx, timeouts, unreachable) that open a provider's circuit breaker
    /// (0 = never).
    pub breaker_failures: u32,
    /// How long an open breaker skips its provider before one call tries it again.
    pub breaker_cooldown_ms: u64,
}

impl GatewayConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub openai: ProviderConfig,
    pub anthropic: ProviderConfig,
    pub gemini: ProviderConfig,
    pub mock: MockConfig,
}

/// One HTTP provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The API root, e.g. `https://api.openai.com/v1` (tests point it at a local fake).
    pub base_url: String,
    /// Also read from the provider's conventional variable (`OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`).
    #[serde(default, deserialize_with = "super::env::secret")]
    pub api_key: Option<SecretString>,
}

/// The built-in `mock` provider: deterministic answers without a network, for development and
/// for testing apps without spending money.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// On in development, off elsewhere, unless set.
    pub enabled: Option<bool>,
    /// Delay before the answer starts.
    pub latency_ms: u64,
    /// Output tokens of every answer (one word each).
    pub output_tokens: u32,
    /// Delay between two streamed chunks.
    pub chunk_delay_ms: u64,
}

/// A model clients may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `openai`, `anthropic`, `gemini` or `mock`.
    pub provider: String,
    /// The provider's name for it; the model's own name when unset.
    pub upstream: Option<String>,
    /// Models tried in order when this one answers 429/5xx or times out before its first byte.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// The most output tokens the model may write in one call: sent upstream (and held) when
    /// the client sets no cap. `gateway.default_max_output_tokens` when unset.
    pub max_output_tokens: Option<u32>,
}

impl ModelConfig {
    pub fn upstream_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.upstream.as_deref().unwrap_or(name)
    }
}

pub type ModelTable = BTreeMap<String, ModelConfig>;

/// Providers the gateway can call today.
pub const PROVIDERS: &[&str] = &["openai", "anthropic", "gemini", "mock"];

pub fn validate(
    g: &GatewayConfig,
    providers: &ProvidersConfig,
    models: &ModelTable,
    prices: &PriceTable,
    p: &mut Vec<Problem>,
) {
    let ranges = [
        (
            "gateway.connect_timeout_ms",
            g.connect_timeout_ms,
            1,
            600_000,
        ),
        (
            "gateway.first_byte_timeout_ms",
            g.first_byte_timeout_ms,
            1,
            3_600_000,
        ),
        ("gateway.idle_timeout_ms", g.idle_timeout_ms, 1, 3_600_000),
        (
            "gateway.default_max_output_tokens",
            g.default_max_output_tokens as u64,
            1,
            10_000_000,
        ),
        (
            "gateway.max_concurrent_calls_per_user",
            g.max_concurrent_calls_per_user as u64,
            0,
            100_000,
        ),
        (
            "gateway.breaker_failures",
            g.breaker_failures as u64,
            0,
            1_000,
        ),
        (
            "gateway.breaker_cooldown_ms",
            g.breaker_cooldown_ms,
            1,
            3_600_000,
        ),
    ];
    for (key, value, low, high) in ranges {
        if !(low..=high).contains(&value) {
            p.push(Problem::new(key, format!("expected {low} to {high}")));
        }
    }
    for (name, provider) in [
        ("openai", &providers.openai),
        ("anthropic", &providers.anthropic),
        ("gemini", &providers.gemini),
    ] {
        match url::Url::parse(&provider.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => p.push(Problem::new(
                format!("providers.{name}.base_url"),
                "expected an http(s) URL",
            )),
        }
    }
    if providers.mock.output_tokens == 0 || providers.mock.output_tokens > 100_000 {
        p.push(Problem::new(
            "providers.mock.output_tokens",
            "expected 1 to 100000",
        ));
    }
    for (name, m) in models {
        let key = format!("models.{name}");
        if name.is_empty() || name.len() > 200 {
            p.push(Problem::new(&key, "a model name is 1 to 200 characters"));
        }
        if !PROVIDERS.contains(&m.provider.as_str()) {
            p.push(Problem::new(
                format!("{key}.provider"),
                format!("expected one of {}", PROVIDERS.join(", ")),
            ));
        }
        // A model without a price could not be charged: refuse it rather than serve it free.
        if !prices.contains_key(name) {
            p.push(Problem::new(
                &key,
                format!("no price: add [prices.\"{name}\"]"),
            ));
        }
        if m.max_output_tokens
            .is_some_and(|n| !(1..=10_000_000).contains(&n))
        {
            p.push(Problem::new(
                format!("{key}.max_output_tokens"),
                "expected 1 to 10000000",
            ));
        }
        for (i, f) in m.fallbacks.iter().enumerate() {
            if f == name || !models.contains_key(f) {
                p.push(Problem::new(
                    format!("{key}.fallbacks.{i}"),
                    format!("`{f}` is not another declared model"),
                ));
            }
        }
    }
}

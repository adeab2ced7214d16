//! What a call is sent to: the providers the gateway speaks to, and one model to try on one of
//! them. Below model resolution, request formats and output caps, which all name them.

use crate::config::{Config, Environment};
use crate::domain::pricing::Price;

/// The providers the gateway speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    Mock,
}

impl Provider {
    pub fn parse(name: &str) -> Option<Provider> {
        match name {
            "openai" => Some(Provider::OpenAi),
            "anthropic" => Some(Provider::Anthropic),
            "gemini" => Some(Provider::Gemini),
            "mock" => Some(Provider::Mock),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Mock => "mock",
        }
    }

    /// Whether the deployment can call it: the mock when enabled (by default in development),
    /// HTTP providers when they have a key.
    pub fn enabled(self, config: &Config) -> bool {
        match self {
            Provider::Mock => config
                .providers
                .mock
                .enabled
                .unwrap_or(config.environment == Environment::Development),
            Provider::OpenAi => config.providers.openai.api_key.is_some(),
            Provider::Anthropic => config.providers.anthropic.api_key.is_some(),
            Provider::Gemini => config.providers.gemini.api_key.is_some(),
        }
    }
}

/// One model to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The declared name (what usage records and prices use).
    pub model: String,
    pub provider: Provider,
    /// The provider's name for it.
    pub upstream: String,
    pub price: Price,
    /// The most output tokens one call may ask of it (`models.<name>.max_output_tokens`, else
    /// `gateway.default_max_output_tokens`).
    pub max_output_tokens: u64,
}

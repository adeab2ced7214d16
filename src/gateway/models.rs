//! Model resolution: the name a client asks for → the models to try, in order (the model
//! itself, then its fallbacks), each with its provider, upstream name and price. Only models
//! the user's plan allows and whose provider is enabled are tried.

use super::format::Format;
use crate::config::Config;
use crate::domain::plans::Plan;

pub use super::route::{Provider, Route};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the model `{0}` does not exist")]
    Unknown(String),
    #[error("your plan does not include the model `{0}`")]
    NotInPlan(String),
    #[error("the model `{0}` is not available on this deployment")]
    Unavailable(String),
    #[error("the model `{model}` is served by {provider}; call it through {route}")]
    WrongRoute {
        model: String,
        provider: &'static str,
        route: &'static str,
    },
}

impl From<ResolveError> for crate::error::Error {
    fn from(e: ResolveError) -> Self {
        use crate::error::Error;
        match e {
            ResolveError::Unknown(_) => Error::NotFound(e.to_string()),
            ResolveError::NotInPlan(_) => Error::Forbidden(e.to_string()),
            ResolveError::Unavailable(_) => Error::Unavailable(e.to_string()),
            ResolveError::WrongRoute { .. } => {
                Error::Validation(vec![crate::error::FieldError::new("model", e.to_string())])
            }
        }
    }
}

/// The route for one declared model, if the plan allows it and its provider is enabled.
fn route(config: &Config, plan: &Plan, name: &str) -> Result<Route, ResolveError> {
    let m = config
        .models
        .get(name)
        .ok_or_else(|| ResolveError::Unknown(name.to_string()))?;
    if !plan.allows_model(name) {
        return Err(ResolveError::NotInPlan(name.to_string()));
    }
    let provider = Provider::parse(&m.provider)
        .filter(|p| p.enabled(config))
        .ok_or_else(|| ResolveError::Unavailable(name.to_string()))?;
    // Validation refuses a model without a price, so this is only reached by a bug.
    let price = config
        .prices
        .get(name)
        .copied()
        .ok_or_else(|| ResolveError::Unavailable(name.to_string()))?;
    Ok(Route {
        model: name.to_string(),
        provider,
        upstream: m.upstream_name(name).to_string(),
        price,
        max_output_tokens: m
            .max_output_tokens
            .unwrap_or(config.gateway.default_max_output_tokens) as u64,
    })
}

/// Where a client calls a provider's models.
fn route_of(p: Provider) -> &'static str {
    match p {
        Provider::OpenAi | Provider::Mock => "/v1/chat/completions",
        Provider::Anthropic => "/anthropic/v1/messages",
        Provider::Gemini => "/gemini/v1beta/models/{model}:generateContent",
    }
}

/// The models to try for `name` in `format`: itself, then each fallback the plan allows, the
/// deployment can call and that answers in the same format (others are skipped, not errors).
pub fn resolve(
    config: &Config,
    plan: &Plan,
    name: &str,
    format: Format,
) -> Result<Vec<Route>, ResolveError> {
    let first = route(config, plan, name)?;
    if !format.served_by(first.provider) {
        return Err(ResolveError::WrongRoute {
            model: name.to_string(),
            provider: first.provider.as_str(),
            route: route_of(first.provider),
        });
    }
    let mut routes = vec![first];
    for fallback in &config.models[name].fallbacks {
        if routes.iter().any(|r| &r.model == fallback) {
            continue;
        }
        if let Ok(r) = route(config, plan, fallback)
            && format.served_by(r.provider)
        {
            routes.push(r);
        }
    }
    Ok(routes)
}

/// Declared models the plan allows and the deployment can call, by name.
pub fn available(config: &Config, plan: &Plan) -> Vec<String> {
    config
        .models
        .keys()
        .filter(|name| route(config, plan, name).is_ok())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, ModelConfig};
    use crate::domain::money::Micros;
    use crate::domain::pricing::Price;

    fn config() -> Config {
        let mut c = Config::defaults();
        c.providers.openai.api_key = Some("sk-test".to_string().into());
        for (name, provider, upstream, fallbacks) in [
            (
                "gpt",
                "openai",
                Some("gpt-4o-2024-08-06"),
                vec!["mini", "mock"],
            ),
            ("mini", "openai", None, vec![]),
            ("mock", "mock", None, vec![]),
            ("secret", "openai", None, vec![]),
        ] {
            c.models.insert(
                name.into(),
                ModelConfig {
                    provider: provider.into(),
                    upstream: upstream.map(String::from),
                    fallbacks: fallbacks.into_iter().map(String::from).collect(),
                    max_output_tokens: None,
                },
            );
            c.prices.insert(
                name.into(),
                Price {
                    input: Micros::units(1),
                    ..Price::default()
                },
            );
        }
        c
    }

    fn resolve_chat(c: &Config, p: &Plan, name: &str) -> Result<Vec<Route>, ResolveError> {
        resolve(c, p, name, Format::OpenAiChat)
    }

    fn plan(models: &[&str]) -> Plan {
        let mut p = crate::domain::plans::BillingSettings::default().plan(None);
        p.models = models.iter().map(|m| m.to_string()).collect();
        p
    }

    #[test]
    fn a_model_resolves_to_itself_then_its_allowed_fallbacks() {
        let c = config();
        let routes = resolve_chat(&c, &plan(&["gpt", "mock"]), "gpt").unwrap();
        let names: Vec<_> = routes.iter().map(|r| r.model.as_str()).collect();
        // `mini` is a fallback the plan does not allow: skipped.
        assert_eq!(names, ["gpt", "mock"]);
        assert_eq!(routes[0].upstream, "gpt-4o-2024-08-06");
        assert_eq!(routes[0].provider, Provider::OpenAi);
        assert_eq!(routes[1].provider, Provider::Mock);
    }

    #[test]
    fn unknown_forbidden_and_unavailable_models_are_told_apart() {
        let mut c = config();
        let p = plan(&["g*", "mini"]);
        assert_eq!(
            resolve_chat(&c, &p, "nope"),
            Err(ResolveError::Unknown("nope".into()))
        );
        assert_eq!(
            resolve_chat(&c, &p, "secret"),
            Err(ResolveError::NotInPlan("secret".into()))
        );
        c.providers.openai.api_key = None;
        assert_eq!(
            resolve_chat(&c, &p, "mini"),
            Err(ResolveError::Unavailable("mini".into()))
        );
    }

    #[test]
    fn the_mock_is_on_in_development_only_unless_configured() {
        let mut c = config();
        let p = plan(&["*"]);
        assert!(resolve_chat(&c, &p, "mock").is_ok());
        c.environment = Environment::Production;
        assert!(resolve_chat(&c, &p, "mock").is_err());
        c.providers.mock.enabled = Some(true);
        assert!(resolve_chat(&c, &p, "mock").is_ok());
    }

    #[test]
    fn available_lists_what_the_plan_can_call() {
        let c = config();
        assert_eq!(available(&c, &plan(&["m*"])), ["mini", "mock"]);
        assert!(available(&c, &plan(&[])).is_empty());
    }
}

//! The deploy checklist's items beyond reachability: each looks at the configuration or the
//! database and says pass, warn or fail with what it saw. `tollgate check` prints them.

use serde::Serialize;

use crate::config::Config;
use crate::store::{Backend, Db};

/// How one checklist line came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not applicable to this deployment.
    Skip,
    /// A fact, not a check.
    Info,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
            Status::Info => "info",
        }
    }
}

/// One line of the checklist: a stable name (for `--json` consumers), its status, what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

impl Item {
    pub fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// `fail` in production, `warn` elsewhere: what production must not run without.
fn required_in(production: bool) -> Status {
    if production {
        Status::Fail
    } else {
        Status::Warn
    }
}

/// Errors with stack traces go somewhere.
pub fn error_reporting(config: &Config, production: bool) -> Item {
    use secrecy::ExposeSecret;
    match config
        .sentry_dsn
        .as_ref()
        .and_then(|d| d.expose_secret().parse::<sentry::types::Dsn>().ok())
    {
        Some(dsn) => Item::new(
            "error_reporting",
            Status::Pass,
            format!("errors and panics go to Sentry ({})", dsn.host()),
        ),
        None if production => Item::new(
            "error_reporting",
            Status::Warn,
            "SENTRY_DSN is not set: errors are only in the logs",
        ),
        None => Item::new("error_reporting", Status::Skip, "SENTRY_DSN is not set"),
    }
}

/// The rate limits are on.
pub fn rate_limits(config: &Config, production: bool) -> Item {
    let r = &config.rate_limits;
    if !r.enabled {
        return Item::new(
            "rate_limits",
            required_in(production),
            "rate_limits.enabled = false: no request is ever limited",
        );
    }
    let shared = if config.redis.url.is_some() {
        "shared through Redis"
    } else {
        "per process"
    };
    Item::new(
        "rate_limits",
        Status::Pass,
        format!(
            "on, {shared}: {}/{} s per IP, {}/{} s per key",
            r.ip.requests, r.ip.per_seconds, r.key.requests, r.key.per_seconds
        ),
    )
}

/// The pool fits the backend: PostgreSQL with a statement timeout and room for API and jobs.
pub fn pool(config: &Config, backend: Backend, production: bool) -> Item {
    let d = &config.database;
    match backend {
        Backend::Sqlite if production => Item::new(
            "database_pool",
            Status::Warn,
            "SQLite: one writer, one machine; use PostgreSQL to run several replicas",
        ),
        Backend::Sqlite => Item::new(
            "database_pool",
            Status::Pass,
            format!("SQLite, {} connections", d.max_connections),
        ),
        Backend::Postgres if d.max_connections < 4 => Item::new(
            "database_pool",
            Status::Warn,
            format!(
                "database.max_connections = {}: the API, the job worker and the batch writer share it; 4 or more",
                d.max_connections
            ),
        ),
        Backend::Postgres if d.statement_timeout_ms == 0 => Item::new(
            "database_pool",
            required_in(production),
            "database.statement_timeout_ms = 0: a stuck statement holds its connection for ever",
        ),
        Backend::Postgres => Item::new(
            "database_pool",
            Status::Pass,
            format!(
                "{} connections, acquire timeout {} ms, statement timeout {} ms",
                d.max_connections, d.acquire_timeout_ms, d.statement_timeout_ms
            ),
        ),
    }
}

/// No kill switch left off, no queue left paused.
pub async fn switches(db: &Db, production: bool) -> Item {
    let stats = match crate::jobs::ops::stats(db).await {
        Ok(s) => s,
        Err(e) => return Item::new("jobs_switches", Status::Fail, format!("cannot read: {e}")),
    };
    let off: Vec<&str> = stats
        .switches
        .iter()
        .filter(|(_, on)| !**on)
        .map(|(name, _)| *name)
        .collect();
    let paused: Vec<&str> = stats
        .queues
        .iter()
        .filter(|q| q.paused)
        .map(|q| q.queue.as_str())
        .collect();
    if off.is_empty() && paused.is_empty() {
        return Item::new(
            "jobs_switches",
            Status::Pass,
            "every kill switch on, no queue paused",
        );
    }
    let mut seen = Vec::new();
    if !off.is_empty() {
        seen.push(format!(
            "switched off: {} (`tollgate jobs switch NAME on`)",
            off.join(", ")
        ));
    }
    if !paused.is_empty() {
        seen.push(format!(
            "paused: {} (`tollgate jobs resume QUEUE`)",
            paused.join(", ")
        ));
    }
    Item::new("jobs_switches", required_in(production), seen.join("; "))
}

/// Each app with a Stripe secret key has an enabled webhook endpoint in its Stripe account that
/// points at this server (`GET /v1/webhook_endpoints`).
pub async fn stripe_endpoints(config: &Config) -> Vec<Item> {
    let mut items = Vec::new();
    let http = crate::billing::store_http::http_client();
    for app in &config.apps {
        let Some(stripe) = &app.stripe else { continue };
        let name = format!("stripe_webhook_endpoint.{}", app.slug);
        let Some(key) = &stripe.secret_key else {
            items.push(Item::new(
                name,
                Status::Skip,
                "no stripe.secret_key: the endpoint cannot be looked up",
            ));
            continue;
        };
        let Some(public) = &config.public_url else {
            items.push(Item::new(
                name,
                Status::Skip,
                "no public_url to compare with",
            ));
            continue;
        };
        let expected = format!(
            "{}/webhooks/{}/stripe",
            public.trim_end_matches('/'),
            app.slug
        );
        let api = crate::billing::stripe_api::StripeApi {
            http: &http,
            base: &stripe.api_base,
            key,
        };
        let found = tokio::time::timeout(
            crate::ops::checks::CHECK_TIMEOUT * 5,
            api.get("/v1/webhook_endpoints", &[("limit", "100")]),
        )
        .await;
        let item = match found {
            Err(_) => Item::new(name, Status::Fail, "Stripe did not answer in time"),
            Ok(Err(e)) => Item::new(name, Status::Fail, format!("cannot list endpoints: {e}")),
            Ok(Ok(list)) => endpoint_item(name, &expected, &list),
        };
        items.push(item);
    }
    items
}

fn endpoint_item(name: String, expected: &str, list: &serde_json::Value) -> Item {
    let endpoints = list["data"].as_array().cloned().unwrap_or_default();
    let ours: Vec<&serde_json::Value> = endpoints
        .iter()
        .filter(|e| e["url"].as_str() == Some(expected))
        .collect();
    match ours.iter().find(|e| e["status"] == "enabled") {
        Some(e) => Item::new(
            name,
            Status::Pass,
            format!(
                "{} sends to {expected}",
                e["id"].as_str().unwrap_or("an endpoint")
            ),
        ),
        None if !ours.is_empty() => Item::new(
            name,
            Status::Fail,
            format!("the endpoint for {expected} is disabled in Stripe"),
        ),
        None => Item::new(
            name,
            Status::Fail,
            format!(
                "no endpoint of the Stripe account sends to {expected} ({} others); add it in Developers → Webhooks",
                endpoints.len()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stripe_endpoint_passes_only_when_enabled_and_pointing_here() {
        let url = "https://api.example.com/webhooks/acme/stripe";
        let list = |status: &str, url: &str| {
            json!({ "object": "list", "has_more": false,
                "data": [{ "id": "we_1", "object": "webhook_endpoint", "url": url, "status": status }] })
        };
        let item = |l| endpoint_item("x".into(), url, &l).status;
        assert_eq!(item(list("enabled", url)), Status::Pass);
        assert_eq!(item(list("disabled", url)), Status::Fail);
        assert_eq!(
            item(list(
                "enabled",
                "https://old.example.com/webhooks/acme/stripe"
            )),
            Status::Fail
        );
    }
}

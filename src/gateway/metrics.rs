//! Gateway metrics, named `tollgate_gateway_*`: calls, tokens and credits by app, model and
//! provider; provider latency and time to first token; provider errors; estimated usage.

use std::time::Duration;

use super::models::Route;
use super::usage::Usage;

pub const CALLS: &str = "tollgate_gateway_calls_total";
pub const TOKENS: &str = "tollgate_gateway_tokens_total";
pub const CREDITS: &str = "tollgate_gateway_charged_micros_total";
pub const LATENCY: &str = "tollgate_gateway_upstream_duration_seconds";
pub const TTFT: &str = "tollgate_gateway_time_to_first_token_seconds";
pub const UPSTREAM_ERRORS: &str = "tollgate_gateway_upstream_errors_total";
pub const ESTIMATED: &str = "tollgate_gateway_usage_estimated_total";
pub const FALLBACKS: &str = "tollgate_gateway_fallbacks_total";
pub const HOLD_SHORTFALL: &str = "tollgate_gateway_hold_shortfall_total";
pub const CONCURRENCY_REFUSED: &str = "tollgate_gateway_concurrency_refused_total";
pub const TOKENS_REFUSED: &str = "tollgate_gateway_tokens_per_minute_refused_total";
pub const REFUSED_AFTER_SEND: &str = "tollgate_gateway_refused_after_send_total";

pub fn describe() {
    metrics::describe_counter!(
        CALLS,
        "AI calls finished, by app, model, provider and status (ok, client_disconnected, upstream_broken)."
    );
    metrics::describe_counter!(
        TOKENS,
        "Tokens of AI calls, by app, model, provider and kind (input, cached_input, output)."
    );
    metrics::describe_counter!(
        CREDITS,
        "Micro-credits charged for AI calls, by app and model."
    );
    metrics::describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "From sending a call to the provider to its last byte, by provider and model."
    );
    metrics::describe_histogram!(
        TTFT,
        metrics::Unit::Seconds,
        "From sending a streamed call to its first generated token, by provider and model."
    );
    metrics::describe_counter!(
        UPSTREAM_ERRORS,
        "Provider failures, by provider, model and reason (HTTP status, timeout, connect)."
    );
    metrics::describe_counter!(
        ESTIMATED,
        "Calls charged on estimated tokens because the provider reported no usage."
    );
    metrics::describe_counter!(
        FALLBACKS,
        "Calls moved to a fallback model, by from and to."
    );
    metrics::describe_counter!(
        REFUSED_AFTER_SEND,
        "Calls sent to the provider while their hold was written, whose hold was then refused \
         (credits spent meanwhile, or the plan changed): cancelled, answered 402 or priced \
         again, never charged. By app."
    );
    metrics::describe_counter!(
        CONCURRENCY_REFUSED,
        "Calls refused because the user had max_concurrent_calls_per_user in flight, by app."
    );
    metrics::describe_counter!(
        TOKENS_REFUSED,
        "Calls refused because the user used the plan's tokens_per_minute, by app."
    );
    metrics::describe_counter!(
        HOLD_SHORTFALL,
        "Calls whose exact cost exceeded their hold (charged the hold), by model."
    );
}

pub fn upstream_error(route: &Route, reason: &str) {
    metrics::counter!(UPSTREAM_ERRORS, "provider" => route.provider.as_str(),
        "model" => route.model.clone(), "reason" => reason.to_string())
    .increment(1);
}

pub fn fallback(from: &Route, to: &Route) {
    metrics::counter!(FALLBACKS, "from" => from.model.clone(), "to" => to.model.clone())
        .increment(1);
}

pub struct Finished<'a> {
    pub app: &'a str,
    pub route: &'a Route,
    pub status: &'static str,
    pub usage: Usage,
    pub charged: i64,
    pub duration: Duration,
    pub ttft: Option<Duration>,
}

pub fn finished(f: &Finished<'_>) {
    let provider = f.route.provider.as_str();
    let labels = [
        ("app", f.app.to_string()),
        ("model", f.route.model.clone()),
        ("provider", provider.to_string()),
    ];
    let mut with_status = labels.to_vec();
    with_status.push(("status", f.status.to_string()));
    metrics::counter!(CALLS, &with_status).increment(1);
    for (kind, n) in [
        ("input", f.usage.input),
        ("cached_input", f.usage.cached_input),
        ("output", f.usage.output),
    ] {
        let mut l = labels.to_vec();
        l.push(("kind", kind.to_string()));
        metrics::counter!(TOKENS, &l).increment(n);
    }
    metrics::counter!(CREDITS, "app" => f.app.to_string(), "model" => f.route.model.clone())
        .increment(f.charged.max(0) as u64);
    metrics::histogram!(LATENCY, "provider" => provider, "model" => f.route.model.clone())
        .record(f.duration.as_secs_f64());
    if let Some(t) = f.ttft {
        metrics::histogram!(TTFT, "provider" => provider, "model" => f.route.model.clone())
            .record(t.as_secs_f64());
    }
    if f.usage.estimated {
        metrics::counter!(ESTIMATED, "provider" => provider, "model" => f.route.model.clone())
            .increment(1);
    }
}

pub fn counter_shortfall(route: &Route) {
    metrics::counter!(HOLD_SHORTFALL, "model" => route.model.clone()).increment(1);
}

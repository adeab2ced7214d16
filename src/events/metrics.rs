//! Event metrics, named `tollgate_events_*`.

use std::time::Duration;

use crate::domain::events::EventType;

pub const PUBLISHED: &str = "tollgate_events_published_total";
pub const ATTEMPTS: &str = "tollgate_events_delivery_attempts_total";
pub const DELIVERED: &str = "tollgate_events_deliveries_total";
pub const LATENCY: &str = "tollgate_events_delivery_duration_seconds";
pub const DISABLED: &str = "tollgate_events_endpoints_disabled_total";

/// Registers the help texts (called once with the recorder).
pub fn describe() {
    metrics::describe_counter!(PUBLISHED, "Events written to the outbox, by type.");
    metrics::describe_counter!(
        crate::jobs::kinds::recovery::NUDGES,
        "Recovery nudges handled, by channel and outcome (sent; canceled: the case closed first; deferred: quiet hours; already_done: a retried job)."
    );
    metrics::describe_counter!(
        crate::jobs::kinds::recovery::INCENTIVES,
        "Recovery incentives given (credits, free days), once per recovered case, by store."
    );
    metrics::describe_counter!(
        ATTEMPTS,
        "Delivery attempts, by outcome (2xx, 4xx, 5xx, 410, unreachable, blocked)."
    );
    metrics::describe_counter!(
        DELIVERED,
        "Deliveries finished, by state (succeeded, failed, skipped)."
    );
    metrics::describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "Time from sending a delivery to its answer."
    );
    metrics::describe_counter!(
        DISABLED,
        "Endpoints disabled by tollgate, by reason (gone: a 410; failing: failing for too long)."
    );
}

pub fn published(kind: EventType) {
    metrics::counter!(PUBLISHED, "type" => kind.as_str()).increment(1);
}

pub fn attempted(outcome: &'static str, took: Duration) {
    metrics::counter!(ATTEMPTS, "outcome" => outcome).increment(1);
    metrics::histogram!(LATENCY).record(took.as_secs_f64());
}

pub fn finished(state: &'static str) {
    metrics::counter!(DELIVERED, "state" => state).increment(1);
}

pub fn disabled(reason: &'static str) {
    metrics::counter!(DISABLED, "reason" => reason).increment(1);
}

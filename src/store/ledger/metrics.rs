//! Ledger metrics, named `tollgate_ledger_*`, and `Idempotency-Key` outcomes.

pub const ENTRIES: &str = "tollgate_ledger_entries_total";
pub const MICROS: &str = "tollgate_ledger_micros_total";
pub const REFUSED: &str = "tollgate_ledger_insufficient_total";
pub const QUOTA_REFUSED: &str = "tollgate_quota_exceeded_total";
pub const IDEMPOTENCY: &str = "tollgate_idempotency_requests_total";
pub const BATCH_CALLS: &str = "tollgate_ledger_batch_calls";
pub const BATCH_SECONDS: &str = "tollgate_ledger_batch_duration_seconds";
pub const BATCH_FAILED: &str = "tollgate_ledger_batch_failures_total";

/// Registers the help texts (called once with the recorder).
pub fn describe() {
    metrics::describe_counter!(ENTRIES, "Ledger entries written, by kind.");
    metrics::describe_counter!(
        MICROS,
        "Micro-credits moved by ledger entries, by kind (absolute amounts)."
    );
    metrics::describe_counter!(
        REFUSED,
        "Holds and charges refused for insufficient credits, by operation."
    );
    metrics::describe_counter!(
        QUOTA_REFUSED,
        "Requests refused by a plan quota, by metric."
    );
    metrics::describe_histogram!(
        BATCH_CALLS,
        "AI calls' ledger writes (holds and charges) per group-committed transaction."
    );
    metrics::describe_histogram!(
        BATCH_SECONDS,
        "Time to write one batch of AI calls' ledger writes, commit included."
    );
    metrics::describe_counter!(
        BATCH_FAILED,
        "Batches rolled back and written call by call instead."
    );
    metrics::describe_counter!(
        IDEMPOTENCY,
        "Requests with an Idempotency-Key, by outcome (fresh, replayed, in_flight, mismatch)."
    );
}

pub(super) fn entry(kind: &'static str, amount: i64) {
    metrics::counter!(ENTRIES, "kind" => kind).increment(1);
    metrics::counter!(MICROS, "kind" => kind).increment(amount.unsigned_abs());
}

pub(super) fn refused(operation: &'static str) {
    metrics::counter!(REFUSED, "operation" => operation).increment(1);
}

/// One batch of the call path's writer: its size, how long it took, whether it failed.
pub(super) fn batch(calls: usize, took: std::time::Duration, failed: bool) {
    metrics::histogram!(BATCH_CALLS).record(calls as f64);
    metrics::histogram!(BATCH_SECONDS).record(took.as_secs_f64());
    if failed {
        metrics::counter!(BATCH_FAILED).increment(1);
    }
}

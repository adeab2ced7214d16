//! Ledger metrics, named `tollgate_ledger_*`, and `Idempotency-Key` outcomes.

pub const ENTRIES: &str = "tollgate_ledger_entries_total";
pub const MICROS: &str = "tollgate_ledger_micros_total";
pub const REFUSED: &str = "tollgate_ledger_insufficient_total";
pub const QUOTA_REFUSED: &str = "tollgate_quota_exceeded_total";
pub const IDEMPOTENCY: &str = "tollgate_idempotency_requests_total";

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

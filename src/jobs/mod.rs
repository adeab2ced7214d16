//! Durable jobs: the queue ([`Client::enqueue`]), the [`worker`], the cron [`scheduler`], kill
//! [`switches`] and queue operations ([`ops`]). Handlers live in `jobs/kinds/<domain>.rs`.
//!
//! Delivery is at least once: a job whose worker dies mid-run is rescued and runs again, so
//! handlers must be idempotent (the ledger's idempotency keys make that cheap).

pub mod backoff;
pub mod client;
pub mod cron;
pub mod kind;
pub mod kinds;
pub mod maintenance;
pub mod metrics;
pub mod ops;
pub mod runtime;
pub mod scheduler;
mod store_listen;
pub mod switches;
pub mod worker;

pub use client::{Client, EnqueueError, EnqueueOptions, Enqueued};
pub use kind::{Job, JobContext, JobInfo, Permanent, Registry, WhenEnqueueOff};
pub use runtime::Runtime;

/// The queue every job uses unless its kind or the caller names another. Always exists.
pub const DEFAULT_QUEUE: &str = "default";
/// The queue of tollgate's own upkeep (pruning, ledger expiry, period credits), so a paused or
/// backlogged `default` queue never delays a hold's expiry.
pub const MAINTENANCE_QUEUE: &str = "maintenance";

/// Queue and schedule names: 1-64 characters of `a-z 0-9 _ - .`.
pub fn is_valid_queue_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_short_lowercase_words() {
        for ok in ["default", "mail", "billing.webhooks", "q-1_a"] {
            assert!(is_valid_queue_name(ok), "{ok}");
        }
        for bad in ["", "Mail", "a b", "ä", &"x".repeat(65)] {
            assert!(!is_valid_queue_name(bad), "{bad}");
        }
    }
}

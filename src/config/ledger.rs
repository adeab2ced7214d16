//! `[ledger]` (holds, monthly credits, idempotency keys) and `[prices]` (the price table).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Problem;
use crate::domain::money::Micros;
use crate::domain::pricing::Price;
use crate::jobs::cron::CronExpr;

/// Timers of the credit ledger and of `Idempotency-Key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// A hold not settled or released within this many seconds is resolved by the expiry job.
    pub hold_timeout_secs: u64,
    /// When the expiry job runs (holds past their timeout, grants past their expiry).
    pub expiry_cron: CronExpr,
    /// When each user's credits for the period are granted (also lazily on first use).
    pub period_credits_cron: CronExpr,
    /// How long a stored `Idempotency-Key` answer is replayed before it is pruned.
    pub idempotency_retention_hours: u64,
    /// A request still "in flight" after this long (its process died) may be taken over.
    pub idempotency_lock_secs: u64,
}

/// Prices by model name (the name the gateway resolves to), in USD.
pub type PriceTable = BTreeMap<String, Price>;

pub fn validate(l: &LedgerConfig, prices: &PriceTable, p: &mut Vec<Problem>) {
    if !(1..=86_400).contains(&l.hold_timeout_secs) {
        p.push(Problem::new(
            "ledger.hold_timeout_secs",
            "expected 1 to 86400",
        ));
    }
    if !(1..=720).contains(&l.idempotency_retention_hours) {
        p.push(Problem::new(
            "ledger.idempotency_retention_hours",
            "expected 1 to 720",
        ));
    }
    if !(1..=3_600).contains(&l.idempotency_lock_secs) {
        p.push(Problem::new(
            "ledger.idempotency_lock_secs",
            "expected 1 to 3600",
        ));
    }
    for (model, price) in prices {
        let fields = [
            ("input", Some(price.input)),
            ("output", Some(price.output)),
            ("cached_input", price.cached_input),
            ("request_fee", Some(price.request_fee)),
            ("min_charge", Some(price.min_charge)),
        ];
        for (field, value) in fields {
            if value.is_some_and(|v| v < Micros::ZERO) {
                p.push(Problem::new(
                    format!("prices.{model}.{field}"),
                    "must not be negative",
                ));
            }
        }
    }
}

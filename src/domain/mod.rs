//! Pure rules, no I/O: money and prices, plans, ledger math, subscription and dunning state
//! machines. One file per domain of DESIGN.md; each file carries its own unit tests.

pub mod compat;
pub mod events;
pub mod identity;
pub mod ledger;
pub mod money;
pub mod nudges;
pub mod plans;
pub mod pricing;
pub mod privacy;
pub mod rate_limit;
pub mod recovery;
pub mod subscriptions;

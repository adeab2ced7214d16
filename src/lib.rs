//! tollgate: the production backend for a paid app. See DESIGN.md for the domains.

pub mod billing;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod events;
pub mod gateway;
pub mod http;
pub mod jobs;
pub mod ops;
pub mod redact;
pub mod role;
pub mod startup;
pub mod store;
pub mod telemetry;

//! tollgate's own events, delivered to the app's endpoints as signed Standard Webhooks.
//!
//! A change publishes its event into the outbox in its own transaction
//! ([`crate::store::events::publish`]); a fan-out job makes one delivery per endpoint that wants
//! it; a delivery job sends it ([`send`]) and retries on the schedule of
//! [`crate::domain::events::retry_delay`]. docs/events.md is the user's guide.

pub mod app_jobs;
pub mod email;
pub mod endpoints;
pub mod fan_out;
pub mod metrics;
pub mod secrets;
pub mod send;
pub mod signing;
pub mod target;

//! Integration tests: the real app on a random port, on SQLite by default and on PostgreSQL
//! when TEST_DATABASE_URL is set (`.ci/run` runs both).

mod billing;
mod billing_checkout;
mod billing_clients;
mod billing_processes;
mod billing_sync;
mod cli;
mod compat;
mod cors;
mod credits;
mod credits_processes;
mod fake_anthropic;
mod fake_gemini;
mod fake_openai;
mod fake_stripe;
mod gateway;
mod gateway_clients;
mod gateway_native;
mod health;
mod helpers;
mod idempotency;
mod identity;
mod invites;
mod jobs;
mod jobs_processes;
mod jobs_telemetry;
mod jwt;
mod metrics;
mod migrations;
mod openapi;
mod problems;
mod rate_limits;
mod request_id;
mod sentry;
mod shutdown;
mod tenant_rls;

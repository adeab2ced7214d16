//! Prometheus metrics. The recorder is process-global (the `metrics` crate's design), so it is
//! installed once and shared by every `Application` in the process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Db;

pub const HTTP_REQUESTS: &str = "tollgate_http_requests_total";
pub const HTTP_DURATION: &str = "tollgate_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "tollgate_http_requests_in_flight";
const DB_CONNECTIONS: &str = "tollgate_db_pool_connections";
const DB_MAX: &str = "tollgate_db_pool_max_connections";
const BUILD_INFO: &str = "tollgate_build_info";

/// Latency buckets from 5 ms to 60 s: API calls sit at the low end, AI streams at the high end.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder on first call and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("latency buckets are non-empty")
                .set_buckets_for_metric(
                    Matcher::Full(crate::store::ledger::metrics::BATCH_CALLS.into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
                .expect("batch buckets are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status."
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency, by route template and method."
    );
    metrics::describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being served now.");
    metrics::describe_gauge!(
        DB_CONNECTIONS,
        "Database pool connections, by state (idle, in_use)."
    );
    metrics::describe_gauge!(DB_MAX, "Database pool size limit.");
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; labels carry the version and backend."
    );
    crate::jobs::metrics::describe();
    crate::ops::backup::describe_metrics();
    crate::events::metrics::describe();
    crate::events::email::metrics::describe();
    crate::store::ledger::metrics::describe();
    crate::store::recovery::describe_metrics();
    crate::gateway::metrics::describe();
    crate::http::rate_limit::describe_metrics();
    crate::http::auth::describe_metrics();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Renders the exposition text, sampling the pool gauges first.
pub fn render(handle: &PrometheusHandle, db: &Db) -> String {
    let stats = db.stats();
    let backend = db.backend().as_str();
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle", "backend" => backend).set(stats.idle as f64);
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use", "backend" => backend)
        .set(stats.size.saturating_sub(stats.idle) as f64);
    metrics::gauge!(DB_MAX, "backend" => backend).set(stats.max as f64);
    handle.render()
}

/// Keeps histogram buffers drained when nobody scrapes; runs until the token is cancelled.
pub async fn upkeep(handle: PrometheusHandle, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

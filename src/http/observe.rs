//! One log line and the HTTP metrics per request; a warning when a request is slow.
//! Routes are labelled by their template (`/v1/users/{id}`), never the raw path, so query
//! strings (which may carry tokens) stay out of logs and label cardinality stays bounded.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::ops::metrics::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS};

/// Decrements the in-flight gauge even when the client goes away mid-request.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(HTTP_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(HTTP_IN_FLIGHT).decrement(1.0);
    }
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let in_flight = InFlight::enter();
    let response = next.run(req).await;
    drop(in_flight);
    let elapsed = start.elapsed();
    let status = response.status().as_u16();

    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(elapsed.as_secs_f64());

    let latency_ms = elapsed.as_millis() as u64;
    if elapsed >= state.config.slow_request() {
        tracing::warn!(%method, %route, status, latency_ms, "slow request");
    } else {
        tracing::info!(%method, %route, status, latency_ms, "request");
    }
    response
}

//! The HTTP layer: router, middleware, extractors, and one module per group of routes.

pub mod admin;
pub mod api;
pub mod auth;
mod docs;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod jwt;
pub mod metrics;
mod observe;
pub mod openapi;
mod problems;
pub mod rate_limit;
pub mod request_id;
mod sanitize;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::role::Role;
use crate::store::Db;

/// What every handler can reach, behind one `Arc`: every middleware layer and handler takes a
/// clone, and cloning each field was ~2.5 % of the gateway's CPU under load.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    /// Enqueues background jobs (inside a store transaction when the job belongs to a write).
    pub jobs: crate::jobs::Client,
    /// Verified API keys, cached briefly (see [`auth::CACHE_TTL`]).
    pub keys: auth::KeyCache,
    /// Access tokens of the apps' own identity providers.
    pub jwt: jwt::JwtVerifier,
    /// Per-IP, per-key and per-app limits (in process, or shared through Redis).
    pub limiter: rate_limit::RateLimiter,
    pub metrics: PrometheusHandle,
    pub role: Role,
    /// Writes holds and their closes (the gateway's and the holds API's) in group commits.
    pub ledger: crate::store::ledger::Batcher,
    /// Pooled connections to the AI providers.
    pub upstream: crate::gateway::Upstream,
    /// Connections to the billing stores' APIs (Stripe, RevenueCat).
    pub stores: reqwest::Client,
}

/// The routes this role serves, without middleware. Later domains add their routers here.
pub fn routes(role: Role) -> Router<AppState> {
    openapi::routes(role)
}

/// Wraps `routes` in the middleware stack and binds the state. Outermost first: request id,
/// logging and metrics, problem+json for framework errors, control characters refused, CORS, rate limit, Idempotency-Key,
/// timeout, body limit, panics.
pub fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    let http = &state.config.http;
    routes
        .fallback(problems::not_found)
        .method_not_allowed_fallback(problems::method_not_allowed)
        .layer(CatchPanicLayer::custom(problems::panic))
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(http.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.request_timeout(),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::middleware,
        ))
        .layer(cors(&http.cors_origins))
        .layer(middleware::from_fn(sanitize::middleware))
        .layer(middleware::from_fn(problems::bare_errors_as_problems))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::middleware,
        ))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}

/// CORS from config: none when the list is empty, any origin for `*` (refused in production),
/// else exactly the listed origins.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            request_id::HEADER,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-client-version"),
            HeaderName::from_static("x-client-platform"),
        ])
        // Browser clients may read their remaining budget and when to retry.
        .expose_headers([
            request_id::HEADER,
            idempotency::REPLAYED,
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
        ])
}

//! Rate limiting middleware: per client IP for requests without a valid key, per key and per
//! app for those with one. GCRA ([`crate::domain::rate_limit`]) kept in process, or in Redis
//! (one atomic script, the Redis server's clock) so every replica enforces one limit.
//!
//! Answers carry `RateLimit-Policy` / `RateLimit` (IETF draft) and `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds) for the tightest policy; a 429
//! adds `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::config::{Config, FailMode, IpNet, LimitConfig};
use crate::domain::identity::PresentedKey;
use crate::domain::rate_limit::{Decision, Policy, Step, ceil_secs};
use crate::error::Error;

const REQUESTS: &str = "tollgate_rate_limit_requests_total";
use crate::ops::limiter::{BACKEND_ERRORS, Limiter, now_us as local_now_us};
/// Describes the limiter's metrics (HELP lines), once at start.
pub fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests checked against a rate limit, by policy, outcome (allowed, limited) and app."
    );
    metrics::describe_counter!(
        BACKEND_ERRORS,
        "Rate limit checks that could not reach their store (Redis), answered by the fail mode."
    );
}

/// The limiter of one process. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    ip: Policy,
    webhooks: Policy,
    key: Policy,
    app: Policy,
    /// Per-key policies that plans pick by name.
    tiers: HashMap<String, Policy>,
    fail: FailMode,
    trusted: Vec<IpNet>,
    store: Limiter,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = if self.inner.store.is_shared() {
            "redis"
        } else {
            "local"
        };
        f.debug_struct("RateLimiter")
            .field("backend", &backend)
            .finish()
    }
}

fn policy(name: &'static str, l: LimitConfig) -> Policy {
    Policy {
        name,
        limit: l.requests,
        period_us: l.per_seconds as i64 * 1_000_000,
    }
}

impl RateLimiter {
    pub fn new(config: &Config) -> RateLimiter {
        let r = &config.rate_limits;
        let store = Limiter::new(config.redis.url.as_deref(), &r.redis_prefix);
        RateLimiter {
            inner: Arc::new(Inner {
                enabled: r.enabled,
                ip: policy("ip", r.ip),
                webhooks: policy("webhooks", r.webhooks),
                key: policy("key", r.key),
                app: policy("app", r.app),
                tiers: r
                    .tiers
                    .iter()
                    .map(|(name, l)| {
                        // Policy names label metrics and Redis keys; tiers are few and live as
                        // long as the process, so their names are leaked once at start.
                        let label: &'static str =
                            Box::leak(format!("tier:{name}").into_boxed_str());
                        (name.clone(), policy(label, *l))
                    })
                    .collect(),
                fail: r.on_redis_error,
                trusted: config
                    .http
                    .trusted_proxies
                    .iter()
                    .filter_map(|t| IpNet::parse(t).ok())
                    .collect(),
                store,
            }),
        }
    }

    /// The per-key policy: the tier of the user's plan when it names one, else `key`.
    fn key_policy(&self, record: &crate::store::identity::KeyRecord) -> &Policy {
        let billing = &record.app_settings.billing;
        let tier = (record.kind == crate::domain::identity::KeyKind::User)
            .then(|| billing.declared_plan(record.user_plan_id.as_deref()))
            .flatten()
            .and_then(|plan| plan.rate_limit_tier.as_deref());
        tier.and_then(|t| self.inner.tiers.get(t))
            .unwrap_or(&self.inner.key)
    }

    /// Checks one request against `policy` for `id`; `Err` when the shared store is down.
    async fn check(&self, policy: &Policy, id: &str) -> Result<Decision, redis::RedisError> {
        self.inner.store.step(policy, id, Step::Take(1)).await
    }

    /// The GCRA state the gateway's limits share with the request limits.
    pub fn store(&self) -> &Limiter {
        &self.inner.store
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    /// address of `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        let trusted = |ip: &IpAddr| self.inner.trusted.iter().any(|n| n.contains(*ip));
        if !trusted(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !trusted(ip))
                .unwrap_or(peer),
        )
    }
}

/// Probes and authenticated scrapes, which are never limited: `/health` and `/ready`
/// (orchestrators and load balancers poll them; a shared bucket drained by anonymous traffic
/// would take every replica out), and `/metrics` with the configured metrics token.
fn exempt(state: &AppState, req: &Request) -> bool {
    match req.uri().path() {
        "/health" | "/ready" => true,
        "/metrics" => super::metrics::has_token(&state.config, req.headers()),
        _ => false,
    }
}

/// The middleware.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let limiter = state.limiter.clone();
    if !limiter.inner.enabled || exempt(&state, &req) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let mut checks: Vec<(&Policy, String)> = Vec::with_capacity(2);
    // Which app a refusal hits (the abuse signal operators watch); none for unknown callers.
    let mut app_label = String::new();
    let secret = super::auth::bearer_token(req.headers())
        .filter(|b| PresentedKey::parse(b).is_some())
        .map(str::to_string);
    let verified = match secret {
        // Kept in the request: the later layers and the route's extractor do not check again.
        Some(secret) => super::auth::verify_once(&state, &secret, req.extensions_mut())
            .await
            .ok(),
        None => None,
    };
    match verified {
        Some(record) => {
            app_label = record.app_slug.clone().unwrap_or_default();
            checks.push((limiter.key_policy(&record), record.prefix.clone()));
            if let Some(app_id) = record.app_id {
                checks.push((&limiter.inner.app, app_id.to_string()));
            }
        }
        None => {
            let ip = limiter.client_ip(peer, req.headers());
            let policy = if req.uri().path().starts_with("/webhooks/") {
                &limiter.inner.webhooks
            } else {
                &limiter.inner.ip
            };
            checks.push((policy, ip.map_or("unknown".into(), |ip| ip.to_string())));
        }
    }
    let mut tightest: Option<(&Policy, Decision)> = None;
    for (policy, id) in &checks {
        let decision = match limiter.check(policy, id).await {
            Ok(d) => d,
            Err(e) => {
                metrics::counter!(BACKEND_ERRORS).increment(1);
                match limiter.inner.fail {
                    FailMode::Open => {
                        tracing::warn!(error = %e, "rate limit store unreachable; letting the request through (on_redis_error = open)");
                        continue;
                    }
                    FailMode::Closed => {
                        tracing::error!(error = %e, "rate limit store unreachable; refusing the request (on_redis_error = closed)");
                        let mut r = Error::Unavailable(
                            "rate limiting is unavailable; try again shortly".into(),
                        )
                        .into_response();
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(1));
                        return r;
                    }
                }
            }
        };
        metrics::counter!(REQUESTS, "policy" => policy.name, "outcome" => if decision.allowed { "allowed" } else { "limited" }, "app" => app_label.clone())
            .increment(1);
        if !decision.allowed {
            let mut r = Error::RateLimited {
                retry_after_secs: ceil_secs(decision.retry_after_us) as u64,
            }
            .into_response();
            set_headers(r.headers_mut(), policy, &decision);
            return r;
        }
        if tightest.is_none_or(|(_, d)| decision.remaining < d.remaining) {
            tightest = Some((policy, decision));
        }
    }
    let mut response = next.run(req).await;
    if let Some((policy, decision)) = tightest {
        set_headers(response.headers_mut(), policy, &decision);
    }
    response
}

fn set_headers(h: &mut HeaderMap, policy: &Policy, d: &Decision) {
    let reset_at = local_now_us() / 1_000_000 + ceil_secs(d.reset_us);
    let pairs = [
        ("ratelimit-policy", policy.header()),
        ("ratelimit", d.header(policy)),
        ("x-ratelimit-limit", policy.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", reset_at.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

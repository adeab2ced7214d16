//! Liveness and readiness, in the `application/health+json` shape
//! (draft-inadarei-api-health-check): `/health` never touches a dependency; `/ready` checks
//! each one and answers 503 when any fails.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::config::FailMode;
use crate::ops::checks::{self, Check};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Liveness: the process is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthOut {
    /// Always `pass` when the process answers.
    pub status: &'static str,
    pub ok: bool,
    pub version: &'static str,
}

/// Readiness: every dependency and its observed latency.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyOut {
    /// `pass`; `warn` when a dependency the process can serve without is down (Redis with
    /// `rate_limits.on_redis_error = "open"`; still 200); `fail` (503).
    pub status: &'static str,
    pub version: &'static str,
    /// One entry per dependency: `database`, `migrations`, and `redis`, `email` and `backup`
    /// when configured (email down is a `warn`: messages wait in their jobs; a backup older than
    /// `backup.max_age_hours` is a `warn`).
    pub checks: BTreeMap<&'static str, Vec<CheckOut>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckOut {
    pub status: &'static str,
    /// How long the check took, in milliseconds.
    pub observed_value: f64,
    pub observed_unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl From<&Check> for CheckOut {
    fn from(c: &Check) -> Self {
        CheckOut {
            status: if c.ok { "pass" } else { "fail" },
            // Rounded to the microsecond; a latency, not money.
            observed_value: (c.latency.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            observed_unit: "ms",
            output: c.output.clone(),
        }
    }
}

fn health_json(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/health+json"),
    );
    response
}

/// Liveness probe: answers while the process runs, without touching any dependency.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "The process is up", body = HealthOut,
        content_type = "application/health+json")))]
pub async fn get_health() -> Response {
    health_json(
        StatusCode::OK,
        HealthOut {
            status: "pass",
            ok: true,
            version: VERSION,
        },
    )
}

/// Readiness probe: database, migrations and (when configured) Redis, each with its latency.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses(
        (status = 200, description = "Every dependency answers", body = ReadyOut,
            content_type = "application/health+json"),
        (status = 503, description = "At least one dependency fails", body = ReadyOut,
            content_type = "application/health+json")))]
pub async fn get_ready(State(state): State<AppState>) -> Response {
    let (mut results, email, backup) = tokio::join!(
        checks::all(&state.db, state.config.redis.url.as_deref()),
        checks::email(&state.config),
        checks::backup(&state.db, &state.config)
    );
    results.extend(email);
    results.extend(backup);
    // Redis only backs the rate limits: set to fail open, its loss degrades them, it does not
    // make the replica unable to serve. Email is sent by jobs that wait for it to come back.
    let tolerated = |c: &Check| {
        (c.name == "redis" && state.config.rate_limits.on_redis_error == FailMode::Open)
            || c.name == "email"
            // An old backup is an operator's alarm, not a reason to stop serving.
            || c.name == "backup"
    };
    let ok = results.iter().all(|c| c.ok || tolerated(c));
    let degraded = results.iter().any(|c| !c.ok);
    for failed in results.iter().filter(|c| !c.ok) {
        tracing::warn!(check = failed.name, output = ?failed.output, "readiness check failed");
    }
    let body = ReadyOut {
        status: match (ok, degraded) {
            (true, false) => "pass",
            (true, true) => "warn",
            (false, _) => "fail",
        },
        version: VERSION,
        checks: results
            .iter()
            .map(|c| {
                let mut out = CheckOut::from(c);
                if !c.ok && tolerated(c) {
                    out.status = "warn";
                }
                (c.name, vec![out])
            })
            .collect(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    health_json(status, body)
}

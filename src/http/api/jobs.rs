//! The app's own jobs (app secret key): enqueue one (`POST /v1/jobs`), read one back
//! (`GET /v1/jobs/{id}`). Each run is a signed POST to the app's jobs endpoint (docs/jobs.md).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::events::app_jobs::{self, Enqueued, NewAppJob};
use crate::http::auth::AppAuth;
use crate::http::idempotency::EffectKey;
use crate::http::{AppState, extract};
use crate::store::jobs::admin;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_job))
        .routes(routes!(get_job))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIn {
    /// The app's name for the work (`report.nightly`): 1-64 characters of a-z, 0-9, `_`, `-`, `.`.
    pub kind: String,
    /// A JSON object, at most 64 KiB, handed back with every run.
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
    /// Run no earlier than this (ms since the epoch; at most a year ahead). Default: now.
    pub run_at: Option<i64>,
    /// A queue declared under `[jobs.queues]` (default `app`).
    pub queue: Option<String>,
    /// 0 runs first; default 1.
    #[schema(minimum = 0, maximum = 10)]
    pub priority: Option<i64>,
    /// Default 20.
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i64>,
    /// While a job of this kind holds the key unfinished, enqueueing again returns it.
    #[schema(max_length = 200)]
    pub unique_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppJobOut {
    pub id: i64,
    /// The app's own kind.
    pub kind: String,
    pub queue: String,
    /// `available`, `running`, `retryable`, `completed`, `discarded` or `cancelled`.
    pub state: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub created_at: i64,
    pub finalized_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// Enqueues one of the app's jobs: 201 when new, 200 with the existing job when its
/// `unique_key` (or this request's `Idempotency-Key`) already made one.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("api_key" = [])),
    request_body = JobIn,
    responses((status = 201, description = "Enqueued", body = Enqueued),
        (status = 200, description = "The job this unique key or Idempotency-Key already made", body = Enqueued)))]
pub async fn create_job(
    State(state): State<AppState>,
    auth: AppAuth,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<JobIn>,
) -> Result<(StatusCode, Json<Enqueued>)> {
    let job = NewAppJob {
        kind: body.kind,
        args: body.args,
        run_at: body.run_at,
        queue: body.queue,
        priority: body.priority,
        max_attempts: body.max_attempts,
        unique_key: body.unique_key,
    };
    let key = EffectKey::of(&effect);
    let made = app_jobs::enqueue(&state.config, &state.jobs, &auth.app_slug, job, key).await?;
    let status = if made.inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(made)))
}

/// One of the app's jobs: its state, attempts and last error.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("api_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "The job", body = AppJobOut)))]
pub async fn get_job(
    State(state): State<AppState>,
    auth: AppAuth,
    Path(id): Path<i64>,
) -> Result<Json<AppJobOut>> {
    let not_found = || Error::NotFound(format!("no job {id}"));
    let job = admin::get(&state.db, id).await?.ok_or_else(not_found)?;
    // Another app's job, or tollgate's own, does not exist for this key.
    let kind = app_jobs::own_kind(&auth.app_slug, &job.kind).ok_or_else(not_found)?;
    Ok(Json(AppJobOut {
        id: job.id,
        kind: kind.to_string(),
        queue: job.queue,
        state: job.state,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        run_at: job.run_at,
        created_at: job.created_at,
        finalized_at: job.finalized_at,
        last_error: job.last_error,
    }))
}

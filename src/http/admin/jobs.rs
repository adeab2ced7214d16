//! Queue operations for operators: the same as `tollgate jobs …` (both go through
//! `jobs::ops`). Jobs span apps, so these routes need an operator not limited to some apps.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit;
use crate::domain::identity::Role;
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::auth::OperatorAuth;
use crate::http::extract;
use crate::jobs::ops::{self, Action, Applied, Stats};
use crate::jobs::switches::{self, Switch};
use crate::store::jobs::{JobRow, admin, state};
use crate::store::now_ms;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    /// Jobs with a smaller id (the next page).
    pub before: Option<i64>,
    /// Default 50, at most 1000.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    #[schema(value_type = Object)]
    pub job: JobRow,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<admin::AttemptError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionOut {
    pub id: i64,
    /// `done`, `skipped` (with why) or `not_found`.
    pub result: String,
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchIn {
    pub on: bool,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_stats))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(act_on_job))
        .routes(routes!(pause_queue))
        .routes(routes!(set_switch))
}

fn unrestricted(op: &OperatorAuth, role: Role) -> Result<()> {
    op.require_unrestricted(role, "jobs span apps")
}

/// Counts per queue and state, oldest due job, pauses and switches.
#[utoipa::path(get, path = "/admin/v1/jobs/stats", tag = "jobs", security(("operator_token" = [])),
    responses((status = 200, description = "Queue statistics", body = Stats)))]
pub async fn get_stats(State(state): State<AppState>, op: OperatorAuth) -> Result<Json<Stats>> {
    unrestricted(&op, Role::Viewer)?;
    Ok(Json(ops::stats(&state.db).await?))
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/admin/v1/jobs", tag = "jobs", security(("operator_token" = [])),
    params(JobsQuery),
    responses((status = 200, description = "Jobs", body = [Object])))]
pub async fn list_jobs(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<JobRow>>> {
    unrestricted(&op, Role::Viewer)?;
    if let Some(s) = &q.state
        && !state::ALL.contains(&s.as_str())
    {
        return Err(Error::Validation(vec![FieldError::new(
            "state",
            format!("expected one of {}", state::ALL.join(", ")),
        )]));
    }
    let filter = admin::Filter {
        state: q.state,
        queue: q.queue,
        kind: q.kind,
        before_id: q.before,
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
    };
    Ok(Json(admin::list(&st.db, &filter).await?))
}

/// One job with every attempt's error.
#[utoipa::path(get, path = "/admin/v1/jobs/{id}", operation_id = "admin_get_job", tag = "jobs", security(("operator_token" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "The job", body = JobOut)))]
pub async fn get_job(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<i64>,
) -> Result<Json<JobOut>> {
    unrestricted(&op, Role::Viewer)?;
    let job = admin::get(&state.db, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
    let errors = admin::errors(&state.db, id).await?;
    Ok(Json(JobOut { job, errors }))
}

/// `retry`, `cancel` or `discard` one job (admin).
#[utoipa::path(post, path = "/admin/v1/jobs/{id}/{action}", tag = "jobs", security(("operator_token" = [])),
    params(("id" = i64, Path), ("action" = String, Path, description = "retry, cancel or discard")),
    responses((status = 200, description = "What happened", body = ActionOut)))]
pub async fn act_on_job(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Json<ActionOut>> {
    unrestricted(&op, Role::Admin)?;
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "cancel" => Action::Cancel,
        "discard" => Action::Discard,
        _ => {
            return Err(Error::NotFound(
                "expected /retry, /cancel or /discard".into(),
            ));
        }
    };
    let (result, detail) = match ops::apply(&state.db, action, id).await? {
        Applied::Done => ("done", None),
        Applied::Skipped(why) => ("skipped", Some(why)),
        Applied::NotFound => return Err(Error::NotFound(format!("no job {id}"))),
    };
    audit(
        &state,
        &op,
        &format!("jobs.{}", action.verb()),
        &id.to_string(),
        None,
        Some(json!({ "result": result })),
    )
    .await?;
    Ok(Json(ActionOut {
        id,
        result: result.into(),
        detail,
    }))
}

/// `pause` or `resume` a queue (admin).
#[utoipa::path(post, path = "/admin/v1/jobs/queues/{queue}/{action}", tag = "jobs", security(("operator_token" = [])),
    params(("queue" = String, Path), ("action" = String, Path, description = "pause or resume")),
    responses((status = 204, description = "Done; every replica within jobs.switch_refresh_ms")))]
pub async fn pause_queue(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((queue, action)): Path<(String, String)>,
) -> Result<axum::http::StatusCode> {
    unrestricted(&op, Role::Admin)?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(Error::NotFound("expected /pause or /resume".into())),
    };
    if !crate::jobs::is_valid_queue_name(&queue) {
        return Err(Error::NotFound(format!("no queue {queue:?}")));
    }
    admin::set_paused(&state.db, &queue, paused, now_ms()).await?;
    audit(&state, &op, &format!("jobs.{action}"), &queue, None, None).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Turns a kill switch (`scheduler`, `enqueue`, `processing`) on or off (admin).
#[utoipa::path(put, path = "/admin/v1/jobs/switches/{name}", tag = "jobs", security(("operator_token" = [])),
    params(("name" = String, Path)),
    request_body = SwitchIn,
    responses((status = 204, description = "Done; every replica within jobs.switch_refresh_ms")))]
pub async fn set_switch(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<SwitchIn>,
) -> Result<axum::http::StatusCode> {
    unrestricted(&op, Role::Admin)?;
    let switch: Switch = name.parse().map_err(Error::NotFound)?;
    switches::set(&state.db, switch, body.on).await?;
    audit(
        &state,
        &op,
        "jobs.switch",
        switch.as_str(),
        None,
        Some(json!({ "on": body.on })),
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

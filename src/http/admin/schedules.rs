//! Schedules of an app's own jobs for operators: list (the config's and the stored), create,
//! delete a stored one (docs/jobs.md). Every replica's scheduler picks a change up within
//! seconds; each slot still runs once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{audit, visible_app};
use crate::config::CatchUp;
use crate::domain::identity::Role;
use crate::error::{Error, FieldError, Result};
use crate::events::app_jobs::{self, schedule_problems};
use crate::http::auth::OperatorAuth;
use crate::http::{AppState, extract};
use crate::jobs::cron::CronExpr;
use crate::store::jobs::app_schedules::{self as store, StoredSchedule};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules, create_schedule))
        .routes(routes!(delete_schedule))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    /// Unique in the app: 1-64 characters of a-z, 0-9, `_`, `-`, `.`.
    pub name: String,
    /// Five fields (or six, seconds first), UTC.
    pub cron: String,
    /// The app's kind, as in `POST /v1/jobs`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
    /// Default `app`.
    pub queue: Option<String>,
    /// `once` (default), `none` or `all`: what happens to slots missed while no scheduler ran.
    pub catch_up: Option<CatchUp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    pub name: String,
    pub cron: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub queue: String,
    pub catch_up: String,
    /// `config` (`[[apps.schedules]]`, changed by editing the file) or `api`.
    pub source: &'static str,
}

impl From<StoredSchedule> for ScheduleOut {
    fn from(s: StoredSchedule) -> Self {
        ScheduleOut {
            name: s.name,
            cron: s.cron,
            kind: s.kind,
            args: s.args,
            queue: s.queue,
            catch_up: s.catch_up,
            source: "api",
        }
    }
}

/// The app's schedules: the config's, then those made through this API.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/schedules", tag = "jobs", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, description = "Schedules", body = [ScheduleOut])))]
pub async fn list_schedules(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
) -> Result<Json<Vec<ScheduleOut>>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    let fixed = state
        .config
        .app(&slug)
        .map(|a| a.schedules.clone())
        .unwrap_or_default();
    let mut out: Vec<ScheduleOut> = fixed
        .into_iter()
        .map(|s| ScheduleOut {
            name: s.name,
            cron: s.cron.to_string(),
            kind: s.kind,
            args: s.args,
            queue: s.queue.unwrap_or_else(|| app_jobs::QUEUE.to_string()),
            catch_up: s.catch_up.as_str().to_string(),
            source: "config",
        })
        .collect();
    out.extend(
        store::of_app(&state.db, app.id)
            .await?
            .into_iter()
            .map(ScheduleOut::from),
    );
    Ok(Json(out))
}

/// Schedules one of the app's kinds (admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/schedules", tag = "jobs", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    request_body = ScheduleIn,
    responses((status = 201, description = "Scheduled", body = ScheduleOut),
        (status = 409, description = "The app has a schedule of this name")))]
pub async fn create_schedule(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
    extract::Json(body): extract::Json<ScheduleIn>,
) -> Result<(StatusCode, Json<ScheduleOut>)> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let args = body.args.unwrap_or_else(|| json!({}));
    let declared: Vec<&str> = state
        .config
        .jobs
        .queues
        .keys()
        .map(String::as_str)
        .collect();
    let mut fields: Vec<FieldError> = schedule_problems(
        &body.name,
        &body.kind,
        &args,
        body.queue.as_deref(),
        &declared,
    )
    .into_iter()
    .map(|(f, m)| FieldError::new(f, m))
    .collect();
    let cron = match CronExpr::parse(&body.cron) {
        Ok(c) => Some(c),
        Err(m) => {
            fields.push(FieldError::new("cron", m));
            None
        }
    };
    let in_config = state
        .config
        .app(&slug)
        .is_some_and(|a| a.schedules.iter().any(|s| s.name == body.name));
    if !fields.is_empty() {
        return Err(Error::Validation(fields));
    }
    let conflict = || Error::Conflict(format!("app {slug:?} has a schedule named {:?}", body.name));
    if in_config {
        return Err(conflict());
    }
    let schedule = StoredSchedule {
        app: slug.clone(),
        name: body.name.clone(),
        cron: cron.map(|c| c.to_string()).unwrap_or_default(),
        kind: body.kind,
        args,
        queue: body.queue.unwrap_or_else(|| app_jobs::QUEUE.to_string()),
        catch_up: body.catch_up.unwrap_or_default().as_str().to_string(),
        created_at: crate::store::now_ms(),
    };
    if !store::create(&state.db, app.id, &schedule).await? {
        return Err(conflict());
    }
    let details = json!({ "cron": schedule.cron, "kind": schedule.kind });
    audit(
        &state,
        &op,
        "schedule.create",
        &format!("schedule:{}", schedule.name),
        Some(app.id),
        Some(details),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(schedule.into())))
}

/// Deletes a schedule made through this API (admin); the config's change with the file.
#[utoipa::path(delete, path = "/admin/v1/apps/{slug}/schedules/{name}", tag = "jobs", security(("operator_token" = [])),
    params(("slug" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    if !store::delete(&state.db, app.id, &name).await? {
        let in_config = state
            .config
            .app(&slug)
            .is_some_and(|a| a.schedules.iter().any(|s| s.name == name));
        return Err(if in_config {
            Error::Conflict(format!("schedule {name:?} is declared in the config file"))
        } else {
            Error::NotFound(format!("no schedule {name:?}"))
        });
    }
    audit(
        &state,
        &op,
        "schedule.delete",
        &format!("schedule:{name}"),
        Some(app.id),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Payment recovery for operators: an app's cases, a case with its timeline, actions on it,
//! the CSV export and the numbers over a window (docs/recovery.md), through the same code as
//! the app's own API.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::visible_app;
use crate::domain::identity::Role;
use crate::domain::recovery::CaseState;
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::api::recovery::{self as api, ActionIn, CaseDetail, ExportQuery, WindowQuery};
use crate::http::auth::OperatorAuth;
use crate::store::recovery::{self, CaseRow, Kpis};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cases))
        .routes(routes!(get_case))
        .routes(routes!(case_action))
        .routes(routes!(export_cases))
        .routes(routes!(get_kpis))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CasesQuery {
    /// `open`, `recovered`, `lost` or `canceled`.
    pub state: Option<String>,
    /// Cases with a smaller id (the next page).
    pub before: Option<i64>,
    /// Default 50, at most 500.
    pub limit: Option<i64>,
}

/// An app's recovery cases, newest first.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/recovery/cases", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), CasesQuery),
    responses((status = 200, description = "Cases", body = [CaseRow])))]
pub async fn list_cases(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
    Query(q): Query<CasesQuery>,
) -> Result<Json<Vec<CaseRow>>> {
    op.require(Role::Support)?;
    let app = visible_app(&state, &op, &slug).await?;
    if let Some(s) = &q.state
        && CaseState::parse(s).is_none()
    {
        return Err(Error::Validation(vec![FieldError::new(
            "state",
            "expected open, recovered, lost or canceled",
        )]));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = recovery::app_cases(&state.db, app.id, q.state.as_deref(), q.before, limit).await?;
    Ok(Json(rows))
}

/// One case with its timeline.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/recovery/cases/{id}", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "The case", body = CaseDetail)))]
pub async fn get_case(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): Path<(String, i64)>,
) -> Result<Json<CaseDetail>> {
    op.require(Role::Support)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(api::detail(&state, app.id, id).await?))
}

/// Acts on an open case (support; canceling the store subscription needs admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/recovery/cases/{id}/actions", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)), request_body = ActionIn,
    responses((status = 200, description = "The case after the action", body = CaseDetail),
        (status = 409, description = "The case is not open, or the store cannot do this")))]
pub async fn case_action(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): Path<(String, i64)>,
    body: crate::http::extract::Json<ActionIn>,
) -> Result<Json<CaseDetail>> {
    let action = body.0.action;
    op.require(if action.touches_subscription() {
        Role::Admin
    } else {
        Role::Support
    })?;
    let app = visible_app(&state, &op, &slug).await?;
    let actor = op.actor();
    let by = api::Actor {
        actor: &actor,
        role: Some(op.role.as_str()),
    };
    Ok(Json(
        api::act(&state, (app.id, &app.slug), id, action, &by).await?,
    ))
}

/// An app's cases as CSV.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/recovery/cases.csv", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ExportQuery),
    responses((status = 200, description = "The cases", content_type = "text/csv", body = String)))]
pub async fn export_cases(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    api::export(state, app.id, q)
}

/// Recovery's numbers over the cases whose first failure is in `[from, to)`.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/recovery/kpis", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), WindowQuery),
    responses((status = 200, description = "The numbers", body = Kpis)))]
pub async fn get_kpis(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Result<Json<Kpis>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(api::kpis(&state, app.id, &q).await?))
}

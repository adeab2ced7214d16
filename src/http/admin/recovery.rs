//! Payment recovery for operators: an app's cases and its numbers over a window
//! (docs/recovery.md).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::visible_app;
use crate::domain::identity::Role;
use crate::domain::recovery::CaseState;
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::auth::OperatorAuth;
use crate::store::recovery::{self, CaseRow, Kpis};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cases))
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// Cases whose first failure is at or after this (ms since the epoch).
    pub from: i64,
    /// … and before this.
    pub to: i64,
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
    if q.to <= q.from {
        return Err(Error::Validation(vec![FieldError::new(
            "to",
            "must be after from",
        )]));
    }
    Ok(Json(recovery::kpis(&state.db, app.id, q.from, q.to).await?))
}

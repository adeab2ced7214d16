//! The admin API under `/admin/v1`, for operators (operator tokens). Each handler names the
//! role it needs (`auth.require(Role::…)`); every mutating call writes an audit row.

pub mod apps;
pub mod credits;
pub mod endpoints;
pub mod jobs;
pub mod recovery;
pub mod schedules;

use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use crate::error::{Error, Result};
use crate::http::auth::OperatorAuth;
use crate::http::request_id;
use crate::store::identity::{self, AppRow, NewAudit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(apps::router())
        .merge(credits::router())
        .merge(endpoints::router())
        .merge(jobs::router())
        .merge(recovery::router())
        .merge(schedules::router())
}

/// Records a mutating admin call.
pub async fn audit(
    state: &AppState,
    op: &OperatorAuth,
    action: &str,
    target: &str,
    app_id: Option<i64>,
    details: Option<serde_json::Value>,
) -> Result<()> {
    let details = details.map(|d| d.to_string());
    let request_id = request_id::current();
    identity::record_audit(
        &state.db,
        &NewAudit {
            actor: &op.actor(),
            actor_role: Some(op.role.as_str()),
            action,
            target: Some(target),
            app_id,
            request_id: request_id.as_deref(),
            details: details.as_deref(),
        },
    )
    .await?;
    Ok(())
}

/// The app `slug`, if this operator may see it (404 otherwise, so existence does not leak).
pub async fn visible_app(state: &AppState, op: &OperatorAuth, slug: &str) -> Result<AppRow> {
    if !op.can_see(slug) {
        return Err(Error::NotFound(format!("no app {slug:?}")));
    }
    identity::app_by_slug(&state.db, slug)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no app {slug:?}")))
}

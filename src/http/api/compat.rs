//! `GET /v1/compat`: may this client version still be used, and is there a newer one?

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::compat::{CompatStatus, Version};
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::auth::bearer_token;
use crate::store::identity;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompatQuery {
    /// `desktop`, `ios`, `cli`, … as configured for the app.
    pub platform: String,
    /// The client's version, e.g. `1.2.3`.
    pub version: String,
    /// The app's slug; not needed when an API key is sent.
    pub app: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompatOut {
    pub status: CompatStatus,
    pub platform: String,
    pub version: String,
    pub min_version: Option<String>,
    pub latest_version: Option<String>,
    pub update_url: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_compat))
}

/// Where a client version stands: `ok`, `update_available` or `update_required`.
#[utoipa::path(get, path = "/v1/compat", tag = "identity",
    params(CompatQuery),
    responses(
        (status = 200, description = "The client's status", body = CompatOut),
        (status = 404, description = "Unknown app", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unparsable version", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_compat(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CompatQuery>,
) -> Result<Json<CompatOut>> {
    let version = Version::parse(&q.version)
        .map_err(|m| Error::Validation(vec![FieldError::new("version", m)]))?;
    let settings = match (bearer_token(&headers), &q.app) {
        (Some(key), _) => state
            .keys
            .verify(&state.db, key)
            .await?
            .app_settings
            .clone(),
        (None, Some(slug)) => identity::app_by_slug(&state.db, slug)
            .await?
            .map(|a| a.settings)
            .ok_or_else(|| Error::NotFound(format!("no app {slug:?}")))?,
        (None, None) => {
            return Err(Error::Validation(vec![FieldError::new(
                "app",
                "name the app (?app=slug) or send an API key",
            )]));
        }
    };
    let rule = settings.compat.get(&q.platform);
    Ok(Json(CompatOut {
        status: rule.map_or(CompatStatus::Ok, |r| r.status(&version)),
        platform: q.platform.clone(),
        version: version.as_str().to_string(),
        min_version: rule.and_then(|r| r.min_version.clone()),
        latest_version: rule.and_then(|r| r.latest_version.clone()),
        update_url: rule.and_then(|r| r.update_url.clone()),
    }))
}

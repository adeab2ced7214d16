//! `GET /v1/me`: who the key belongs to. Later issues add plan, balances and quotas.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::UserAuth;
use crate::store::identity;

#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    pub user: MeUser,
    pub app: MeApp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeUser {
    pub id: i64,
    /// The app's own id for this user.
    pub external_id: String,
    pub created_at: i64,
    /// Whether the user redeemed an invite code.
    pub invited: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeApp {
    pub slug: String,
    pub name: String,
    /// New users must redeem an invite code before paid or metered routes.
    pub invite_required: bool,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me))
}

/// The caller: user and app.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user and app of the key", body = MeOut),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a user key", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_me(State(state): State<AppState>, auth: UserAuth) -> Result<Json<MeOut>> {
    let (user, app_name) = identity::user_and_app_name(&state.db, auth.app_id, auth.user_id)
        .await?
        .ok_or_else(|| Error::Unauthorized("this key's user was deleted".into()))?;
    Ok(Json(MeOut {
        user: MeUser {
            id: user.id,
            external_id: auth.external_id,
            created_at: user.created_at,
            invited: user.invited_at.is_some(),
        },
        app: MeApp {
            slug: auth.app_slug,
            name: app_name,
            invite_required: auth.invites_required,
        },
    }))
}

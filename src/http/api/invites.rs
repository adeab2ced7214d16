//! `POST /v1/invites/redeem`: a user of an invite-only app redeems a code.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::auth::UserAuth;
use crate::http::extract;
use crate::store::invites::{self, Redeemed};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemIn {
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedeemOut {
    /// Always true on success.
    pub invited: bool,
    /// False when the user had already redeemed a code (nothing was used this time).
    pub redeemed_now: bool,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(redeem_invite))
}

/// Redeems an invite code for the calling user. Repeating it is harmless.
#[utoipa::path(post, path = "/v1/invites/redeem", tag = "identity", security(("api_key" = [])),
    request_body = RedeemIn,
    responses(
        (status = 200, description = "The user is invited", body = RedeemOut),
        (status = 422, description = "Unknown, expired or used-up code", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeem_invite(
    State(state): State<AppState>,
    auth: UserAuth,
    extract::Json(body): extract::Json<RedeemIn>,
) -> Result<Json<RedeemOut>> {
    let code = body.code.trim();
    match invites::redeem(&state.db, auth.app_id, auth.user_id, code).await? {
        Redeemed::Now => Ok(Json(RedeemOut {
            invited: true,
            redeemed_now: true,
        })),
        Redeemed::Already => Ok(Json(RedeemOut {
            invited: true,
            redeemed_now: false,
        })),
        Redeemed::Refused(why) => Err(Error::Validation(vec![FieldError::new("code", why)])),
    }
}

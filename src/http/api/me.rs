//! `GET /v1/me`: who the caller is, their plan and entitlements, balances and quota usage —
//! the "get balances" call.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::money::{BalancesOut, PlanOut, QuotaOut, quotas_in};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::UserAuth;
use crate::store::ledger;
use crate::store::now_ms;

#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    pub user: MeUser,
    pub app: MeApp,
    pub plan: PlanOut,
    /// The plan's entitlements (also in `plan`), for quick checks.
    pub entitlements: Vec<String>,
    pub credits: BalancesOut,
    pub quotas: Vec<QuotaOut>,
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

/// The caller: user, app, plan and entitlements, credit balances (total and per bucket, with
/// expiry) and quota usage in the current periods.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user, app, plan, balances and quota usage", body = MeOut),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a user key", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_me(State(state): State<AppState>, auth: UserAuth) -> Result<Json<MeOut>> {
    let t = auth.target();
    let deleted = || Error::Unauthorized("this key's user was deleted".into());
    let now = now_ms();
    // One read; the writes of a refresh (this period's credits, expired buckets) only when due.
    let mut snap = ledger::snapshot(&state.db, t, &auth.billing)
        .await?
        .ok_or_else(deleted)?;
    if snap.needs_refresh(now) {
        ledger::refresh(&state.db, t, &auth.billing).await?;
        snap = ledger::snapshot(&state.db, t, &auth.billing)
            .await?
            .ok_or_else(deleted)?;
    }
    let quotas = quotas_in(&snap, now);
    Ok(Json(MeOut {
        user: MeUser {
            id: snap.user_id,
            external_id: auth.external_id,
            created_at: snap.created_at,
            invited: snap.invited_at.is_some(),
        },
        app: MeApp {
            slug: auth.app_slug,
            name: snap.app_name,
            invite_required: auth.invites_required,
        },
        entitlements: snap.plan.entitlements.clone(),
        plan: PlanOut::new(&snap.plan, &snap.user_plan),
        credits: snap.balances.into(),
        quotas,
    }))
}

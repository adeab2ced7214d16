//! Credits, entitlements and quotas on the public API.
//!
//! Users (user keys or access tokens): their ledger and the entitlement check. The app's own
//! server (app secret keys): holds (reserve → settle | release), direct debits and quota
//! counting for its users — the same calls the AI gateway makes around each request.

use crate::store::ledger::EntryKind;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::money::{
    EntriesPage, EntryOut, HoldOut, PageQuery, PlanOut, QuotaOut, consume_quota, entries_page,
    invalid, non_negative, note, positive,
};
use crate::domain::plans::BillingSettings;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::{AppAuth, UserAuth};
use crate::http::idempotency::EffectKey;
use crate::http::{extract, request_id};
use crate::store::identity;
use crate::store::ledger::{self, Note, Target};
use crate::store::now_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_ledger))
        .routes(routes!(check_entitlement))
        .routes(routes!(reserve_hold))
        .routes(routes!(settle_hold))
        .routes(routes!(release_hold))
        .routes(routes!(record_hold_usage))
        .routes(routes!(debit_user))
        .routes(routes!(consume_user_quota))
}

/// The caller's ledger entries, newest first.
#[utoipa::path(get, path = "/v1/me/ledger", tag = "credits", security(("api_key" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of entries", body = EntriesPage)))]
pub async fn my_ledger(
    State(state): State<AppState>,
    auth: UserAuth,
    Query(q): Query<PageQuery>,
) -> Result<Json<EntriesPage>> {
    let t = auth.target();
    ledger::refresh(&state.db, t, &auth.billing).await?;
    Ok(Json(entries_page(&state.db, t, &q).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntitlementOut {
    pub entitlement: String,
    /// Always true (a missing entitlement is a 403).
    pub granted: bool,
    pub plan: PlanOut,
}

/// Whether the caller's plan includes an entitlement: 200 with the plan, or 403. The one check
/// app servers and gated routes use.
#[utoipa::path(get, path = "/v1/entitlements/{name}", tag = "credits", security(("api_key" = [])),
    params(("name" = String, Path, description = "e.g. premium")),
    responses(
        (status = 200, description = "The plan includes it", body = EntitlementOut),
        (status = 403, description = "The plan does not include it", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn check_entitlement(
    State(state): State<AppState>,
    auth: UserAuth,
    Path(name): Path<String>,
) -> Result<Json<EntitlementOut>> {
    let t = auth.target();
    let user = ledger::user_plan(&state.db, t).await?;
    let plan = auth.billing.plan(user.plan_id.as_deref());
    if !plan.has_entitlement(&name) {
        return Err(Error::Forbidden(format!(
            "the {:?} plan does not include {name:?}",
            plan.id
        )));
    }
    Ok(Json(EntitlementOut {
        entitlement: name,
        granted: true,
        plan: PlanOut::new(&plan, &user),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldIn {
    /// The most the work may cost.
    #[schema(minimum = 1, maximum = 1000000000000000.0)]
    pub amount_micros: i64,
    /// Seconds until the expiry job resolves the hold if it is neither settled nor released
    /// (default `ledger.hold_timeout_secs`).
    #[schema(minimum = 1, maximum = 86400)]
    pub expires_in_secs: Option<i64>,
    /// Your reference (request id, job id, …).
    #[schema(max_length = 500)]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleIn {
    /// What the work cost: at most the hold; the rest is released.
    #[schema(minimum = 0, maximum = 1000000000000000.0)]
    pub amount_micros: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebitIn {
    #[schema(minimum = 1, maximum = 1000000000000000.0)]
    pub amount_micros: i64,
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    #[schema(max_length = 500)]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaIn {
    /// How much to count (default 1).
    #[schema(minimum = 1, maximum = 1000000000)]
    pub quantity: Option<i64>,
}

/// The user `external_id` of the calling app, refreshed (period credits, expiries): their
/// ledger target and plan.
async fn app_user(
    state: &AppState,
    app: &AppAuth,
    external_id: &str,
) -> Result<(Target, ledger::UserPlan, crate::domain::plans::Plan)> {
    let user = identity::user_by_external_id(&state.db, app.app_id, external_id)
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or_else(|| Error::NotFound(format!("no user {external_id:?} in this app")))?;
    let t = Target {
        app_id: app.app_id,
        user_id: user.id,
    };
    let (user_plan, plan) = refresh(state, t, &app.billing).await?;
    Ok((t, user_plan, plan))
}

async fn refresh(
    state: &AppState,
    t: Target,
    billing: &BillingSettings,
) -> Result<(ledger::UserPlan, crate::domain::plans::Plan)> {
    Ok(ledger::refresh(&state.db, t, billing).await?)
}

/// Reserves credits for a user (402 when their available credits, plus any overdraft their plan
/// allows, do not cover it).
#[utoipa::path(post, path = "/v1/users/{external_id}/holds", tag = "credits", security(("api_key" = [])),
    params(("external_id" = String, Path)),
    request_body = HoldIn,
    responses(
        (status = 201, description = "Reserved", body = HoldOut),
        (status = 402, description = "Insufficient credits", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn reserve_hold(
    State(state): State<AppState>,
    app: AppAuth,
    Path(external_id): Path<String>,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<HoldIn>,
) -> Result<(StatusCode, Json<HoldOut>)> {
    let amount = positive("amount_micros", body.amount_micros)?;
    note("reference", body.reference.as_deref())?;
    let secs = body
        .expires_in_secs
        .unwrap_or(state.config.ledger.hold_timeout_secs as i64);
    if !(1..=86_400).contains(&secs) {
        return Err(invalid("expires_in_secs", "expected 1 to 86400"));
    }
    let (t, _, plan) = app_user(&state, &app, &external_id).await?;
    let hold = ledger::CallHold {
        t,
        amount,
        overdraft: plan.overdraft.0,
        expires_at: now_ms() + secs * 1000,
        reason: None,
        reference: body.reference.or_else(request_id::current),
        key: EffectKey::of(&effect).map(str::to_string),
        plan: None,
        call: None,
    };
    // Through the ledger's group commit, as the gateway's holds.
    let id = state.ledger.reserve(hold).await?.into_inner();
    let hold = ledger::hold(&state.db, t.app_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no hold {id}")))?;
    Ok((StatusCode::CREATED, Json(hold.into())))
}

/// Settles a hold at what the work cost; the rest is released. Repeating it with the same
/// amount answers the settled hold.
#[utoipa::path(post, path = "/v1/holds/{id}/settle", tag = "credits", security(("api_key" = [])),
    params(("id" = i64, Path)),
    request_body = SettleIn,
    responses(
        (status = 200, description = "Settled", body = HoldOut),
        (status = 409, description = "Already released or expired, or settled at another amount", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn settle_hold(
    State(state): State<AppState>,
    app: AppAuth,
    Path(id): Path<i64>,
    extract::Json(body): extract::Json<SettleIn>,
) -> Result<Json<HoldOut>> {
    let amount = non_negative("amount_micros", body.amount_micros)?;
    let settled = ledger::HoldState::Settled;
    let hold = state
        .ledger
        .close_hold(app.app_id, id, amount, settled)
        .await?;
    Ok(Json(hold.into_inner().into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageIn {
    /// What the work has cost so far (at most the hold). If the hold is never settled, the
    /// expiry job charges this instead of releasing it for free.
    #[schema(minimum = 0, maximum = 1000000000000000.0)]
    pub used_micros: i64,
}

/// Records a running hold's usage so far (long work reports progress; a crash then costs the
/// user what was used, not nothing and not the whole hold).
#[utoipa::path(post, path = "/v1/holds/{id}/usage", tag = "credits", security(("api_key" = [])),
    params(("id" = i64, Path)),
    request_body = UsageIn,
    responses(
        (status = 204, description = "Recorded"),
        (status = 409, description = "The hold is not open, or the usage exceeds it", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn record_hold_usage(
    State(state): State<AppState>,
    app: AppAuth,
    Path(id): Path<i64>,
    extract::Json(body): extract::Json<UsageIn>,
) -> Result<StatusCode> {
    non_negative("used_micros", body.used_micros)?;
    if !ledger::record_usage(&state.db, app.app_id, id, body.used_micros).await? {
        return Err(Error::Conflict(format!(
            "hold {id} is not open in this app, or {} exceeds it",
            body.used_micros
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Releases a hold without charging.
#[utoipa::path(post, path = "/v1/holds/{id}/release", tag = "credits", security(("api_key" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Released", body = HoldOut),
        (status = 409, description = "Already settled or expired", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn release_hold(
    State(state): State<AppState>,
    app: AppAuth,
    Path(id): Path<i64>,
) -> Result<Json<HoldOut>> {
    let released = ledger::HoldState::Released;
    let hold = state.ledger.close_hold(app.app_id, id, 0, released).await?;
    Ok(Json(hold.into_inner().into()))
}

/// Charges a user a known amount at once.
#[utoipa::path(post, path = "/v1/users/{external_id}/debits", tag = "credits", security(("api_key" = [])),
    params(("external_id" = String, Path)),
    request_body = DebitIn,
    responses(
        (status = 201, description = "Charged", body = EntryOut),
        (status = 402, description = "Insufficient credits", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn debit_user(
    State(state): State<AppState>,
    app: AppAuth,
    Path(external_id): Path<String>,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<DebitIn>,
) -> Result<(StatusCode, Json<EntryOut>)> {
    let amount = positive("amount_micros", body.amount_micros)?;
    note("reason", body.reason.as_deref())?;
    note("reference", body.reference.as_deref())?;
    let (t, _, plan) = app_user(&state, &app, &external_id).await?;
    let reference = body.reference.or_else(request_id::current);
    let note = Note {
        reason: body.reason.as_deref(),
        reference: reference.as_deref(),
        key: EffectKey::of(&effect),
    };
    let entry = ledger::charge(
        &state.db,
        t,
        EntryKind::Debit,
        amount,
        plan.overdraft.0,
        note,
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(entry.into_inner().into())))
}

/// Counts usage of a metric against the user's plan quota for the current period (429 when it
/// is used up; nothing is counted then). A metric without a quota in the plan is unlimited.
#[utoipa::path(post, path = "/v1/users/{external_id}/quotas/{metric}", tag = "credits", security(("api_key" = [])),
    params(("external_id" = String, Path), ("metric" = String, Path)),
    request_body = QuotaIn,
    responses(
        (status = 200, description = "Counted", body = QuotaOut),
        (status = 204, description = "The plan has no quota for this metric"),
        (status = 429, description = "Quota used up", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn consume_user_quota(
    State(state): State<AppState>,
    app: AppAuth,
    Path((external_id, metric)): Path<(String, String)>,
    extract::Json(body): extract::Json<QuotaIn>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let quantity = body.quantity.unwrap_or(1);
    if !(1..=1_000_000_000).contains(&quantity) {
        return Err(invalid("quantity", "expected 1 to 1000000000"));
    }
    let (t, user, plan) = app_user(&state, &app, &external_id).await?;
    match consume_quota(&state.db, t, &user, &plan, &metric, quantity, now_ms()).await? {
        Some(q) => Ok(Json(q).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

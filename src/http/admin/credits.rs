//! A user's credits for operators: balances, ledger, grants, adjustments, refunds and the
//! user's plan. Every change is audited in the same transaction as the ledger entry.

use crate::store::ledger::EntryKind;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::visible_app;
use crate::domain::identity::Role;
use crate::domain::plans::Period;
use crate::error::{Error, Result};
use crate::http::api::money::{
    BalancesOut, EntriesPage, EntryOut, PageQuery, PlanOut, QuotaOut, entries_page, invalid, note,
    positive, quotas_of,
};
use crate::http::auth::OperatorAuth;
use crate::http::idempotency::EffectKey;
use crate::http::{AppState, extract, request_id};
use crate::store::identity::{self, AppRow, NewAudit};
use crate::store::ledger::{self, Credit, GRANT_SOURCES, Note, Target, UserPlan};
use crate::store::now_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_credits))
        .routes(routes!(get_ledger))
        .routes(routes!(create_grant))
        .routes(routes!(create_adjustment))
        .routes(routes!(create_refund))
        .routes(routes!(set_plan))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsOut {
    pub plan: PlanOut,
    pub credits: BalancesOut,
    pub quotas: Vec<QuotaOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantIn {
    #[schema(minimum = 1, maximum = 1000000000000000.0)]
    pub amount_micros: i64,
    /// `monthly_free`, `subscription`, `top_up`, `promo`, `incentive` or `manual` (default).
    pub source: Option<String>,
    /// ms since the epoch; never when omitted.
    pub expires_at: Option<i64>,
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentIn {
    /// Positive adds credits, negative removes them (never below what is available); not 0.
    #[schema(minimum = -1000000000000000.0, maximum = 1000000000000000.0)]
    pub amount_micros: i64,
    /// Required: why the balance is corrected.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundIn {
    #[schema(minimum = 1, maximum = 1000000000000000.0)]
    pub amount_micros: i64,
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    /// What is refunded (a request id, a charge's entry id, …).
    #[schema(max_length = 500)]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanIn {
    /// One of the app's plans; none: the app's default plan.
    pub plan_id: Option<String>,
    /// The billing period (ms since the epoch), for quotas and credits per billing period.
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

type UserPath = Path<(String, String)>;

/// The app (if this operator may see it) and the live user in it.
async fn target(
    state: &AppState,
    op: &OperatorAuth,
    slug: &str,
    external_id: &str,
) -> Result<(AppRow, Target)> {
    let app = visible_app(state, op, slug).await?;
    let user = identity::user_by_external_id(&state.db, app.id, external_id)
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or_else(|| Error::NotFound(format!("no user {external_id:?} in app {slug:?}")))?;
    let t = Target {
        app_id: app.id,
        user_id: user.id,
    };
    Ok((app, t))
}

/// A user's plan, balances and quota usage (support).
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/users/{external_id}/credits", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    responses((status = 200, description = "Plan, balances, quotas", body = CreditsOut)))]
pub async fn get_credits(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external_id)): UserPath,
) -> Result<Json<CreditsOut>> {
    op.require(Role::Support)?;
    let (app, t) = target(&state, &op, &slug, &external_id).await?;
    let (user, plan) = ledger::refresh(&state.db, t, &app.settings.billing).await?;
    Ok(Json(CreditsOut {
        plan: PlanOut::new(&plan, &user),
        credits: ledger::balances(&state.db, t).await?.into(),
        quotas: quotas_of(&state.db, t, &user, &plan, now_ms()).await?,
    }))
}

/// A user's ledger entries, newest first (support).
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/users/{external_id}/ledger", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path), PageQuery),
    responses((status = 200, description = "A page of entries", body = EntriesPage)))]
pub async fn get_ledger(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external_id)): UserPath,
    Query(q): Query<PageQuery>,
) -> Result<Json<EntriesPage>> {
    op.require(Role::Support)?;
    let (_, t) = target(&state, &op, &slug, &external_id).await?;
    Ok(Json(entries_page(&state.db, t, &q).await?))
}

/// The audit row of a ledger change, written in the entry's transaction.
fn audit_row<'a>(
    op_actor: &'a str,
    op: &OperatorAuth,
    action: &'a str,
    target: &'a str,
    app_id: i64,
    request_id: Option<&'a str>,
    details: &'a str,
) -> NewAudit<'a> {
    NewAudit {
        actor: op_actor,
        actor_role: Some(op.role.as_str()),
        action,
        target: Some(target),
        app_id: Some(app_id),
        request_id,
        details: Some(details),
    }
}

/// Grants credits to a user (admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/users/{external_id}/grants", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    request_body = GrantIn,
    responses((status = 201, description = "Granted", body = EntryOut)))]
pub async fn create_grant(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external_id)): UserPath,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<GrantIn>,
) -> Result<(StatusCode, Json<EntryOut>)> {
    op.require(Role::Admin)?;
    let amount = positive("amount_micros", body.amount_micros)?;
    note("reason", body.reason.as_deref())?;
    let source = body.source.as_deref().unwrap_or("manual");
    if !GRANT_SOURCES.contains(&source) {
        return Err(invalid(
            "source",
            &format!("expected one of {}", GRANT_SOURCES.join(", ")),
        ));
    }
    let expires_at = extract::future_expiry("expires_at", body.expires_at)?;
    let (_, t) = target(&state, &op, &slug, &external_id).await?;
    let credit = Credit {
        kind: EntryKind::Grant,
        amount,
        source,
        expires_at,
        note: Note {
            reason: body.reason.as_deref(),
            reference: Some(&op.actor()),
            key: EffectKey::of(&effect),
        },
    };
    let entry = write_credit(&state, &op, "credits.grant", &external_id, t, &credit).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// Refunds credits to a user (admin): a new bucket that never expires.
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/users/{external_id}/refunds", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    request_body = RefundIn,
    responses((status = 201, description = "Refunded", body = EntryOut)))]
pub async fn create_refund(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external_id)): UserPath,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<RefundIn>,
) -> Result<(StatusCode, Json<EntryOut>)> {
    op.require(Role::Admin)?;
    let amount = positive("amount_micros", body.amount_micros)?;
    note("reason", body.reason.as_deref())?;
    note("reference", body.reference.as_deref())?;
    let (_, t) = target(&state, &op, &slug, &external_id).await?;
    let reference = body.reference.unwrap_or_else(|| op.actor());
    let credit = Credit {
        kind: EntryKind::Refund,
        amount,
        source: "refund",
        expires_at: None,
        note: Note {
            reason: body.reason.as_deref(),
            reference: Some(&reference),
            key: EffectKey::of(&effect),
        },
    };
    let entry = write_credit(&state, &op, "credits.refund", &external_id, t, &credit).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

async fn write_credit(
    state: &AppState,
    op: &OperatorAuth,
    action: &str,
    external_id: &str,
    t: Target,
    credit: &Credit<'_>,
) -> Result<EntryOut> {
    let (actor, rid) = (op.actor(), request_id::current());
    let details = json!({ "amount_micros": credit.amount, "source": credit.source, "expires_at": credit.expires_at, "reason": credit.note.reason }).to_string();
    let row = audit_row(
        &actor,
        op,
        action,
        external_id,
        t.app_id,
        rid.as_deref(),
        &details,
    );
    Ok(ledger::credit(&state.db, t, credit, Some(&row))
        .await?
        .into_inner()
        .into())
}

/// Corrects a user's balance up or down (admin); the reason is required.
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/users/{external_id}/adjustments", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    request_body = AdjustmentIn,
    responses(
        (status = 201, description = "Adjusted", body = EntryOut),
        (status = 402, description = "A negative adjustment larger than the available credits", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_adjustment(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external_id)): UserPath,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<AdjustmentIn>,
) -> Result<(StatusCode, Json<EntryOut>)> {
    op.require(Role::Admin)?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(invalid("reason", "must not be empty"));
    }
    note("reason", Some(reason))?;
    if body.amount_micros == 0 || body.amount_micros == i64::MIN {
        return Err(invalid(
            "amount_micros",
            "must be a non-zero integer of micro-credits",
        ));
    }
    positive("amount_micros", body.amount_micros.abs())?;
    let (_, t) = target(&state, &op, &slug, &external_id).await?;
    if body.amount_micros > 0 {
        let credit = Credit {
            kind: EntryKind::Adjustment,
            amount: body.amount_micros,
            source: "adjustment",
            expires_at: None,
            note: Note {
                reason: Some(reason),
                reference: Some(&op.actor()),
                key: EffectKey::of(&effect),
            },
        };
        let entry = write_credit(&state, &op, "credits.adjust", &external_id, t, &credit).await?;
        return Ok((StatusCode::CREATED, Json(entry)));
    }
    let (actor, rid) = (op.actor(), request_id::current());
    let details = json!({ "amount_micros": body.amount_micros, "reason": reason }).to_string();
    let row = audit_row(
        &actor,
        &op,
        "credits.adjust",
        &external_id,
        t.app_id,
        rid.as_deref(),
        &details,
    );
    let note = Note {
        reason: Some(reason),
        reference: Some(&actor),
        key: EffectKey::of(&effect),
    };
    let entry = ledger::charge(
        &state.db,
        t,
        EntryKind::Adjustment,
        -body.amount_micros,
        0,
        note,
        Some(&row),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(entry.into_inner().into())))
}

/// Puts a user on one of the app's plans (admin); takes effect on their next request.
#[utoipa::path(put, path = "/admin/v1/apps/{slug}/users/{external_id}/plan", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    request_body = PlanIn,
    responses((status = 200, description = "The user's plan now", body = PlanOut)))]
pub async fn set_plan(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external_id)): UserPath,
    extract::Json(body): extract::Json<PlanIn>,
) -> Result<Json<PlanOut>> {
    op.require(Role::Admin)?;
    let (app, t) = target(&state, &op, &slug, &external_id).await?;
    let billing = &app.settings.billing;
    if let Some(id) = &body.plan_id
        && !billing.plans.iter().any(|p| &p.id == id)
    {
        let ids: Vec<&str> = billing.plans.iter().map(|p| p.id.as_str()).collect();
        return Err(invalid(
            "plan_id",
            &format!("not a plan of this app (plans: {})", ids.join(", ")),
        ));
    }
    let period = match (body.period_start, body.period_end) {
        (Some(start), Some(end)) if start < end => Some(Period { start, end }),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "period_end",
                "period_start and period_end go together, start before end",
            ));
        }
    };
    let user = UserPlan {
        plan_id: body.plan_id.clone(),
        billing: period,
        until: None,
    };
    let (actor, rid) = (op.actor(), request_id::current());
    let details = json!({ "plan_id": body.plan_id, "period_start": body.period_start, "period_end": body.period_end }).to_string();
    let row = audit_row(
        &actor,
        &op,
        "users.set_plan",
        &external_id,
        app.id,
        rid.as_deref(),
        &details,
    );
    if !ledger::set_plan(&state.db, t, &user, Some(&row)).await? {
        return Err(Error::NotFound(format!(
            "no user {external_id:?} in app {slug:?}"
        )));
    }
    Ok(Json(PlanOut::new(
        &billing.plan(user.plan_id.as_deref()),
        &user,
    )))
}

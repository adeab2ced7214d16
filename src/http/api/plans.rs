//! `GET /v1/plans`: what a paywall shows — the app's plans, the store products that give each
//! one, the credit packs on sale, and which plan the caller is on.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::billing::ProductConfig;
use crate::domain::plans::Plan;
use crate::error::Result;
use crate::http::AppState;
use crate::http::auth::UserAuth;
use crate::store::ledger;

#[derive(Debug, Serialize, ToSchema)]
pub struct PlansOut {
    /// The plan the caller is on now.
    pub current: String,
    /// The plan of users without a subscription.
    pub default_plan: String,
    pub data: Vec<PlanListed>,
    /// One-time purchases that grant credits (top-up packs).
    pub packs: Vec<PackListed>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanListed {
    pub id: String,
    pub name: String,
    pub entitlements: Vec<String>,
    /// Model names or `*` patterns the plan may call.
    pub models: Vec<String>,
    /// Credits granted each period.
    pub credits_micros: i64,
    pub credits: String,
    pub quotas: Vec<PlanQuota>,
    /// The store products whose subscription gives this plan.
    pub products: Vec<StoreProduct>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanQuota {
    pub metric: String,
    pub limit: i64,
    /// `day`, `month` or `billing_period`.
    pub period: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreProduct {
    /// `stripe`, `revenuecat`, `paddle` or `whop`.
    pub provider: String,
    /// The store's id: what `POST /v1/billing/checkout` takes as `product` for Stripe.
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PackListed {
    pub provider: String,
    pub id: String,
    pub credits_micros: i64,
    pub credits: String,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_plans))
}

/// The app's plans, the products that give them and its credit packs, with the caller's plan.
#[utoipa::path(get, path = "/v1/plans", tag = "credits", security(("api_key" = [])),
    responses(
        (status = 200, description = "The app's plans and packs", body = PlansOut),
        (status = 403, description = "Not a user key", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_plans(State(state): State<AppState>, auth: UserAuth) -> Result<Json<PlansOut>> {
    let user = ledger::user_plan(&state.db, auth.target()).await?;
    let current = auth.billing.plan(user.plan_id.as_deref()).id;
    // Apps created at run time have no products in the config file yet.
    let products: &[ProductConfig] = state
        .config
        .app(&auth.app_slug)
        .map_or(&[], |a| a.products.as_slice());
    let data = auth
        .billing
        .plans
        .iter()
        .map(|plan| listed(plan, products))
        .collect();
    let packs = products
        .iter()
        .filter_map(|p| {
            p.credits.map(|credits| PackListed {
                provider: p.provider.as_str().into(),
                id: p.id.clone(),
                credits_micros: credits.0,
                credits: credits.to_string(),
            })
        })
        .collect();
    Ok(Json(PlansOut {
        current,
        default_plan: auth.billing.default_plan.clone(),
        data,
        packs,
    }))
}

fn listed(plan: &Plan, products: &[ProductConfig]) -> PlanListed {
    PlanListed {
        id: plan.id.clone(),
        name: plan.name.clone(),
        entitlements: plan.entitlements.clone(),
        models: plan.models.clone(),
        credits_micros: plan.credits.0,
        credits: plan.credits.to_string(),
        quotas: plan
            .quotas
            .iter()
            .map(|(metric, q)| PlanQuota {
                metric: metric.clone(),
                limit: q.limit,
                period: q.period.as_str().into(),
            })
            .collect(),
        products: products
            .iter()
            .filter(|p| p.plan.as_deref() == Some(plan.id.as_str()))
            .map(|p| StoreProduct {
                provider: p.provider.as_str().into(),
                id: p.id.clone(),
            })
            .collect(),
    }
}

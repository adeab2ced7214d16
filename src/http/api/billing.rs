//! The user's side of billing: Stripe Checkout (a subscription or a top-up pack), the Stripe
//! Customer Portal, and the user's subscriptions at every store.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::billing::Provider;
use crate::billing::store_http::StoreError;
use crate::billing::stripe_api::StripeApi;
use crate::config::AppConfig;
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::auth::UserAuth;
use crate::http::extract;
use crate::store::billing::{self as store, SubscriptionRow};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutIn {
    /// The Stripe price to buy, one of the app's `[[apps.products]]`: a plan's price starts a
    /// subscription, a top-up pack's price a one-time payment.
    pub product: String,
    /// Where Stripe sends the user after paying.
    pub success_url: String,
    /// Where Stripe sends the user who goes back.
    pub cancel_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutOut {
    /// The Checkout Session's id.
    pub id: String,
    /// Send the user here.
    pub url: String,
    /// `subscription` or `payment`.
    pub mode: String,
    /// True when the user's open session for the same price was returned instead of a new one.
    pub reused: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalIn {
    /// Where the portal's "return" link leads.
    pub return_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalOut {
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionsOut {
    pub data: Vec<SubscriptionRow>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_checkout))
        .routes(routes!(create_portal))
        .routes(routes!(list_subscriptions))
        .routes(routes!(sync_revenuecat))
}

/// The app's Stripe API, or why the app cannot use it.
fn stripe<'a>(state: &'a AppState, auth: &UserAuth) -> Result<(&'a AppConfig, StripeApi<'a>)> {
    let app = state.config.app(&auth.app_slug).ok_or_else(no_stripe)?;
    Ok((app, stripe_api(state, app)?))
}

/// `app`'s Stripe API with its secret key, or 404 naming the missing setting.
pub(crate) fn stripe_api<'a>(state: &'a AppState, app: &'a AppConfig) -> Result<StripeApi<'a>> {
    let s = app.stripe.as_ref().ok_or_else(no_stripe)?;
    let key = s.secret_key.as_ref().ok_or_else(no_stripe)?;
    Ok(StripeApi {
        http: &state.stores,
        base: &s.api_base,
        key,
    })
}

pub(crate) fn no_stripe() -> Error {
    Error::NotFound("this app does not sell through Stripe (no [apps.stripe] secret_key)".into())
}

/// A store API that failed or refused: 502, naming the store's own message (the request was
/// checked before the call, so a refusal is a configuration mismatch, not the caller's fault).
pub(crate) fn store_failed(e: StoreError) -> Error {
    tracing::warn!(error = %e, "billing store call failed");
    Error::Upstream {
        status: StatusCode::BAD_GATEWAY,
        detail: e.to_string(),
    }
}

fn check_url(field: &str, url: &str, prod: bool, errors: &mut Vec<FieldError>) {
    let ok = url::Url::parse(url)
        .is_ok_and(|u| u.scheme() == "https" || (!prod && u.scheme() == "http"));
    if !ok {
        errors.push(FieldError::new(
            field,
            "expected an https URL (http is accepted outside production)",
        ));
    }
}

/// The user's Stripe customer, created once (the idempotency key is the user's) and
/// remembered.
async fn customer(state: &AppState, api: &StripeApi<'_>, auth: &UserAuth) -> Result<String> {
    let t = auth.target();
    if let Some(id) = store::user_customer(&state.db, t, Provider::Stripe).await? {
        return Ok(id);
    }
    let key = format!("tollgate-customer-{}-{}", auth.app_id, auth.user_id);
    let created = api
        .post(
            "/v1/customers",
            &[("metadata[tollgate_user]", &auth.external_id)],
            &key,
        )
        .await
        .map_err(store_failed)?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| invalid_answer("a customer without an id"))?
        .to_string();
    store::remember_customer(&state.db, t, Provider::Stripe, &id).await?;
    // A concurrent request may have remembered another first: use the first one.
    Ok(store::user_customer(&state.db, t, Provider::Stripe)
        .await?
        .unwrap_or(id))
}

/// Starts (or resumes) a Stripe Checkout for a subscription or a top-up pack: one open session
/// per user and price however many requests race, and no second subscription for a subscriber.
#[utoipa::path(post, path = "/v1/billing/checkout", tag = "billing",
    security(("api_key" = [])),
    request_body = CheckoutIn,
    responses(
        (status = 200, description = "A Checkout URL", body = CheckoutOut),
        (status = 404, description = "The app does not sell through Stripe", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user already has a live subscription (use the portal), or a concurrent request is still creating this checkout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown product or bad URLs", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Stripe failed or refused", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_checkout(
    State(state): State<AppState>,
    auth: UserAuth,
    body: extract::Json<CheckoutIn>,
) -> Result<Json<CheckoutOut>> {
    let body = body.0;
    let (app, api) = stripe(&state, &auth)?;
    let prod = state.config.is_production();
    let mut errors = Vec::new();
    let product = app.product(Provider::Stripe, &body.product);
    if product.is_none() {
        errors.push(FieldError::new(
            "product",
            "not one of the app's Stripe products",
        ));
    }
    check_url("success_url", &body.success_url, prod, &mut errors);
    check_url("cancel_url", &body.cancel_url, prod, &mut errors);
    let Some(product) = product.filter(|_| errors.is_empty()) else {
        return Err(Error::Validation(errors));
    };
    let mode = if product.plan.is_some() {
        "subscription"
    } else {
        "payment"
    };
    if mode == "subscription" {
        refuse_a_second_subscription(&state, &auth).await?;
    }
    let customer = customer(&state, &api, &auth).await?;
    let user = auth.external_id.as_str();
    let mut form: Vec<(&str, &str)> = vec![
        ("mode", mode),
        ("customer", &customer),
        ("client_reference_id", user),
        ("line_items[0][price]", &product.id),
        ("line_items[0][quantity]", "1"),
        ("success_url", &body.success_url),
        ("cancel_url", &body.cancel_url),
        ("metadata[tollgate_user]", user),
        ("metadata[tollgate_product]", &product.id),
    ];
    // The user travels on the subscription (and so on its invoices) or on the payment.
    if mode == "subscription" {
        form.push(("subscription_data[metadata][tollgate_user]", user));
    } else {
        form.push(("payment_intent_data[metadata][tollgate_user]", user));
    }
    let session = Session {
        state: &state,
        api: &api,
        t: auth.target(),
        price: &product.id,
        mode,
        form: &form,
    };
    Ok(Json(session.open_one().await?))
}

/// A subscriber changes plan in the portal: a second subscription checkout would bill them
/// twice.
async fn refuse_a_second_subscription(state: &AppState, auth: &UserAuth) -> Result<()> {
    let (now, grace) = (crate::store::now_ms(), auth.billing.grace_ms());
    let subs = store::subscriptions(&state.db, auth.target()).await?;
    // The same rule that gives the plan: live status, not past its cancel date or grace.
    let live = subs
        .iter()
        .find(|s| s.provider == Provider::Stripe.as_str() && s.standing().live_at(now, grace));
    match live {
        Some(s) => Err(Error::Conflict(format!(
            "the user already has a live Stripe subscription ({}, {}): change plan in the \
             Customer Portal (POST /v1/billing/portal) instead of a second checkout",
            s.provider_id, s.status
        ))),
        None => Ok(()),
    }
}

/// How long a request waits for a concurrent one creating the same session.
const WAIT_FOR_SESSION: std::time::Duration = std::time::Duration::from_secs(10);

/// The user's one Checkout Session for a price (store/billing/checkouts.rs): created by the
/// request that claims it, reused by every other while Stripe keeps it open.
struct Session<'a> {
    state: &'a AppState,
    api: &'a StripeApi<'a>,
    t: crate::store::ledger::Target,
    price: &'a str,
    mode: &'a str,
    form: &'a [(&'a str, &'a str)],
}

impl Session<'_> {
    async fn open_one(&self) -> Result<CheckoutOut> {
        use store::checkouts::{self, Claim};
        let db = &self.state.db;
        let deadline = tokio::time::Instant::now() + WAIT_FOR_SESSION;
        loop {
            let generation = match checkouts::claim(db, self.t, self.price).await? {
                Claim::Create(generation) => generation,
                Claim::Recorded(row) => {
                    if let Some(open) = self.still_open(&row).await? {
                        return Ok(open);
                    }
                    match checkouts::renew(db, self.t, self.price, &row).await? {
                        Some(generation) => generation,
                        None => continue,
                    }
                }
                Claim::Wait if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Claim::Wait => {
                    return Err(Error::Conflict(
                        "another request is creating this checkout; retry in a moment".into(),
                    ));
                }
            };
            return self.create(generation).await;
        }
    }

    /// The recorded session, if Stripe still has it open.
    async fn still_open(&self, row: &store::checkouts::CheckoutRow) -> Result<Option<CheckoutOut>> {
        let now_secs = crate::store::now_ms() / 1000;
        let Some(id) = row.session_id.as_deref() else {
            return Ok(None);
        };
        if row.expires_at.is_some_and(|at| at <= now_secs) {
            return Ok(None);
        }
        let s = self
            .api
            .get(&format!("/v1/checkout/sessions/{id}"), &[])
            .await
            .map_err(store_failed)?;
        if s["status"] != "open" {
            return Ok(None);
        }
        session_out(&s, self.mode, true).map(Some)
    }

    async fn create(&self, generation: i64) -> Result<CheckoutOut> {
        let db = &self.state.db;
        let key = format!(
            "tollgate-checkout-{}-{}-{}-{generation}",
            self.t.app_id, self.t.user_id, self.price
        );
        let created = match self
            .api
            .post("/v1/checkout/sessions", self.form, &key)
            .await
        {
            Ok(created) => created,
            Err(e) => {
                store::checkouts::abandon(db, self.t, self.price, generation).await?;
                return Err(store_failed(e));
            }
        };
        let out = session_out(&created, self.mode, false)?;
        let session = (
            out.id.as_str(),
            out.url.as_str(),
            created["expires_at"].as_i64(),
        );
        store::checkouts::record(db, self.t, self.price, generation, session).await?;
        Ok(out)
    }
}

fn session_out(s: &Value, mode: &str, reused: bool) -> Result<CheckoutOut> {
    match (s["id"].as_str(), s["url"].as_str()) {
        (Some(id), Some(url)) => Ok(CheckoutOut {
            id: id.to_string(),
            url: url.to_string(),
            mode: mode.to_string(),
            reused,
        }),
        _ => Err(invalid_answer("a Checkout Session without id or url")),
    }
}

/// A Stripe Customer Portal session for the user (manage or cancel the subscription, invoices,
/// payment methods).
#[utoipa::path(post, path = "/v1/billing/portal", tag = "billing",
    security(("api_key" = [])),
    request_body = PortalIn,
    responses(
        (status = 200, description = "A portal URL", body = PortalOut),
        (status = 404, description = "The app does not sell through Stripe", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user has no Stripe customer yet", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Stripe failed or refused", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_portal(
    State(state): State<AppState>,
    auth: UserAuth,
    body: extract::Json<PortalIn>,
) -> Result<Json<PortalOut>> {
    let (app, _) = stripe(&state, &auth)?;
    let mut errors = Vec::new();
    check_url(
        "return_url",
        &body.0.return_url,
        state.config.is_production(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let url = portal_session(&state, app, auth.target(), &body.0.return_url).await?;
    Ok(Json(PortalOut { url }))
}

/// A Stripe Customer Portal session's URL for a user of `app` (also where a recovery nudge's
/// link leads a Stripe subscriber). 404 when the app has no Stripe secret key, 409 when the
/// user has no Stripe customer yet, 502 when Stripe fails.
pub async fn portal_session(
    state: &AppState,
    app: &AppConfig,
    t: crate::store::ledger::Target,
    return_url: &str,
) -> Result<String> {
    let api = stripe_api(state, app)?;
    let Some(customer) = store::user_customer(&state.db, t, Provider::Stripe).await? else {
        return Err(Error::Conflict(
            "the user has no Stripe customer yet: a checkout creates it".into(),
        ));
    };
    let key = format!("tollgate-portal-{}", uuid::Uuid::now_v7());
    let session = api
        .post(
            "/v1/billing_portal/sessions",
            &[("customer", &customer), ("return_url", return_url)],
            &key,
        )
        .await
        .map_err(store_failed)?;
    let url = session["url"]
        .as_str()
        .ok_or_else(|| invalid_answer("a portal session without a url"))?;
    Ok(url.to_string())
}

fn invalid_answer(what: &str) -> Error {
    store_failed(StoreError::Unreachable {
        store: "Stripe",
        detail: what.into(),
    })
}

/// The user's subscriptions at every store, as the newest events left them.
#[utoipa::path(get, path = "/v1/billing/subscriptions", tag = "billing",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user's subscriptions", body = SubscriptionsOut),
        (status = 401, description = "Missing or unknown key", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    auth: UserAuth,
) -> Result<Json<SubscriptionsOut>> {
    let data = store::subscriptions(&state.db, auth.target()).await?;
    Ok(Json(SubscriptionsOut { data }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncOut {
    /// The user's plan after the sync (`null`: the app's default plan).
    pub plan_id: Option<String>,
    pub subscriptions: Vec<SubscriptionRow>,
    /// What the sync changed or skipped, in words.
    pub outcomes: Vec<String>,
}

/// Asks RevenueCat for the user now and applies what it says (subscriptions, one-time
/// purchases) as the webhooks would: the "sync now" after a purchase. Idempotent with the
/// webhooks: a purchase seen by both is granted once.
#[utoipa::path(post, path = "/v1/billing/sync", tag = "billing",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user's plan and subscriptions after the sync", body = SyncOut),
        (status = 404, description = "The app has no RevenueCat API key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "RevenueCat failed or refused", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn sync_revenuecat(
    State(state): State<AppState>,
    auth: UserAuth,
) -> Result<Json<SyncOut>> {
    use crate::billing::apply::{Effects, Source};
    use crate::billing::revenuecat_api;
    let no_rc =
        || Error::NotFound("this app has no RevenueCat API key ([apps.revenuecat] api_key)".into());
    let app = state.config.app(&auth.app_slug).ok_or_else(no_rc)?;
    let rc = app.revenuecat.as_ref().ok_or_else(no_rc)?;
    let key = rc.api_key.as_ref().ok_or_else(no_rc)?;
    let subscriber =
        revenuecat_api::subscriber(&state.stores, &rc.api_base, key, &auth.external_id)
            .await
            .map_err(store_failed)?;
    let now = crate::store::now_ms();
    let time_ms = subscriber["request_date_ms"].as_i64().unwrap_or(now);
    let event_id = format!("sync-{time_ms}");
    let t = auth.target();
    let mut outcomes = Vec::new();
    for n in revenuecat_api::normalize(&subscriber, &auth.external_id, now) {
        let effects = Effects {
            db: &state.db,
            app,
            billing: &auth.billing,
            provider: Provider::RevenueCat,
            source: Source {
                time_ms,
                event_id: &event_id,
                webhook_id: None,
            },
            n: &n,
        };
        match effects.apply(auth.app_id).await {
            Ok(applied) => outcomes.push(applied.outcome),
            // A product the app does not map is reported, not fatal: others still apply.
            Err(e) if e.downcast_ref::<crate::jobs::Permanent>().is_some() => {
                outcomes.push(format!("skipped: {e:#}"))
            }
            Err(e) => return Err(Error::Internal(e)),
        }
    }
    let plan = crate::store::ledger::user_plan(&state.db, t).await?;
    let subscriptions = store::subscriptions(&state.db, t).await?;
    Ok(Json(SyncOut {
        plan_id: plan.plan_id,
        subscriptions,
        outcomes,
    }))
}

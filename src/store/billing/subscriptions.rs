//! Subscriptions as the newest event (by provider time, then event id) left them.

use serde::Serialize;

use crate::billing::{Provider, SubscriptionFacts};
use crate::domain::plans::Period;
use crate::domain::subscriptions::{Standing, Status, Version};
use crate::scoped_run;
use crate::store::ledger::Target;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

/// A subscription as one event describes it.
pub struct SubscriptionWrite<'a> {
    pub provider: Provider,
    pub facts: &'a SubscriptionFacts,
    /// The plan its product gives (from the app's product map).
    pub plan_id: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub store: Option<&'a str>,
    /// Where the event sits in the subscription's history.
    pub version: &'a Version,
}

/// Writes a subscription as an event describes it, unless a newer event already did (one
/// statement, so concurrent jobs cannot interleave). True when written.
pub async fn put_subscription(
    db: &Db,
    t: Target,
    w: &SubscriptionWrite<'_>,
) -> Result<bool, sqlx::Error> {
    let (provider, facts, version) = (w.provider, w.facts, w.version);
    let (plan_id, environment, store) = (w.plan_id, w.environment, w.store);
    let now = now_ms();
    let (start, end) = facts.period.map(|p| (p.start, p.end)).unzip();
    let mut tx = db.begin().await?;
    crate::store::scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let written: Option<i64> = crate::tx_run!(&mut tx, c => sqlx::query_scalar(
        "INSERT INTO subscriptions (app_id, user_id, provider, provider_id, status, product_id, \
         plan_id, period_start, period_end, cancel_at_period_end, environment, store, event_time, \
         event_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
         ON CONFLICT (app_id, provider, provider_id) DO UPDATE SET status = excluded.status, \
         product_id = COALESCE(excluded.product_id, subscriptions.product_id), \
         plan_id = COALESCE(excluded.plan_id, subscriptions.plan_id), \
         period_start = COALESCE(excluded.period_start, subscriptions.period_start), \
         period_end = COALESCE(excluded.period_end, subscriptions.period_end), \
         cancel_at_period_end = excluded.cancel_at_period_end, \
         environment = COALESCE(excluded.environment, subscriptions.environment), \
         store = COALESCE(excluded.store, subscriptions.store), \
         event_time = excluded.event_time, event_id = excluded.event_id, \
         updated_at = excluded.updated_at \
         WHERE subscriptions.event_time < excluded.event_time \
            OR (subscriptions.event_time = excluded.event_time AND subscriptions.event_id <= excluded.event_id) \
         RETURNING id")
        .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).bind(&facts.id)
        .bind(facts.status.as_str()).bind(&facts.product).bind(plan_id).bind(start).bind(end)
        .bind(facts.cancel_at_period_end).bind(environment).bind(store)
        .bind(version.time_ms).bind(&version.event_id).bind(now)
        .fetch_optional(&mut **c).await)?;
    if written.is_some() {
        let data = crate::domain::events::SubscriptionUpdated {
            user_id: String::new(),
            provider: provider.as_str().to_string(),
            subscription_id: facts.id.clone(),
            status: facts.status.as_str().to_string(),
            product_id: facts.product.clone(),
            plan_id: plan_id.map(str::to_string),
            period_end: end,
            cancel_at_period_end: facts.cancel_at_period_end,
        };
        // The store's event names the change: the same event applied again publishes nothing.
        let key = format!(
            "subscription.updated:{}:{}:{}",
            provider.as_str(),
            facts.id,
            version.event_id
        );
        let e = crate::store::events::Outgoing::about(
            crate::domain::events::EventType::SubscriptionUpdated,
            t.user_id,
            key,
            data,
        );
        crate::store::events::publish(&mut tx, t.app_id, &e).await?;
    }
    tx.commit().await?;
    Ok(written.is_some())
}

/// A subscription as shown to operators and the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SubscriptionRow {
    pub provider: String,
    /// The store's id for it.
    pub provider_id: String,
    /// trialing, active, past_due, incomplete, canceled or expired.
    pub status: String,
    pub product_id: Option<String>,
    pub plan_id: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub environment: Option<String>,
    pub store: Option<String>,
    /// Provider time of the event that last changed it.
    pub event_time: i64,
}

type SubscriptionTuple = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
    Option<String>,
    i64,
);

/// A user's subscriptions, in a fixed order (store, then the store's id).
pub async fn subscriptions(db: &Db, t: Target) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    let rows: Vec<SubscriptionTuple> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(
        "SELECT provider, provider_id, status, product_id, plan_id, period_start, period_end, \
         cancel_at_period_end, environment, store, event_time FROM subscriptions \
         WHERE app_id = $1 AND user_id = $2 ORDER BY provider, provider_id")
        .bind(t.app_id).bind(t.user_id).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|r| SubscriptionRow {
            provider: r.0,
            provider_id: r.1,
            status: r.2,
            product_id: r.3,
            plan_id: r.4,
            period_start: r.5,
            period_end: r.6,
            cancel_at_period_end: r.7,
            environment: r.8,
            store: r.9,
            event_time: r.10,
        })
        .collect())
}

impl SubscriptionRow {
    pub fn standing(&self) -> Standing {
        Standing {
            status: Status::parse(&self.status).unwrap_or(Status::Expired),
            plan_id: self.plan_id.clone(),
            period: self
                .period_start
                .zip(self.period_end)
                .map(|(start, end)| Period { start, end }),
            cancel_at_period_end: self.cancel_at_period_end,
        }
    }
}

/// The user a stored subscription belongs to.
pub async fn subscription_user(
    db: &Db,
    app_id: i64,
    provider: Provider,
    provider_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    scoped_run!(db, Scope::App(app_id), c => sqlx::query_scalar(
        "SELECT user_id FROM subscriptions WHERE app_id = $1 AND provider = $2 AND provider_id = $3")
        .bind(app_id).bind(provider.as_str()).bind(provider_id).fetch_optional(c).await)
}

/// The store's id of a user's subscription to `product`, if one is stored.
pub async fn subscription_for_product(
    db: &Db,
    t: Target,
    provider: Provider,
    product: &str,
) -> Result<Option<String>, sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
        "SELECT provider_id FROM subscriptions WHERE app_id = $1 AND user_id = $2 \
         AND provider = $3 AND product_id = $4 ORDER BY updated_at DESC LIMIT 1")
        .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).bind(product)
        .fetch_optional(c).await)
}

//! Billing stores' data: verified webhook deliveries (ingested with their processing job in one
//! transaction), subscriptions as the newest event left them, the stores' customer ids, and
//! payment outcomes for the recovery feature.

use serde::Serialize;

use crate::billing::{Envelope, Provider, SubscriptionFacts};
use crate::domain::plans::Period;
use crate::domain::subscriptions::{Standing, Status, Version};
use crate::jobs::{Client, EnqueueOptions, Job};
use crate::store::ledger::Target;
use crate::store::scope::{self, Scope};
use crate::store::{Db, now_ms};
use crate::{scoped_run, tx_run};

/// What storing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored now (row id), its processing job enqueued in the same transaction.
    New(i64),
    /// Delivered before: counted, nothing else (row id).
    Duplicate(i64),
}

/// Stores a verified delivery and enqueues `job` (made from the new row's id) in the same
/// transaction: once this returns, the event cannot be lost.
pub async fn ingest<J: Job>(
    db: &Db,
    jobs: &Client,
    app_id: i64,
    provider: Provider,
    envelope: &Envelope,
    body: &[u8],
    job: impl FnOnce(i64) -> J,
) -> anyhow::Result<Ingested> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let now = now_ms();
    let inserted: Option<i64> = tx_run!(&mut tx, c => sqlx::query_scalar(
        "INSERT INTO webhook_events (app_id, provider, event_id, event_type, event_time, received_at, \
         body, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') \
         ON CONFLICT (app_id, provider, event_id) DO NOTHING RETURNING id")
        .bind(app_id).bind(provider.as_str()).bind(&envelope.id).bind(&envelope.kind)
        .bind(envelope.time_ms).bind(now).bind(body)
        .fetch_optional(&mut **c).await)?;
    let result = match inserted {
        Some(id) => {
            jobs.enqueue_tx(&mut tx, &job(id), EnqueueOptions::default())
                .await?;
            Ingested::New(id)
        }
        None => {
            let id: i64 = tx_run!(&mut tx, c => sqlx::query_scalar(
                "UPDATE webhook_events SET deliveries = deliveries + 1 \
                 WHERE app_id = $1 AND provider = $2 AND event_id = $3 RETURNING id")
                .bind(app_id).bind(provider.as_str()).bind(&envelope.id)
                .fetch_one(&mut **c).await)?;
            Ingested::Duplicate(id)
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// A stored delivery. Its `Debug` leaves the body out (it may carry personal data).
#[derive(Clone, Serialize)]
pub struct WebhookRow {
    pub id: i64,
    pub app_id: i64,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub event_time: i64,
    pub received_at: i64,
    /// `pending`, `processed`, `ignored` (a type tollgate does not act on) or `failed`.
    pub status: String,
    pub attempts: i64,
    pub deliveries: i64,
    pub user_id: Option<i64>,
    /// The normalised change (`subscription_started`, `refunded`, …).
    pub change: Option<String>,
    /// What processing did, in words.
    pub outcome: Option<String>,
    pub last_error: Option<String>,
    pub processed_at: Option<i64>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("outcome", &self.outcome)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

type WebhookTuple = (
    i64,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Vec<u8>,
);

const WEBHOOK_COLUMNS: &str = "id, app_id, provider, event_id, event_type, event_time, received_at, \
     status, attempts, deliveries, user_id, change, outcome, last_error, processed_at, body";

fn webhook_row(t: WebhookTuple) -> WebhookRow {
    WebhookRow {
        id: t.0,
        app_id: t.1,
        provider: t.2,
        event_id: t.3,
        event_type: t.4,
        event_time: t.5,
        received_at: t.6,
        status: t.7,
        attempts: t.8,
        deliveries: t.9,
        user_id: t.10,
        change: t.11,
        outcome: t.12,
        last_error: t.13,
        processed_at: t.14,
        body: t.15,
    }
}

/// One delivery by id (any app: the worker and operators see all).
pub async fn webhook(db: &Db, id: i64) -> Result<Option<WebhookRow>, sqlx::Error> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_events WHERE id = $1");
    let row: Option<WebhookTuple> = scoped_run!(db, Scope::AllApps, c =>
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(id).fetch_optional(c).await)?;
    Ok(row.map(webhook_row))
}

/// Deliveries newest first, optionally of one status and one app.
pub async fn webhooks(
    db: &Db,
    status: Option<&str>,
    app_id: Option<i64>,
    limit: i64,
) -> Result<Vec<WebhookRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhook_events WHERE ($1 IS NULL OR status = $1) \
         AND ($2 IS NULL OR app_id = $2) ORDER BY id DESC LIMIT $3"
    );
    let rows: Vec<WebhookTuple> = scoped_run!(db, Scope::of(app_id), c =>
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(status).bind(app_id).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(webhook_row).collect())
}

/// How a processing attempt ended.
pub struct Processed<'a> {
    pub status: &'a str,
    pub user_id: Option<i64>,
    pub change: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Records an attempt's end on the delivery.
pub async fn finish(db: &Db, app_id: i64, id: i64, p: &Processed<'_>) -> Result<(), sqlx::Error> {
    let done = matches!(p.status, "processed" | "ignored").then(now_ms);
    scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE webhook_events SET status = $1, attempts = attempts + 1, \
         user_id = COALESCE($2, user_id), change = COALESCE($3, change), outcome = $4, \
         last_error = $5, processed_at = $6 WHERE app_id = $7 AND id = $8")
        .bind(p.status).bind(p.user_id).bind(p.change).bind(p.outcome).bind(p.error)
        .bind(done).bind(app_id).bind(id).execute(c).await.map(|_| ()))
}

/// Puts a delivery back to `pending` and enqueues `job` for it, in one transaction. False when
/// there is no such delivery.
pub async fn replay<J: Job>(db: &Db, jobs: &Client, id: i64, job: J) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::AllApps).await?;
    let found = tx_run!(&mut tx, c => sqlx::query(
        "UPDATE webhook_events SET status = 'pending', last_error = NULL WHERE id = $1")
        .bind(id).execute(&mut **c).await.map(|r| r.rows_affected() == 1))?;
    if found {
        jobs.enqueue_tx(&mut tx, &job, EnqueueOptions::default())
            .await?;
    }
    tx.commit().await?;
    Ok(found)
}

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
    let written: Option<i64> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
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
        .fetch_optional(c).await)?;
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

/// Remembers a store's customer id for a user (the first mapping of a customer id stays).
pub async fn remember_customer(
    db: &Db,
    t: Target,
    provider: Provider,
    customer_id: &str,
) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
        "INSERT INTO billing_customers (app_id, user_id, provider, customer_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, provider, customer_id) DO NOTHING")
        .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).bind(customer_id).bind(now_ms())
        .execute(c).await.map(|_| ()))
}

/// The user a store's customer id belongs to.
pub async fn customer_user(
    db: &Db,
    app_id: i64,
    provider: Provider,
    customer_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    scoped_run!(db, Scope::App(app_id), c => sqlx::query_scalar(
        "SELECT user_id FROM billing_customers WHERE app_id = $1 AND provider = $2 AND customer_id = $3")
        .bind(app_id).bind(provider.as_str()).bind(customer_id).fetch_optional(c).await)
}

/// A payment outcome for the recovery feature.
pub struct PaymentEvent<'a> {
    pub provider: Provider,
    /// `payment_failed` or `payment_succeeded`.
    pub kind: &'a str,
    pub reference: Option<&'a str>,
    pub amount_minor: Option<i64>,
    pub currency: Option<&'a str>,
    pub event_time: i64,
    pub webhook_id: i64,
}

/// Publishes a payment outcome, once per delivery.
pub async fn record_payment(db: &Db, t: Target, p: &PaymentEvent<'_>) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
        "INSERT INTO payment_events (app_id, user_id, provider, kind, reference, amount_minor, \
         currency, event_time, webhook_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (webhook_id) DO NOTHING")
        .bind(t.app_id).bind(t.user_id).bind(p.provider.as_str()).bind(p.kind).bind(p.reference)
        .bind(p.amount_minor).bind(p.currency).bind(p.event_time).bind(p.webhook_id).bind(now_ms())
        .execute(c).await.map(|_| ()))
}

/// A user's published payment outcomes, oldest first: (kind, event time).
pub async fn payments(db: &Db, t: Target) -> Result<Vec<(String, i64)>, sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(
        "SELECT kind, event_time FROM payment_events WHERE app_id = $1 AND user_id = $2 \
         ORDER BY event_time, id")
        .bind(t.app_id).bind(t.user_id).fetch_all(c).await)
}

/// A user's customer id at a store (the first remembered).
pub async fn user_customer(
    db: &Db,
    t: Target,
    provider: Provider,
) -> Result<Option<String>, sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
        "SELECT customer_id FROM billing_customers WHERE app_id = $1 AND user_id = $2 \
         AND provider = $3 ORDER BY created_at LIMIT 1")
        .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).fetch_optional(c).await)
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

/// Remembers that a purchase, known to the store by any of `references`, made `grant_id`.
pub async fn link_grant(
    db: &Db,
    t: Target,
    provider: Provider,
    references: &[String],
    grant_id: i64,
) -> Result<(), sqlx::Error> {
    for r in references {
        scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
            "INSERT INTO purchase_grants (app_id, user_id, provider, reference, grant_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).bind(r).bind(grant_id)
            .execute(c).await.map(|_| ()))?;
    }
    Ok(())
}

/// The grants a purchase known by any of `references` made for the user.
pub async fn grants_of(
    db: &Db,
    t: Target,
    provider: Provider,
    references: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids = Vec::new();
    for r in references {
        let found: Vec<i64> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
            "SELECT grant_id FROM purchase_grants WHERE app_id = $1 AND user_id = $2 \
             AND provider = $3 AND reference = $4")
            .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).bind(r)
            .fetch_all(c).await)?;
        ids.extend(found);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

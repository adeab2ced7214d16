//! The stores' customers, which grants each purchase made (for refunds), and payment outcomes
//! for the recovery feature.

use crate::billing::Provider;
use crate::scoped_run;
use crate::store::ledger::Target;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

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
    /// The store's subscription it is for ('' when it names none).
    pub subscription: &'a str,
    /// The app's recovery window, for a case a failure opens.
    pub recovery_window_ms: i64,
    /// Whether the app gives an incentive on recovery (a job applies it once).
    pub recovery_incentive: bool,
}

/// Publishes a payment outcome, once per delivery, and applies it to the user's recovery cases
/// in the same transaction.
pub async fn record_payment(db: &Db, t: Target, p: &PaymentEvent<'_>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    crate::store::scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let id: Option<i64> = crate::tx_run!(&mut tx, c => sqlx::query_scalar(
        "INSERT INTO payment_events (app_id, user_id, provider, kind, reference, amount_minor, \
         currency, event_time, webhook_id, created_at, subscription_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (webhook_id) DO NOTHING RETURNING id")
        .bind(t.app_id).bind(t.user_id).bind(p.provider.as_str()).bind(p.kind).bind(p.reference)
        .bind(p.amount_minor).bind(p.currency).bind(p.event_time).bind(p.webhook_id).bind(now_ms())
        .bind(p.subscription)
        .fetch_optional(&mut **c).await)?;
    if let Some(id) = id {
        use crate::domain::events::{EventType, Payment};
        let kind = if p.kind == "payment_failed" {
            EventType::PaymentFailed
        } else {
            EventType::PaymentSucceeded
        };
        let data = Payment {
            user_id: String::new(),
            provider: p.provider.as_str().to_string(),
            reference: p.reference.map(str::to_string),
            amount_minor: p.amount_minor,
            currency: p.currency.map(str::to_string),
            event_time: p.event_time,
        };
        let key = format!("{}:{id}", kind.as_str());
        let e = crate::store::events::Outgoing::about(kind, t.user_id, key, data);
        crate::store::events::publish(&mut tx, t.app_id, &e).await?;
        let outcome = crate::store::recovery::Outcome {
            provider: p.provider.as_str(),
            failed: kind == EventType::PaymentFailed,
            subscription: p.subscription,
            amount_minor: p.amount_minor,
            currency: p.currency,
            event_time: p.event_time,
            window_ms: p.recovery_window_ms,
            incentive: p.recovery_incentive,
        };
        crate::store::recovery::apply(&mut tx, t, &outcome).await?;
    }
    tx.commit().await
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

/// `$first, $first+1, …` for `n` bound values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Remembers that a purchase, known to the store by any of `references`, made `grant_id` (one
/// statement for all the ids).
pub async fn link_grant(
    db: &Db,
    t: Target,
    provider: Provider,
    references: &[String],
    grant_id: i64,
) -> Result<(), sqlx::Error> {
    if references.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..references.len())
        .map(|i| format!("($1, $2, $3, $4, ${})", i + 5))
        .collect();
    let sql = format!(
        "INSERT INTO purchase_grants (app_id, user_id, provider, grant_id, reference) VALUES {} \
         ON CONFLICT DO NOTHING",
        rows.join(", ")
    );
    scoped_run!(db, Scope::App(t.app_id), c => {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(t.app_id).bind(t.user_id).bind(provider.as_str()).bind(grant_id);
        for r in references {
            q = q.bind(r);
        }
        q.execute(c).await.map(|_| ())
    })
}

/// The grants a purchase known by any of `references` made for the user.
pub async fn grants_of(
    db: &Db,
    t: Target,
    provider: Provider,
    references: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    if references.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT DISTINCT grant_id FROM purchase_grants WHERE app_id = $1 AND user_id = $2 \
         AND provider = $3 AND reference IN ({}) ORDER BY grant_id",
        placeholders(4, references.len())
    );
    scoped_run!(db, Scope::App(t.app_id), c => {
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(t.app_id).bind(t.user_id).bind(provider.as_str());
        for r in references {
            q = q.bind(r);
        }
        q.fetch_all(c).await
    })
}

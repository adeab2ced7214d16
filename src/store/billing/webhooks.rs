//! Verified webhook deliveries: ingested with their processing job in one transaction, listed,
//! finished, replayed.

use serde::Serialize;

use crate::billing::{Envelope, Provider};
use crate::jobs::{Client, EnqueueOptions, Job};
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
    let result = insert_tx(&mut tx, app_id, provider, envelope, body).await?;
    if let Ingested::New(id) = result {
        jobs.enqueue_tx(&mut tx, &job(id), EnqueueOptions::default())
            .await?;
    }
    tx.commit().await?;
    Ok(result)
}

/// Stores a delivery that its caller processes itself, with no job (the demo seed, which
/// applies its made-up store history at once). A repeat is counted, as [`ingest`] counts one.
pub async fn store_unqueued(
    db: &Db,
    app_id: i64,
    provider: Provider,
    envelope: &Envelope,
    body: &[u8],
) -> Result<Ingested, sqlx::Error> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let result = insert_tx(&mut tx, app_id, provider, envelope, body).await?;
    tx.commit().await?;
    Ok(result)
}

/// Stores a delivery in the caller's transaction, or counts a repeat of one (unique by the
/// store's event id).
async fn insert_tx(
    tx: &mut crate::store::Tx,
    app_id: i64,
    provider: Provider,
    envelope: &Envelope,
    body: &[u8],
) -> Result<Ingested, sqlx::Error> {
    let inserted: Option<i64> = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "INSERT INTO webhook_events (app_id, provider, event_id, event_type, event_time, received_at, \
         body, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') \
         ON CONFLICT (app_id, provider, event_id) DO NOTHING RETURNING id")
        .bind(app_id).bind(provider.as_str()).bind(&envelope.id).bind(&envelope.kind)
        .bind(envelope.time_ms).bind(now_ms()).bind(body)
        .fetch_optional(&mut **c).await)?;
    if let Some(id) = inserted {
        return Ok(Ingested::New(id));
    }
    let id: i64 = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "UPDATE webhook_events SET deliveries = deliveries + 1 \
         WHERE app_id = $1 AND provider = $2 AND event_id = $3 RETURNING id")
        .bind(app_id).bind(provider.as_str()).bind(&envelope.id)
        .fetch_one(&mut **c).await)?;
    Ok(Ingested::Duplicate(id))
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
    let mut tx = db.begin_in(Scope::AllApps).await?;
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

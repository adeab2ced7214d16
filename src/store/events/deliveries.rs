//! The events as stored, one delivery per event and endpoint (a replay adds a round), and
//! every attempt of a delivery.

use serde::Serialize;

use super::{EndpointRow, endpoint};
use crate::store::scope::{self, Scope};
use crate::store::{Db, Tx, now_ms};
use crate::{scoped_run, tx_run};

/// A stored event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    /// The message id receivers see in `webhook-id`.
    pub msg_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: i64,
    /// The body every endpoint receives.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

type EventTuple = (i64, String, String, i64, String);

fn event_row(t: EventTuple) -> EventRow {
    EventRow {
        id: t.0,
        msg_id: t.1,
        kind: t.2,
        created_at: t.3,
        payload: serde_json::from_str(&t.4).unwrap_or_default(),
    }
}

/// An app's events, newest first, older than `before` (a cursor: the last id seen).
pub async fn events(
    db: &Db,
    app_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows: Vec<EventTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT id, msg_id, type, created_at, payload FROM events WHERE app_id = $1 \
         AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
        .bind(app_id).bind(before).bind(limit).fetch_all(c).await)?;
    Ok(rows.into_iter().map(event_row).collect())
}

/// Creates the deliveries of `event` (round `round`) to every enabled endpoint of its app that
/// wants its type — or to `only` — in the caller's transaction. Returns the new deliveries' ids;
/// a delivery that exists is not made twice, so a re-run fan-out adds nothing.
pub async fn add_deliveries(
    tx: &mut Tx,
    app_id: i64,
    event: i64,
    round: i64,
    only: Option<i64>,
) -> Result<Vec<i64>, sqlx::Error> {
    scope::apply_tx(tx, Scope::App(app_id)).await?;
    let kind: Option<String> = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "SELECT type FROM events WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(event).fetch_optional(&mut **c).await)?;
    let Some(kind) = kind else {
        return Ok(Vec::new());
    };
    let candidates: Vec<(i64, Option<String>)> = tx_run!(&mut *tx, c => sqlx::query_as(
        "SELECT id, event_types FROM event_endpoints WHERE app_id = $1 AND enabled \
         AND purpose = 'events' \
         AND ($2 IS NULL OR id = $2) ORDER BY id")
        .bind(app_id).bind(only).fetch_all(&mut **c).await)?;
    let now = now_ms();
    let mut made = Vec::new();
    for (endpoint, types) in candidates {
        let types: Option<Vec<String>> = types.and_then(|j| serde_json::from_str(&j).ok());
        if !crate::domain::events::wants(types.as_deref(), &kind) {
            continue;
        }
        let id: Option<i64> = tx_run!(&mut *tx, c => sqlx::query_scalar(
            "INSERT INTO event_deliveries (app_id, event_id, endpoint_id, round, state, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (event_id, endpoint_id, round) DO NOTHING \
             RETURNING id")
            .bind(app_id).bind(event).bind(endpoint).bind(round).bind(now)
            .fetch_optional(&mut **c).await)?;
        made.extend(id);
    }
    Ok(made)
}

/// The next replay round of `event` (one more than any delivery of it so far).
pub async fn next_round(tx: &mut Tx, app_id: i64, event: i64) -> Result<i64, sqlx::Error> {
    scope::apply_tx(tx, Scope::App(app_id)).await?;
    tx_run!(&mut *tx, c => sqlx::query_scalar(
        "SELECT COALESCE(MAX(round), -1) + 1 FROM event_deliveries WHERE app_id = $1 AND event_id = $2")
        .bind(app_id).bind(event).fetch_one(&mut **c).await)
}

/// The ids of an app's events created in `[from, to)`.
pub async fn events_between(
    db: &Db,
    app_id: i64,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    scoped_run!(db, Scope::App(app_id), c => sqlx::query_scalar(
        "SELECT id FROM events WHERE app_id = $1 AND created_at >= $2 AND created_at < $3 \
         ORDER BY id LIMIT $4")
        .bind(app_id).bind(from).bind(to).bind(limit).fetch_all(c).await)
}

pub async fn event_by_msg_id(
    db: &Db,
    app_id: i64,
    msg_id: &str,
) -> Result<Option<EventRow>, sqlx::Error> {
    let row: Option<EventTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT id, msg_id, type, created_at, payload FROM events WHERE app_id = $1 AND msg_id = $2")
        .bind(app_id).bind(msg_id).fetch_optional(c).await)?;
    Ok(row.map(event_row))
}

/// What one delivery attempt needs.
#[derive(Clone)]
pub struct Work {
    pub delivery_id: i64,
    pub state: String,
    pub msg_id: String,
    pub payload: String,
    pub endpoint: EndpointRow,
}

pub async fn work(db: &Db, app_id: i64, delivery: i64) -> Result<Option<Work>, sqlx::Error> {
    let row: Option<(String, String, String, i64)> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT d.state, e.msg_id, e.payload, d.endpoint_id FROM event_deliveries d \
         JOIN events e ON e.id = d.event_id WHERE d.app_id = $1 AND d.id = $2")
        .bind(app_id).bind(delivery).fetch_optional(c).await)?;
    let Some((state, msg_id, payload, endpoint_id)) = row else {
        return Ok(None);
    };
    let Some(endpoint) = endpoint(db, app_id, endpoint_id).await? else {
        return Ok(None);
    };
    Ok(Some(Work {
        delivery_id: delivery,
        state,
        msg_id,
        payload,
        endpoint,
    }))
}

/// One attempt as recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    pub delivery_id: i64,
    pub attempt: i64,
    pub at: i64,
    /// The HTTP status; absent when no answer came.
    pub status: Option<i64>,
    pub latency_ms: i64,
    /// The first 1 KiB of the answer.
    pub response: Option<String>,
    pub error: Option<String>,
}

/// How an attempt ends its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// A 2xx: delivered.
    Succeeded,
    /// Retried later.
    Retry,
    /// No more attempts (the last one failed, or the endpoint is gone or disabled).
    Failed,
}

/// Records an attempt and what it means for the delivery and the endpoint's health, in one
/// transaction. An attempt recorded twice (a worker killed after recording, before completing
/// the job) is kept once. Returns the time the endpoint has been failing since, after this
/// attempt (`None` once it succeeded).
pub async fn record_attempt(
    db: &Db,
    app_id: i64,
    endpoint_id: i64,
    a: &AttemptRow,
    end: AttemptEnd,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    tx_run!(&mut tx, c => sqlx::query(
        "INSERT INTO event_attempts (app_id, delivery_id, attempt, at, status, latency_ms, response, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (delivery_id, attempt) DO NOTHING")
        .bind(app_id).bind(a.delivery_id).bind(a.attempt).bind(a.at).bind(a.status)
        .bind(a.latency_ms).bind(&a.response).bind(&a.error)
        .execute(&mut **c).await.map(|_| ()))?;
    let (state, finished) = match end {
        AttemptEnd::Succeeded => ("succeeded", Some(a.at)),
        AttemptEnd::Retry => ("pending", None),
        AttemptEnd::Failed => ("failed", Some(a.at)),
    };
    tx_run!(&mut tx, c => sqlx::query(
        "UPDATE event_deliveries SET state = $3, attempts = $4, last_status = $5, finished_at = $6 \
         WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(a.delivery_id).bind(state).bind(a.attempt).bind(a.status).bind(finished)
        .execute(&mut **c).await.map(|_| ()))?;
    let failing: Option<Option<i64>> = tx_run!(&mut tx, c => sqlx::query_scalar(
        "UPDATE event_endpoints SET failing_since = CASE WHEN $3 THEN NULL \
         ELSE COALESCE(failing_since, $4) END WHERE app_id = $1 AND id = $2 RETURNING failing_since")
        .bind(app_id).bind(endpoint_id).bind(end == AttemptEnd::Succeeded).bind(a.at)
        .fetch_optional(&mut **c).await)?;
    tx.commit().await?;
    Ok(failing.flatten())
}

/// Marks a delivery that will not be attempted (its endpoint is disabled or gone).
pub async fn skip_delivery(db: &Db, app_id: i64, delivery: i64) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE event_deliveries SET state = 'skipped', finished_at = $3 \
         WHERE app_id = $1 AND id = $2 AND state = 'pending'")
        .bind(app_id).bind(delivery).bind(now_ms()).execute(c).await.map(|_| ()))
}

/// A delivery as listed for operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint_id: i64,
    pub msg_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub round: i64,
    /// `pending`, `succeeded`, `failed` or `skipped`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

type DeliveryTuple = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);

/// An endpoint's deliveries, newest first, older than `before`.
pub async fn deliveries(
    db: &Db,
    app_id: i64,
    endpoint_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let rows: Vec<DeliveryTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT d.id, d.endpoint_id, e.msg_id, e.type, d.round, d.state, d.attempts, d.last_status, \
         d.created_at, d.finished_at FROM event_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.app_id = $1 AND d.endpoint_id = $2 AND ($3 IS NULL OR d.id < $3) \
         ORDER BY d.id DESC LIMIT $4")
        .bind(app_id).bind(endpoint_id).bind(before).bind(limit).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|t| DeliveryRow {
            id: t.0,
            endpoint_id: t.1,
            msg_id: t.2,
            kind: t.3,
            round: t.4,
            state: t.5,
            attempts: t.6,
            last_status: t.7,
            created_at: t.8,
            finished_at: t.9,
        })
        .collect())
}

type AttemptTuple = (
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
);

/// A delivery's attempts, first first.
pub async fn attempts(
    db: &Db,
    app_id: i64,
    delivery_id: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    let rows: Vec<AttemptTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT delivery_id, attempt, at, status, latency_ms, response, error FROM event_attempts \
         WHERE app_id = $1 AND delivery_id = $2 ORDER BY attempt")
        .bind(app_id).bind(delivery_id).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|t| AttemptRow {
            delivery_id: t.0,
            attempt: t.1,
            at: t.2,
            status: t.3,
            latency_ms: t.4,
            response: t.5,
            error: t.6,
        })
        .collect())
}

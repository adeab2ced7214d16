//! Outbound events: the outbox (an event is written in the transaction of the change that
//! causes it, with the job that fans it out), the app's endpoints, one delivery per event and
//! endpoint, and every attempt (docs/events.md).

use serde::Serialize;

use crate::domain::events::EventType;
use crate::store::jobs::queue::{self, NewJob};
use crate::store::scope::{self, Scope};
use crate::store::{Db, Tx, now_ms};
use crate::{scoped_run, tx_run};

/// The queue outbound deliveries run on, apart from tollgate's own upkeep and the app's jobs.
pub const QUEUE: &str = "events";
/// The job kind that turns one stored event into one delivery per endpoint that wants it.
pub const FAN_OUT_KIND: &str = "events.fan_out";

/// An event a change publishes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: EventType,
    /// The user it is about; their external id is added to `data` as `user_id`.
    pub user_id: Option<i64>,
    /// The same change applied twice (a retried job) carries the same key and publishes once.
    pub dedupe_key: String,
    /// The payload's `data`, without `user_id`.
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Outgoing {
    /// An event about `user_id`, its `data` made from `data` (a struct of the catalogue).
    pub fn about(
        kind: EventType,
        user_id: i64,
        dedupe_key: String,
        data: impl Serialize,
    ) -> Outgoing {
        let data = match serde_json::to_value(data) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        Outgoing {
            kind,
            user_id: Some(user_id),
            dedupe_key,
            data,
        }
    }
}

/// The event a balance moving from `before` to `after` publishes, if it crosses the app's
/// threshold `low` or zero downwards ([`crate::domain::events::crossed`]); `cause` names the
/// write (one crossing per write, however often it is applied).
pub fn balance_event(
    user_id: i64,
    before: i64,
    after: i64,
    low: Option<i64>,
    cause: &str,
) -> Option<Outgoing> {
    let kind = crate::domain::events::crossed(before, after, low)?;
    let threshold = if kind == EventType::CreditsLow {
        low.unwrap_or_default()
    } else {
        0
    };
    let data = crate::domain::events::CreditsBalance {
        user_id: String::new(),
        balance_micros: after,
        threshold_micros: threshold,
    };
    Some(Outgoing::about(
        kind,
        user_id,
        format!("{}:{cause}", kind.as_str()),
        data,
    ))
}

/// The arguments of the fan-out job (kept here so the outbox and the job agree on them).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOutArgs {
    pub app: i64,
    pub event: i64,
}

/// Writes `e` to the outbox in the caller's transaction, with its fan-out job: both commit
/// with the change or neither does. Returns the event's row id, or `None` when an event with
/// the same dedupe key exists. The job is stored parked while the enqueue kill switch is off
/// (an event must never be lost), like every kind that parks.
pub async fn publish(tx: &mut Tx, app_id: i64, e: &Outgoing) -> Result<Option<i64>, sqlx::Error> {
    // The change's transaction is in this app's scope already; a caller that is not (a
    // job's own transaction) gets it here, as row-level security requires.
    scope::apply_tx(tx, Scope::App(app_id)).await?;
    let now = now_ms();
    let mut data = e.data.clone();
    if let Some(user_id) = e.user_id {
        // Erased users have no external id: they are named by their anonymous one.
        let name: Option<String> = tx_run!(&mut *tx, c => sqlx::query_scalar(
            "SELECT COALESCE(external_id, anonymous_id) FROM users WHERE app_id = $1 AND id = $2")
            .bind(app_id).bind(user_id).fetch_optional(&mut **c).await)?;
        data.insert("user_id".into(), name.unwrap_or_default().into());
    }
    let msg_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let payload = serde_json::json!({
        "type": e.kind.as_str(),
        "timestamp": rfc3339(now),
        "data": data,
    })
    .to_string();
    let id: Option<i64> = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "INSERT INTO events (app_id, msg_id, type, user_id, dedupe_key, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING id")
        .bind(app_id).bind(&msg_id).bind(e.kind.as_str()).bind(e.user_id).bind(&e.dedupe_key)
        .bind(&payload).bind(now).fetch_optional(&mut **c).await)?;
    let Some(id) = id else {
        return Ok(None);
    };
    // The store has no `jobs::Client` (and its cached switches) here, so it reads the enqueue
    // switch's row itself: parked while it is off, like every kind that parks.
    let switch = crate::jobs::switches::Switch::Enqueue.key();
    let enqueue_off: Option<String> = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "SELECT value FROM settings WHERE key = $1")
        .bind(&switch).fetch_optional(&mut **c).await)?;
    let args = serde_json::to_string(&FanOutArgs {
        app: app_id,
        event: id,
    })
    .expect("numbers serialise");
    queue::insert(
        tx,
        &NewJob {
            queue: QUEUE,
            kind: FAN_OUT_KIND,
            args: &args,
            priority: 0,
            max_attempts: 20,
            timeout_ms: 30_000,
            run_at: now,
            created_at: now,
            parked: enqueue_off.as_deref() == Some("off"),
            unique_key: None,
            effect_key: None,
        },
    )
    .await?;
    crate::events::metrics::published(e.kind);
    Ok(Some(id))
}

/// RFC 3339 with milliseconds, UTC (`2026-12-02T10:00:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An endpoint as stored; `secret` and `previous_secret` are sealed (or `plain:`) text.
#[derive(Clone)]
pub struct EndpointRow {
    pub id: i64,
    pub app_id: i64,
    pub url: String,
    pub description: String,
    /// `events` or `jobs` (the app's HTTP jobs).
    pub purpose: String,
    pub event_types: Option<Vec<String>>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

type EndpointTuple = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    bool,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

const ENDPOINT_COLUMNS: &str = "id, app_id, url, description, purpose, event_types, secret, \
     previous_secret, previous_until, enabled, disabled_reason, failing_since, created_at, updated_at";

fn endpoint_row(t: EndpointTuple) -> EndpointRow {
    EndpointRow {
        id: t.0,
        app_id: t.1,
        url: t.2,
        description: t.3,
        purpose: t.4,
        event_types: t.5.and_then(|j| serde_json::from_str(&j).ok()),
        secret: t.6,
        previous_secret: t.7,
        previous_until: t.8,
        enabled: t.9,
        disabled_reason: t.10,
        failing_since: t.11,
        created_at: t.12,
        updated_at: t.13,
    }
}

/// A new endpoint's fields (the secret already sealed).
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    pub url: &'a str,
    /// `events` or `jobs`.
    pub purpose: &'a str,
    pub description: &'a str,
    pub event_types: Option<&'a [String]>,
    pub sealed_secret: &'a str,
}

pub async fn create_endpoint(
    db: &Db,
    app_id: i64,
    e: &NewEndpoint<'_>,
) -> Result<EndpointRow, sqlx::Error> {
    let now = now_ms();
    let types = e
        .event_types
        .map(|t| serde_json::to_string(t).expect("strings serialise"));
    let sql = format!(
        "INSERT INTO event_endpoints (app_id, url, description, purpose, event_types, secret, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {ENDPOINT_COLUMNS}"
    );
    let row: EndpointTuple = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(e.url).bind(e.description).bind(e.purpose).bind(types)
        .bind(e.sealed_secret).bind(now)
        .fetch_one(c).await)?;
    Ok(endpoint_row(row))
}

pub async fn endpoints(db: &Db, app_id: i64) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let sql =
        format!("SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE app_id = $1 ORDER BY id");
    let rows: Vec<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).fetch_all(c).await)?;
    Ok(rows.into_iter().map(endpoint_row).collect())
}

pub async fn endpoint(db: &Db, app_id: i64, id: i64) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql =
        format!("SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE app_id = $1 AND id = $2");
    let row: Option<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).fetch_optional(c).await)?;
    Ok(row.map(endpoint_row))
}

/// The app's endpoint for its HTTP jobs, if it registered one.
pub async fn jobs_endpoint(db: &Db, app_id: i64) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE app_id = $1 AND purpose = 'jobs'"
    );
    let row: Option<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).fetch_optional(c).await)?;
    Ok(row.map(endpoint_row))
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch<'a> {
    pub url: Option<&'a str>,
    pub description: Option<&'a str>,
    /// `Some(None)`: every type.
    pub event_types: Option<Option<&'a [String]>>,
    pub enabled: Option<bool>,
}

pub async fn update_endpoint(
    db: &Db,
    app_id: i64,
    id: i64,
    p: &EndpointPatch<'_>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let types = p
        .event_types
        .map(|t| t.map(|t| serde_json::to_string(t).expect("strings serialise")));
    let sql = format!(
        "UPDATE event_endpoints SET url = COALESCE($3, url), \
         description = COALESCE($4, description), \
         event_types = CASE WHEN $5 THEN $6 ELSE event_types END, \
         enabled = COALESCE($7, enabled), \
         disabled_reason = CASE WHEN $7 IS NULL THEN disabled_reason WHEN $7 THEN NULL ELSE 'disabled by an operator' END, \
         failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END, \
         updated_at = $8 WHERE app_id = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
    );
    let row: Option<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).bind(p.url).bind(p.description)
        .bind(types.is_some()).bind(types.flatten()).bind(p.enabled).bind(now_ms())
        .fetch_optional(c).await)?;
    Ok(row.map(endpoint_row))
}

/// Deletes an endpoint with its deliveries and attempts.
pub async fn delete_endpoint(db: &Db, app_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "DELETE FROM event_endpoints WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Puts a new secret in place; the old one keeps signing until `previous_until`.
pub async fn rotate_secret(
    db: &Db,
    app_id: i64,
    id: i64,
    sealed_secret: &str,
    previous_until: i64,
) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE event_endpoints SET previous_secret = secret, previous_until = $3, secret = $4, \
         updated_at = $5 WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).bind(previous_until).bind(sealed_secret).bind(now_ms())
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

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

/// Disables an endpoint for `reason`; true if it was enabled.
pub async fn disable_endpoint(
    db: &Db,
    app_id: i64,
    id: i64,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE event_endpoints SET enabled = FALSE, disabled_reason = $3, updated_at = $4 \
         WHERE app_id = $1 AND id = $2 AND enabled")
        .bind(app_id).bind(id).bind(reason).bind(now_ms())
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
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

//! Outbound events: the outbox (an event is written in the transaction of the change that
//! causes it, with the job that fans it out), the app's endpoints ([`endpoints`]), one delivery
//! per event and endpoint and every attempt ([`deliveries`]) — docs/events.md.

mod deliveries;
mod endpoints;

pub use deliveries::*;
pub use endpoints::*;

use serde::Serialize;

use crate::domain::events::EventType;
use crate::store::jobs::queue::{self, NewJob};
use crate::store::scope::{self, Scope};
use crate::store::{Tx, now_ms};
use crate::tx_run;

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

//! Usage records: one row per AI call through the gateway, written after its hold is settled.

use serde::Serialize;

use crate::scoped_run;
use crate::store::ledger::Target;
use crate::store::scope::Scope;
use crate::store::{Db, Tx, now_ms};

/// What one call used and cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageRecord {
    pub id: i64,
    pub request_id: String,
    /// The name the client asked for (after fallbacks: the model that answered).
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    /// Micro-credits charged.
    pub cost_micros: i64,
    pub hold_id: Option<i64>,
    /// `ok`, `client_disconnected`, `upstream_broken`, or `expired` (the call's process died
    /// and the expiry job settled its hold; its tokens are then estimated).
    pub status: String,
    /// Tokens were estimated because the provider reported no usage.
    pub estimated: bool,
    pub stream: bool,
    pub latency_ms: i64,
    /// Time to the first streamed token.
    pub ttft_ms: Option<i64>,
    pub created_at: i64,
}

/// What an AI call's hold is for, kept on the hold (`credit_holds.call`) and brought up to date
/// as the call streams, so that a call cut by a crash still leaves a usage record when the
/// expiry job settles its hold. The tokens are estimates until the provider reports usage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallDetails {
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl CallDetails {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain fields serialize")
    }

    /// The record of a call whose hold the expiry job resolved at `cost`: its process died
    /// before it could write its own.
    pub fn expired_record(
        &self,
        request_id: String,
        hold_id: i64,
        cost: i64,
        latency_ms: i64,
    ) -> NewUsage {
        NewUsage {
            request_id,
            model: self.model.clone(),
            provider: self.provider.clone().into(),
            upstream_model: self.upstream_model.clone(),
            input_tokens: self.input_tokens,
            cached_input_tokens: 0,
            output_tokens: self.output_tokens,
            cost,
            hold_id: Some(hold_id),
            status: "expired",
            estimated: true,
            stream: self.stream,
            latency_ms,
            ttft_ms: None,
        }
    }
}

/// A record to write; `id` and `created_at` are assigned. Owned: it travels to the ledger's
/// batch writer.
#[derive(Debug, Clone)]
pub struct NewUsage {
    pub request_id: String,
    pub model: String,
    /// Borrowed on the hot path; owned when read back from a hold.
    pub provider: std::borrow::Cow<'static, str>,
    pub upstream_model: String,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost: i64,
    pub hold_id: Option<i64>,
    pub status: &'static str,
    pub estimated: bool,
    pub stream: bool,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
}

/// Writes records of app `app_id` in the caller's (scoped) transaction, in one statement.
pub async fn insert_tx(
    tx: &mut Tx,
    app_id: i64,
    rows: &[(i64, &NewUsage)],
) -> Result<(), sqlx::Error> {
    let mut writes = crate::store::bulk::Writes::new();
    insert_into(&mut writes, rows);
    writes.run(tx, app_id, now_ms()).await
}

/// [`insert_tx`], queued: `(user id, record)` of the app the writes run for (`$1`, also the
/// scope row-level security checks the rows against).
pub fn insert_into(writes: &mut crate::store::bulk::Writes, rows: &[(i64, &NewUsage)]) {
    static INSERT: crate::store::bulk::JsonSql = crate::store::bulk::JsonSql::new(
        3,
        "INSERT INTO usage_records (app_id, user_id, request_id, model, provider, upstream_model, \
         input_tokens, cached_input_tokens, output_tokens, cost, hold_id, status, estimated, \
         stream, latency_ms, ttft_ms, created_at) \
         SELECT $1, CAST(x.value->>0 AS BIGINT), x.value->>1, \
         x.value->>2, x.value->>3, x.value->>4, CAST(x.value->>5 AS BIGINT), \
         CAST(x.value->>6 AS BIGINT), CAST(x.value->>7 AS BIGINT), CAST(x.value->>8 AS BIGINT), \
         CAST(x.value->>9 AS BIGINT), x.value->>10, CAST(x.value->>11 AS BOOLEAN), \
         CAST(x.value->>12 AS BOOLEAN), CAST(x.value->>13 AS BIGINT), \
         CAST(x.value->>14 AS BIGINT), $2 FROM {rows} ORDER BY x.key",
    );
    if rows.is_empty() {
        return;
    }
    let json = crate::store::bulk::rows_json(rows.iter().map(|(user_id, u)| {
        (
            user_id,
            &u.request_id,
            &u.model,
            u.provider.as_ref(),
            &u.upstream_model,
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens,
            u.cost,
            u.hold_id,
            u.status,
            u.estimated,
            u.stream,
            u.latency_ms,
            u.ttft_ms,
        )
    }));
    writes.push(&INSERT, json);
}

type UsageTuple = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    bool,
    bool,
    i64,
    Option<i64>,
    i64,
);

/// The user's records, newest first, before the cursor `before` (an id).
pub async fn list(
    db: &Db,
    t: Target,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<UsageRecord>, sqlx::Error> {
    let rows: Vec<UsageTuple> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(
        "SELECT id, request_id, model, provider, upstream_model, input_tokens, \
         cached_input_tokens, output_tokens, cost, hold_id, status, estimated, stream, \
         latency_ms, ttft_ms, created_at FROM usage_records \
         WHERE app_id = $1 AND user_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4")
        .bind(t.app_id).bind(t.user_id).bind(before.unwrap_or(i64::MAX)).bind(limit)
        .fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|r| UsageRecord {
            id: r.0,
            request_id: r.1,
            model: r.2,
            provider: r.3,
            upstream_model: r.4,
            input_tokens: r.5,
            cached_input_tokens: r.6,
            output_tokens: r.7,
            cost_micros: r.8,
            hold_id: r.9,
            status: r.10,
            estimated: r.11,
            stream: r.12,
            latency_ms: r.13,
            ttft_ms: r.14,
            created_at: r.15,
        })
        .collect())
}

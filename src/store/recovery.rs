//! Recovery cases (docs/recovery.md): a payment outcome applied to the user's cases in the
//! transaction that records it, by the store's event times ([`crate::domain::recovery`]); the
//! sweep that loses cases whose window passed. Each change publishes its event.

use serde::Serialize;

use crate::domain::events::{EventType, RecoveryCase};
use crate::domain::recovery::{CaseState, attributes, belongs_to_closed};
use crate::store::events::{Outgoing, publish};
use crate::store::ledger::Target;
use crate::store::scope::{self, Scope};
use crate::store::{Db, Tx, now_ms};
use crate::{scoped_run, tx_run};

/// A payment outcome as recovery sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub provider: &'a str,
    pub failed: bool,
    /// '' when the store named no subscription.
    pub subscription: &'a str,
    pub amount_minor: Option<i64>,
    pub currency: Option<&'a str>,
    /// The store's time for it.
    pub event_time: i64,
    /// The app's window, for a case this opens.
    pub window_ms: i64,
    /// Whether the app gives an incentive when a case is recovered.
    pub incentive: bool,
}

/// A case as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseRow {
    pub id: i64,
    #[serde(skip)]
    pub user_id: i64,
    pub provider: String,
    pub subscription_id: String,
    pub state: String,
    pub first_failure_at: i64,
    pub last_failure_at: i64,
    pub attempts: i64,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub window_ms: i64,
    pub recovered_at: Option<i64>,
    pub recovered_amount_minor: Option<i64>,
    /// When it was recovered, lost or canceled.
    pub closed_at: Option<i64>,
}

type CaseTuple = (
    i64,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const COLUMNS: &str = "id, user_id, provider, subscription_id, state, first_failure_at, \
     last_failure_at, attempts, amount_minor, currency, window_ms, recovered_at, recovered_amount_minor, \
     closed_at";

fn case_row(t: CaseTuple) -> CaseRow {
    CaseRow {
        id: t.0,
        user_id: t.1,
        provider: t.2,
        subscription_id: t.3,
        state: t.4,
        first_failure_at: t.5,
        last_failure_at: t.6,
        attempts: t.7,
        amount_minor: t.8,
        currency: t.9,
        window_ms: t.10,
        recovered_at: t.11,
        recovered_amount_minor: t.12,
        closed_at: t.13,
    }
}

/// The user's cases for one store subscription, oldest first.
async fn cases_of(tx: &mut Tx, t: Target, o: &Outcome<'_>) -> Result<Vec<CaseRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recovery_cases WHERE app_id = $1 AND user_id = $2 AND provider = $3 \
         AND subscription_id = $4 ORDER BY first_failure_at, id"
    );
    let rows: Vec<CaseTuple> = tx_run!(&mut *tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(t.app_id).bind(t.user_id).bind(o.provider).bind(o.subscription)
        .fetch_all(&mut **c).await)?;
    Ok(rows.into_iter().map(case_row).collect())
}

/// Applies a payment outcome to the user's cases, in the caller's transaction (the one that
/// records the outcome, so a redelivered outcome, recorded once, is applied once).
pub async fn apply(tx: &mut Tx, t: Target, o: &Outcome<'_>) -> Result<(), sqlx::Error> {
    scope::apply_tx(tx, Scope::App(t.app_id)).await?;
    lock_user(tx, t).await?;
    let cases = cases_of(tx, t, o).await?;
    let now = now_ms();
    if !o.failed {
        // The earliest case this payment falls in the window of — open, or lost by the sweep
        // before this (late) payment arrived.
        let recovers = cases.iter().find(|c| {
            [CaseState::Open, CaseState::Lost]
                .iter()
                .any(|s| s.as_str() == c.state)
                && attributes(c.first_failure_at, c.window_ms, o.event_time)
        });
        if let Some(c) = recovers {
            recover(
                tx,
                t,
                c.id,
                (o.event_time, o.amount_minor),
                o.incentive,
                now,
            )
            .await?;
        }
        return Ok(());
    }
    if let Some(open) = cases.iter().find(|c| c.state == CaseState::Open.as_str()) {
        tx_run!(&mut *tx, c => sqlx::query(
            "UPDATE recovery_cases SET attempts = attempts + 1, \
             first_failure_at = CASE WHEN $3 < first_failure_at THEN $3 ELSE first_failure_at END, \
             last_failure_at = CASE WHEN $3 > last_failure_at THEN $3 ELSE last_failure_at END, \
             amount_minor = COALESCE($4, amount_minor), currency = COALESCE($5, currency), updated_at = $6 \
             WHERE app_id = $1 AND id = $2")
            .bind(t.app_id).bind(open.id).bind(o.event_time).bind(o.amount_minor).bind(o.currency)
            .bind(now).execute(&mut **c).await.map(|_| ()))?;
        return Ok(());
    }
    if let Some(closed) = cases.iter().find(|c| {
        belongs_to_closed(
            c.first_failure_at,
            c.window_ms,
            c.recovered_at,
            o.event_time,
        )
    }) {
        // A retry of a payment whose case is settled already: counted, nothing reopens.
        tx_run!(&mut *tx, c => sqlx::query(
            "UPDATE recovery_cases SET attempts = attempts + 1, updated_at = $3 WHERE app_id = $1 AND id = $2")
            .bind(t.app_id).bind(closed.id).bind(now).execute(&mut **c).await.map(|_| ()))?;
        return Ok(());
    }
    let id: i64 = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "INSERT INTO recovery_cases (app_id, user_id, provider, subscription_id, state, first_failure_at, \
         last_failure_at, attempts, amount_minor, currency, window_ms, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'open', $5, $5, 1, $6, $7, $8, $9, $9) RETURNING id")
        .bind(t.app_id).bind(t.user_id).bind(o.provider).bind(o.subscription).bind(o.event_time)
        .bind(o.amount_minor).bind(o.currency).bind(o.window_ms).bind(now)
        .fetch_one(&mut **c).await)?;
    announce(tx, t.app_id, id, EventType::RecoveryCaseOpened).await?;
    // Stores do not deliver in order: the payment that recovers this case may be here already.
    let paid: Option<(i64, Option<i64>)> = tx_run!(&mut *tx, c => sqlx::query_as(
        "SELECT event_time, amount_minor FROM payment_events WHERE app_id = $1 AND user_id = $2 \
         AND provider = $3 AND subscription_id = $4 AND kind = 'payment_succeeded' \
         AND event_time >= $5 AND event_time <= $6 ORDER BY event_time LIMIT 1")
        .bind(t.app_id).bind(t.user_id).bind(o.provider).bind(o.subscription).bind(o.event_time)
        .bind(o.event_time.saturating_add(o.window_ms)).fetch_optional(&mut **c).await)?;
    if let Some((at, amount)) = paid {
        recover(tx, t, id, (at, amount), o.incentive, now).await?;
    }
    Ok(())
}

/// Makes a user's outcomes apply one at a time. The worker runs deliveries side by side, and
/// on PostgreSQL a failure's transaction and its payment's cannot see each other's uncommitted
/// rows: each would find nothing to pair with, and the case would stay open. Locking the user
/// row makes the later one wait and then read what the earlier committed. `NO KEY UPDATE`, not
/// `UPDATE`: both transactions already hold the key-share lock their inserted rows' foreign keys
/// took on the user, which `FOR UPDATE` would wait on — a deadlock. SQLite's transactions
/// already hold the write lock from their first statement.
async fn lock_user(tx: &mut Tx, t: Target) -> Result<(), sqlx::Error> {
    if let Tx::Postgres(c) = tx {
        sqlx::query("SELECT 1 FROM users WHERE app_id = $1 AND id = $2 FOR NO KEY UPDATE")
            .bind(t.app_id)
            .bind(t.user_id)
            .execute(&mut **c)
            .await?;
    }
    Ok(())
}

async fn recover(
    tx: &mut Tx,
    t: Target,
    id: i64,
    paid: (i64, Option<i64>),
    incentive: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (at, amount) = paid;
    tx_run!(&mut *tx, c => sqlx::query(
        "UPDATE recovery_cases SET state = 'recovered', recovered_at = $3, recovered_amount_minor = $4, \
         closed_at = $5, updated_at = $5 WHERE app_id = $1 AND id = $2")
        .bind(t.app_id).bind(id).bind(at).bind(amount).bind(now)
        .execute(&mut **c).await.map(|_| ()))?;
    if incentive {
        enqueue_incentive(tx, t.app_id, id).await?;
    }
    announce(tx, t.app_id, id, EventType::RecoveryRecovered).await
}

/// The incentive job's kind (`jobs::kinds::recovery::ApplyIncentive`).
pub const INCENTIVE_KIND: &str = "recovery.incentive";

/// Enqueues the job that gives case `id`'s incentive, in the recovery's transaction: the
/// incentive follows the recovery or neither happens. Unique per case while unfinished; the
/// job itself gives once (see [`record_incentive`]).
async fn enqueue_incentive(tx: &mut Tx, app_id: i64, id: i64) -> Result<(), sqlx::Error> {
    let args = serde_json::json!({ "app": app_id, "case": id });
    let unique = format!("incentive:{id}");
    crate::store::jobs::queue::insert_follow_up(tx, INCENTIVE_KIND, &args, Some(&unique)).await
}

/// What a case's incentive was: free days and credits given, and when (none until given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Incentive {
    pub days: i64,
    pub credits_micros: i64,
    pub applied_at: i64,
}

/// Case `id`'s incentive, once given.
pub async fn incentive(db: &Db, app_id: i64, id: i64) -> Result<Option<Incentive>, sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT incentive_days, incentive_credits, incentive_applied_at FROM recovery_cases \
         WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).fetch_optional(c).await)?;
    Ok(row.and_then(|(days, credits, at)| {
        at.map(|applied_at| Incentive {
            days: days.unwrap_or(0),
            credits_micros: credits.unwrap_or(0),
            applied_at,
        })
    }))
}

/// Records case `id`'s incentive as given; false if it was recorded before.
pub async fn record_incentive(
    db: &Db,
    app_id: i64,
    id: i64,
    given: &Incentive,
) -> Result<bool, sqlx::Error> {
    scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE recovery_cases SET incentive_days = $3, incentive_credits = $4, \
         incentive_applied_at = $5, updated_at = $5 WHERE app_id = $1 AND id = $2 \
         AND incentive_applied_at IS NULL")
        .bind(app_id).bind(id).bind(given.days).bind(given.credits_micros).bind(given.applied_at)
        .execute(c).await.map(|r| r.rows_affected() == 1))
}

/// Publishes the case's event with its state as it is now.
async fn announce(tx: &mut Tx, app_id: i64, id: i64, kind: EventType) -> Result<(), sqlx::Error> {
    let c = case_in(tx, app_id, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let data = RecoveryCase {
        user_id: String::new(),
        case_id: c.id,
        provider: c.provider.clone(),
        subscription_id: c.subscription_id.clone(),
        state: c.state.clone(),
        first_failure_at: c.first_failure_at,
        attempts: c.attempts,
        amount_minor: c.amount_minor,
        currency: c.currency.clone(),
        recovered_at: c.recovered_at,
        recovered_amount_minor: c.recovered_amount_minor,
    };
    // A case opens, recovers and is lost once each — but a lost case can still be recovered by
    // a late payment, so the key names the transition.
    let key = format!("{}:{}", kind.as_str(), c.id);
    let e = Outgoing::about(kind, c.user_id, key, data);
    if publish(tx, app_id, &e).await?.is_some() {
        // Counted with the transition's event (once per transition, as the event is).
        metrics::counter!(CASES, "transition" => kind.as_str()).increment(1);
        if let (EventType::RecoveryRecovered, Some(amount), Some(currency)) =
            (kind, c.recovered_amount_minor, c.currency.as_deref())
        {
            metrics::counter!(RECOVERED_REVENUE, "currency" => currency.to_ascii_lowercase())
                .increment(amount.max(0) as u64);
        }
    }
    Ok(())
}

/// `tollgate_recovery_cases_total{transition}`: cases opened, recovered, lost, canceled.
pub const CASES: &str = "tollgate_recovery_cases_total";
/// `tollgate_recovery_recovered_revenue_minor_total{currency}`: recovered amounts, minor units.
pub const RECOVERED_REVENUE: &str = "tollgate_recovery_recovered_revenue_minor_total";

/// Registers the help texts.
pub fn describe_metrics() {
    metrics::describe_counter!(
        CASES,
        "Recovery case transitions, by event (recovery.case_opened, recovery.recovered, recovery.lost, recovery.canceled)."
    );
    metrics::describe_counter!(
        RECOVERED_REVENUE,
        "Recovered payment amounts in minor units (cents), by currency; never summed across currencies."
    );
}

/// Loses open cases whose window has passed by `now`, or whose subscription has ended; returns
/// how many. Across apps, each case in its own app's transaction.
pub async fn sweep(db: &Db, now: i64, limit: i64) -> Result<usize, sqlx::Error> {
    let due: Vec<(i64, i64)> = scoped_run!(db, Scope::AllApps, c => sqlx::query_as(
        "SELECT c.app_id, c.id FROM recovery_cases c WHERE c.state = 'open' \
         AND (c.first_failure_at + c.window_ms < $1 OR EXISTS (SELECT 1 FROM subscriptions s \
           WHERE s.app_id = c.app_id AND s.provider = c.provider AND s.provider_id = c.subscription_id \
           AND s.status = 'expired')) \
         ORDER BY c.first_failure_at LIMIT $2")
        .bind(now).bind(limit).fetch_all(c).await)?;
    let mut lost = 0;
    for (app_id, id) in due {
        let mut tx = db.begin().await?;
        scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
        if close_open(&mut tx, app_id, id, CaseState::Lost, now).await? {
            lost += 1;
        }
        tx.commit().await?;
    }
    Ok(lost)
}

/// Closes case `id` as `to` (lost or canceled) if it is open, publishing its event, in the
/// caller's transaction; false if it was not open.
async fn close_open(
    tx: &mut Tx,
    app_id: i64,
    id: i64,
    to: CaseState,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let event = match to {
        CaseState::Lost => EventType::RecoveryLost,
        CaseState::Canceled => EventType::RecoveryCanceled,
        other => unreachable!("a case is closed as lost or canceled, not {other:?}"),
    };
    let n = tx_run!(&mut *tx, c => sqlx::query(
        "UPDATE recovery_cases SET state = $4, closed_at = $3, updated_at = $3 \
         WHERE app_id = $1 AND id = $2 AND state = 'open'")
        .bind(app_id).bind(id).bind(now).bind(to.as_str())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    if n == 1 {
        announce(tx, app_id, id, event).await?;
    }
    Ok(n == 1)
}

/// What an operator's (or the app's) close of a case came to.
#[derive(Debug)]
pub enum Closed {
    Closed(CaseRow),
    /// It was not open: nothing changed.
    NotOpen(CaseRow),
    NotFound,
}

/// Closes an open case of the app as `to` (lost or canceled), with its audit entry in the same
/// transaction.
pub async fn close(
    db: &Db,
    app_id: i64,
    id: i64,
    to: CaseState,
    audit: &crate::store::identity::NewAudit<'_>,
) -> Result<Closed, sqlx::Error> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    // The action first, then what it did: the timeline reads them in that order. Nothing
    // closed, nothing is committed (the audit entry goes with the rollback).
    crate::store::identity::record_audit_tx(&mut tx, audit).await?;
    let closed = close_open(&mut tx, app_id, id, to, now_ms()).await?;
    let row = case_in(&mut tx, app_id, id).await?;
    if closed {
        tx.commit().await?;
    }
    Ok(match (row, closed) {
        (None, _) => Closed::NotFound,
        (Some(c), true) => Closed::Closed(c),
        (Some(c), false) => Closed::NotOpen(c),
    })
}

async fn case_in(tx: &mut Tx, app_id: i64, id: i64) -> Result<Option<CaseRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM recovery_cases WHERE app_id = $1 AND id = $2");
    let row: Option<CaseTuple> = tx_run!(&mut *tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).fetch_optional(&mut **c).await)?;
    Ok(row.map(case_row))
}

/// Case `id` of the app.
pub async fn case(db: &Db, app_id: i64, id: i64) -> Result<Option<CaseRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM recovery_cases WHERE app_id = $1 AND id = $2");
    let row: Option<CaseTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).fetch_optional(c).await)?;
    Ok(row.map(case_row))
}

/// A user's cases, newest first (tests and the tenant API to come).
pub async fn cases(db: &Db, t: Target) -> Result<Vec<CaseRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recovery_cases WHERE app_id = $1 AND user_id = $2 ORDER BY id DESC"
    );
    let rows: Vec<CaseTuple> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(t.app_id).bind(t.user_id).fetch_all(c).await)?;
    Ok(rows.into_iter().map(case_row).collect())
}

/// Recovery's numbers over cases whose first failure is in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Kpis {
    pub from: i64,
    pub to: i64,
    pub opened: i64,
    /// Still open.
    pub active: i64,
    pub recovered: i64,
    pub lost: i64,
    pub canceled: i64,
    /// recovered / (recovered + lost), in basis points (10000 = every settled case recovered);
    /// absent while none is settled.
    pub recovery_rate_bps: Option<i64>,
    /// Recovered amounts, per currency, in the currency's minor unit.
    pub recovered_revenue: Vec<Revenue>,
    /// Each cadence step and copy variant: nudges sent, clicked, and their cases recovered.
    pub variants: Vec<crate::store::nudges::VariantStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Revenue {
    pub currency: String,
    pub amount_minor: i64,
}

pub async fn kpis(db: &Db, app_id: i64, from: i64, to: i64) -> Result<Kpis, sqlx::Error> {
    let by_state: Vec<(String, i64)> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT state, COUNT(*) FROM recovery_cases WHERE app_id = $1 AND first_failure_at >= $2 \
         AND first_failure_at < $3 GROUP BY state")
        .bind(app_id).bind(from).bind(to).fetch_all(c).await)?;
    let revenue: Vec<(String, i64)> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT COALESCE(currency, ''), CAST(SUM(COALESCE(recovered_amount_minor, 0)) AS BIGINT) \
         FROM recovery_cases WHERE app_id = $1 AND state = 'recovered' AND first_failure_at >= $2 \
         AND first_failure_at < $3 GROUP BY COALESCE(currency, '') ORDER BY 1")
        .bind(app_id).bind(from).bind(to).fetch_all(c).await)?;
    let n = |s: CaseState| {
        by_state
            .iter()
            .find(|(state, _)| state == s.as_str())
            .map_or(0, |(_, n)| *n)
    };
    let (recovered, lost) = (n(CaseState::Recovered), n(CaseState::Lost));
    let variants = crate::store::nudges::variant_stats(db, app_id, from, to).await?;
    Ok(Kpis {
        variants,
        from,
        to,
        opened: by_state.iter().map(|(_, n)| n).sum(),
        active: n(CaseState::Open),
        recovered,
        lost,
        canceled: n(CaseState::Canceled),
        recovery_rate_bps: (recovered + lost > 0).then(|| recovered * 10_000 / (recovered + lost)),
        recovered_revenue: revenue
            .into_iter()
            .map(|(currency, amount_minor)| Revenue {
                currency,
                amount_minor,
            })
            .collect(),
    })
}

/// An app's cases, newest first, older than `before`, optionally in one state.
pub async fn app_cases(
    db: &Db,
    app_id: i64,
    state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<CaseRow>, sqlx::Error> {
    let filter = CaseFilter {
        state,
        ..Default::default()
    };
    Ok(app_cases_with_users(db, app_id, &filter, before, limit)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect())
}

/// Which of an app's cases a list or an export takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaseFilter<'a> {
    pub state: Option<&'a str>,
    /// The user's external id.
    pub user: Option<&'a str>,
    /// First failure at or after this (ms).
    pub from: Option<i64>,
    /// … and before this.
    pub to: Option<i64>,
}

/// An app's cases with their users' external ids, newest first, older than `before`.
pub async fn app_cases_with_users(
    db: &Db,
    app_id: i64,
    f: &CaseFilter<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(CaseRow, Option<String>)>, sqlx::Error> {
    let columns: Vec<String> = COLUMNS
        .split(',')
        .map(|c| format!("c.{}", c.trim()))
        .collect();
    let sql = format!(
        "SELECT {}, u.external_id FROM recovery_cases c JOIN users u ON u.id = c.user_id \
         WHERE c.app_id = $1 AND ($2 IS NULL OR c.state = $2) AND ($3 IS NULL OR c.id < $3) \
         AND ($5 IS NULL OR u.external_id = $5) AND ($6 IS NULL OR c.first_failure_at >= $6) \
         AND ($7 IS NULL OR c.first_failure_at < $7) ORDER BY c.id DESC LIMIT $4",
        columns.join(", ")
    );
    type Row = (
        i64,
        i64,
        String,
        String,
        String,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<String>,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let rows: Vec<Row> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(f.state).bind(before).bind(limit).bind(f.user).bind(f.from).bind(f.to)
        .fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let t = (
                r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13,
            );
            (case_row(t), r.14)
        })
        .collect())
}

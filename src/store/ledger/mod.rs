//! The credit ledger: append-only entries, grant buckets, holds and the cached balance.
//!
//! Every write is one transaction that first locks the user's `credit_accounts` row (an
//! `UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so writes for one user are serialised
//! and the checks made under the lock hold until commit. In that transaction the entry is
//! appended and the balance, held total and buckets are updated together: they cannot drift.
//! Invariants (`tollgate ledger verify` recomputes them): balance = Σ entry amounts; held = Σ
//! entry held = Σ open holds; Σ bucket remaining = max(balance, 0); balance − held ≥ −overdraft.

mod batch;
mod clawback;
mod holds;
pub mod metrics;
mod period;
mod read;
mod snapshot;

pub use batch::{Batcher, CallClose, CallHold};
pub use clawback::{Clawback, Refunded, claw_back};
pub use holds::{
    HoldRow, Resolution, close_call, expire_holds, record_progress, record_usage, release, reserve,
    settle,
};
pub use period::{
    CallPlan, GrantedKeys, PlanCache, PlanColumns, UserPlan, existing_keys, grant_period_credits,
    period_key, plan_columns, refresh, refresh_for_charge, set_plan, user_plan, users_page,
};
pub use read::{Balances, Bucket, Mismatch, balances, entries, has_expired_grants, verify};
pub use snapshot::{Snapshot, snapshot};

use serde::Serialize;

use crate::store::identity::{NewAudit, record_audit_tx};
use crate::store::scope::{self, Scope};
use crate::store::{Db, Tx, is_unique_violation, now_ms};
use crate::tx_run;

/// Where granted credits come from (`credit_grants.source` of a `grant` entry).
pub const GRANT_SOURCES: [&str; 6] = [
    "monthly_free",
    "subscription",
    "top_up",
    "promo",
    "incentive",
    "manual",
];

/// Whose ledger: a user of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub app_id: i64,
    pub user_id: i64,
}

/// Why a ledger write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The balance (minus holds, plus any overdraft the plan allows) does not cover it.
    #[error("insufficient credits: {available} micro-credits available, {needed} needed")]
    Insufficient { available: i64, needed: i64 },
    #[error("{0}")]
    NotFound(String),
    /// The write contradicts the ledger's state (a hold already resolved another way, …).
    #[error("{0}")]
    Conflict(String),
    /// An AI call's hold was priced on plan columns the user no longer has.
    #[error("the user's plan changed while the call was being prepared")]
    PlanChanged,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A write that happened now, or the first one with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written<T> {
    New(T),
    Replayed(T),
}

impl<T> Written<T> {
    pub fn into_inner(self) -> T {
        match self {
            Written::New(t) | Written::Replayed(t) => t,
        }
    }

    pub fn is_replayed(&self) -> bool {
        matches!(self, Written::Replayed(_))
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRow {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    /// Change to the balance.
    pub amount: i64,
    /// Change to the held total.
    pub held: i64,
    pub balance_after: i64,
    pub grant_id: Option<i64>,
    pub hold_id: Option<i64>,
    pub source: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
}

type EntryTuple = (
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

const ENTRY_COLUMNS: &str = "id, user_id, kind, amount, held, balance_after, grant_id, hold_id, \
     source, reason, reference, idempotency_key, created_at";

fn entry_row(t: EntryTuple) -> EntryRow {
    EntryRow {
        id: t.0,
        user_id: t.1,
        kind: t.2,
        amount: t.3,
        held: t.4,
        balance_after: t.5,
        grant_id: t.6,
        hold_id: t.7,
        source: t.8,
        reason: t.9,
        reference: t.10,
        idempotency_key: t.11,
        created_at: t.12,
    }
}

/// What describes an entry besides its amounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Note<'a> {
    pub reason: Option<&'a str>,
    /// Request id, provider event id, operator, …
    pub reference: Option<&'a str>,
    /// Unique per app: the same key written twice is one entry.
    pub key: Option<&'a str>,
}

/// The locked account row.
#[derive(Debug, Clone, Copy)]
struct Account {
    balance: i64,
    held: i64,
}

/// Begins the user's ledger transaction: scoped to the app, account row created if missing and
/// locked.
async fn open(db: &Db, t: Target) -> Result<(Tx, Account), sqlx::Error> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let account = lock(&mut tx, t).await?;
    Ok((tx, account))
}

/// Creates the user's account row if missing and locks it, in an open scoped transaction.
async fn lock(tx: &mut Tx, t: Target) -> Result<Account, sqlx::Error> {
    // One statement creates the row if missing and locks it: the upsert's update takes the row
    // lock on PostgreSQL (SQLite's write lock is already held since BEGIN IMMEDIATE).
    let (balance, held): (i64, i64) = tx_run!(tx, c => sqlx::query_as(
        "INSERT INTO credit_accounts (user_id, app_id, balance, held, updated_at) \
         VALUES ($1, $2, 0, 0, $3) ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at \
         RETURNING balance, held")
        .bind(t.user_id).bind(t.app_id).bind(now_ms()).fetch_one(&mut **c).await)?;
    Ok(Account { balance, held })
}

async fn save(tx: &mut Tx, t: Target, a: Account) -> Result<(), sqlx::Error> {
    tx_run!(tx, c => sqlx::query(
        "UPDATE credit_accounts SET balance = $1, held = $2 WHERE user_id = $3 AND app_id = $4")
        .bind(a.balance).bind(a.held).bind(t.user_id).bind(t.app_id)
        .execute(&mut **c).await.map(|_| ()))
}

/// The entry already written under `key` in this app, if any.
async fn by_key(
    tx: &mut Tx,
    app_id: i64,
    key: Option<&str>,
) -> Result<Option<EntryRow>, sqlx::Error> {
    let Some(key) = key else { return Ok(None) };
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE app_id = $1 AND idempotency_key = $2"
    );
    let row: Option<EntryTuple> = tx_run!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(key).fetch_optional(&mut **c).await)?;
    Ok(row.map(entry_row))
}

/// An entry to append.
struct NewEntry<'a> {
    kind: &'static str,
    amount: i64,
    held: i64,
    grant_id: Option<i64>,
    hold_id: Option<i64>,
    source: Option<&'a str>,
    note: Note<'a>,
}

const INSERT_ENTRIES: &str = "INSERT INTO ledger_entries (app_id, user_id, kind, amount, held, \
     balance_after, grant_id, hold_id, source, reason, reference, idempotency_key, created_at) VALUES";

async fn append(
    tx: &mut Tx,
    t: Target,
    balance_after: i64,
    e: NewEntry<'_>,
) -> Result<EntryRow, sqlx::Error> {
    let sql = format!(
        "{INSERT_ENTRIES} ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         RETURNING {ENTRY_COLUMNS}"
    );
    let row: EntryTuple = tx_run!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(t.app_id).bind(t.user_id).bind(e.kind).bind(e.amount).bind(e.held)
        .bind(balance_after).bind(e.grant_id).bind(e.hold_id).bind(e.source)
        .bind(e.note.reason).bind(e.note.reference).bind(e.note.key).bind(now_ms())
        .fetch_one(&mut **c).await)?;
    // Counted when written; a rolled-back transaction overcounts, which is rare and harmless.
    metrics::entry(e.kind, e.amount);
    Ok(entry_row(row))
}

/// Commits `tx`, or, when the entry's key turned out to be taken by a concurrent writer (a
/// unique violation, possible only across users of one app), returns that first entry.
async fn finish<T>(
    db: &Db,
    t: Target,
    tx: Tx,
    result: Result<T, sqlx::Error>,
    key: Option<&str>,
    replayed: impl FnOnce(EntryRow) -> T,
) -> Result<Written<T>, LedgerError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(Written::New(value))
        }
        Err(e) if is_unique_violation(&e) && key.is_some() => {
            let _ = tx.rollback().await;
            let mut tx = db.begin().await?;
            scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
            let first = by_key(&mut tx, t.app_id, key).await?.ok_or(e)?;
            Ok(Written::Replayed(replayed(first)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes `amount` from the buckets, soonest-expiring first (never-expiring last). Stops when
/// they are empty: what is left is overdraft, owed and paid back by the next credit. Returns
/// whether a bucket it read is past its expiry (false: none is, as it reads soonest first).
async fn consume(tx: &mut Tx, t: Target, amount: i64) -> Result<bool, sqlx::Error> {
    let mut left = amount;
    let mut due = false;
    let now = now_ms();
    while left > 0 {
        let buckets: Vec<(i64, i64, Option<i64>)> = tx_run!(&mut *tx, c => sqlx::query_as(
            "SELECT id, remaining, expires_at FROM credit_grants WHERE user_id = $1 AND app_id = $2 \
             AND remaining > 0 ORDER BY expires_at IS NULL, expires_at, id LIMIT 100")
            .bind(t.user_id).bind(t.app_id).fetch_all(&mut **c).await)?;
        if buckets.is_empty() {
            break;
        }
        due |= buckets
            .iter()
            .any(|(_, _, at)| at.is_some_and(|at| at <= now));
        for (id, remaining, _) in buckets {
            let take = remaining.min(left);
            tx_run!(&mut *tx, c => sqlx::query(
                "UPDATE credit_grants SET remaining = remaining - $1 WHERE id = $2")
                .bind(take).bind(id).execute(&mut **c).await.map(|_| ()))?;
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    Ok(due)
}

/// Removes what is left of expired buckets with `expire` entries — except the part open holds
/// still need (a hold reserved before the expiry is settled from it; the rest expires later).
async fn expire_due(tx: &mut Tx, t: Target, a: &mut Account) -> Result<u32, sqlx::Error> {
    let due: Vec<(i64, i64)> = tx_run!(&mut *tx, c => sqlx::query_as(
        "SELECT id, remaining FROM credit_grants WHERE user_id = $1 AND app_id = $2 \
         AND remaining > 0 AND expires_at <= $3 ORDER BY expires_at, id")
        .bind(t.user_id).bind(t.app_id).bind(now_ms()).fetch_all(&mut **c).await)?;
    let mut written = 0;
    for (grant_id, remaining) in due {
        let take = remaining.min((a.balance - a.held).max(0));
        if take == 0 {
            break;
        }
        tx_run!(&mut *tx, c => sqlx::query(
            "UPDATE credit_grants SET remaining = remaining - $1 WHERE id = $2")
            .bind(take).bind(grant_id).execute(&mut **c).await.map(|_| ()))?;
        a.balance -= take;
        let entry = NewEntry {
            kind: "expire",
            amount: -take,
            held: 0,
            grant_id: Some(grant_id),
            hold_id: None,
            source: None,
            note: Note {
                reason: Some("grant expired"),
                ..Note::default()
            },
        };
        append(tx, t, a.balance, entry).await?;
        written += 1;
    }
    if written > 0 {
        save(tx, t, *a).await?;
    }
    Ok(written)
}

/// Expires the user's due buckets now (also done inside every charge). Returns entries written.
pub async fn expire_grants(db: &Db, t: Target) -> Result<u32, sqlx::Error> {
    let (mut tx, mut account) = open(db, t).await?;
    let n = expire_due(&mut tx, t, &mut account).await?;
    tx.commit().await?;
    Ok(n)
}

/// Users with buckets past their expiry (for the sweep job), at most `limit`.
pub async fn users_with_expired_grants(db: &Db, limit: i64) -> Result<Vec<Target>, sqlx::Error> {
    let rows: Vec<(i64, i64)> = crate::scoped_run!(db, Scope::AllApps, c => sqlx::query_as(
        "SELECT DISTINCT app_id, user_id FROM credit_grants g WHERE remaining > 0 AND expires_at <= $1 \
         AND (SELECT balance - held FROM credit_accounts a WHERE a.user_id = g.user_id) > 0 \
         LIMIT $2")
        .bind(now_ms()).bind(limit).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(app_id, user_id)| Target { app_id, user_id })
        .collect())
}

/// Credits added to a balance: a grant (with its source and optional expiry), a refund, or a
/// positive adjustment.
#[derive(Debug, Clone, Copy)]
pub struct Credit<'a> {
    /// `grant`, `refund` or `adjustment`.
    pub kind: &'static str,
    pub amount: i64,
    /// Grants: `monthly_free`, `subscription`, `top_up`, `promo`, `incentive`, `manual`.
    pub source: &'a str,
    pub expires_at: Option<i64>,
    pub note: Note<'a>,
}

/// Adds credits in a new bucket. If the balance was below zero (an overdraft), the debt is paid
/// first and the bucket holds the rest.
pub async fn credit(
    db: &Db,
    t: Target,
    c: &Credit<'_>,
    audit: Option<&NewAudit<'_>>,
) -> Result<Written<EntryRow>, LedgerError> {
    debug_assert!(c.amount > 0);
    let (mut tx, mut account) = open(db, t).await?;
    if let Some(first) = by_key(&mut tx, t.app_id, c.note.key).await? {
        return Ok(Written::Replayed(first));
    }
    let Some(balance) = account.balance.checked_add(c.amount) else {
        return Err(LedgerError::Conflict(format!(
            "the balance would pass the largest amount a ledger keeps ({} micro-credits)",
            i64::MAX
        )));
    };
    let result = async {
        account.balance = balance;
        let remaining = c.amount.min(account.balance.max(0));
        let grant_id: i64 = tx_run!(&mut tx, x => sqlx::query_scalar(
            "INSERT INTO credit_grants (app_id, user_id, source, amount, remaining, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id")
            .bind(t.app_id).bind(t.user_id).bind(c.source).bind(c.amount).bind(remaining)
            .bind(c.expires_at).bind(now_ms()).fetch_one(&mut **x).await)?;
        save(&mut tx, t, account).await?;
        let entry = NewEntry {
            kind: c.kind,
            amount: c.amount,
            held: 0,
            grant_id: Some(grant_id),
            hold_id: None,
            source: Some(c.source),
            note: c.note,
        };
        let row = append(&mut tx, t, account.balance, entry).await?;
        if let Some(a) = audit {
            record_audit_tx(&mut tx, a).await?;
        }
        Ok(row)
    }
    .await;
    finish(db, t, tx, result, c.note.key, |e| e).await
}

/// Credits taken from a balance at once: a `debit` (usage known up front) or a negative
/// `adjustment`. Refused when `balance − held − amount` would fall below `−overdraft`.
pub async fn charge(
    db: &Db,
    t: Target,
    kind: &'static str,
    amount: i64,
    overdraft: i64,
    note: Note<'_>,
    audit: Option<&NewAudit<'_>>,
) -> Result<Written<EntryRow>, LedgerError> {
    debug_assert!(amount > 0);
    let (mut tx, mut account) = open(db, t).await?;
    if let Some(first) = by_key(&mut tx, t.app_id, note.key).await? {
        return Ok(Written::Replayed(first));
    }
    expire_due(&mut tx, t, &mut account).await?;
    let available = account.balance - account.held;
    if available - amount < -overdraft {
        // The expiry entries just written still count: they are facts whatever happens next.
        tx.commit().await?;
        metrics::refused(kind);
        return Err(LedgerError::Insufficient {
            available,
            needed: amount,
        });
    }
    let result = async {
        account.balance -= amount;
        consume(&mut tx, t, amount).await?;
        save(&mut tx, t, account).await?;
        let entry = NewEntry {
            kind,
            amount: -amount,
            held: 0,
            grant_id: None,
            hold_id: None,
            source: None,
            note,
        };
        let row = append(&mut tx, t, account.balance, entry).await?;
        if let Some(a) = audit {
            record_audit_tx(&mut tx, a).await?;
        }
        Ok(row)
    }
    .await;
    finish(db, t, tx, result, note.key, |e| e).await
}

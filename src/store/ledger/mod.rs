//! The credit ledger: append-only entries, grant buckets, holds and the cached balance.
//!
//! Every write is one transaction that first locks the user's `credit_accounts` row (an
//! `UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so writes for one user are serialised
//! and the checks made under the lock hold until commit. In that transaction the entry is
//! appended and the balance, held total and buckets are updated together: they cannot drift.
//! Invariants (`tollgate ledger verify` recomputes them): balance = Σ entry amounts; held = Σ
//! entry held = Σ open holds; Σ bucket remaining = max(balance, 0); balance − held ≥ −overdraft.

mod account;
mod batch;
mod clawback;
mod holds;
pub mod metrics;
mod period;
mod read;
mod snapshot;

pub use batch::Batcher;
pub use clawback::{Clawback, Refunded, claw_back};
pub use holds::{
    CallClose, CallHold, HoldRow, close_call, expire_holds, hold, record_progress, record_usage,
    release, reserve, settle,
};
pub use period::{
    CallPlan, GrantedKeys, PlanCache, PlanColumns, UserPlan, existing_keys, grant_period_credits,
    period_key, plan_columns, refresh, refresh_for_charge, set_plan, user_plan, users_page,
};
pub use read::{Balances, Bucket, Mismatch, balances, entries, has_expired_grants, verify};
pub use snapshot::{Snapshot, snapshot};

use std::borrow::Cow;

use serde::Serialize;

use crate::domain::events::EventType;
use crate::domain::ledger::{self as rules, Account, Entry, Refusal};
pub use crate::domain::ledger::{EntryKind, HoldState};
use crate::store::events::Outgoing;
use crate::store::identity::{NewAudit, record_audit_tx};
use crate::store::scope::{self, Scope};
use crate::store::{Db, Tx, is_unique_violation, now_ms};
use crate::tx_run;
use account::NewEntry;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Begins the user's ledger transaction: scoped to the app, the account locked and loaded.
async fn open(db: &Db, t: Target) -> Result<(Tx, Account), sqlx::Error> {
    let (tx, loaded) = open_with(db, t, account::Reads::default()).await?;
    Ok((tx, loaded.account))
}

/// What [`open_with`] loaded: the user's account and what the reads asked for.
struct Opened {
    account: Account,
    hold_ids: Vec<i64>,
}

/// [`open`], reading `reads` in the same statement.
async fn open_with(
    db: &Db,
    t: Target,
    reads: account::Reads<'_>,
) -> Result<(Tx, Opened), sqlx::Error> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let mut loaded = account::load(&mut tx, t.app_id, &[t.user_id], reads).await?;
    let opened = Opened {
        account: loaded.take(t.user_id)?,
        hold_ids: loaded.hold_ids,
    };
    Ok((tx, opened))
}

/// Saves one user's account and appends its entries.
async fn save_one(
    tx: &mut Tx,
    t: Target,
    a: &Account,
    entries: &[NewEntry<'_>],
) -> Result<(), sqlx::Error> {
    account::save(tx, t.app_id, [(t.user_id, a)]).await?;
    account::append(tx, t.app_id, entries).await
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

/// The entry a write described by `note` appends.
fn noted<'a>(t: Target, entry: Entry, note: Note<'a>) -> NewEntry<'a> {
    NewEntry {
        reference: note.reference.map(Cow::Borrowed),
        key: note.key.map(Cow::Borrowed),
        ..NewEntry::plain(t.user_id, entry, note.reason)
    }
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

/// The refusal of a write that takes credits, counted.
fn refused(kind: EntryKind, refusal: Refusal) -> LedgerError {
    match refusal {
        Refusal::Insufficient { available, needed } => {
            metrics::refused(kind.as_str());
            LedgerError::Insufficient { available, needed }
        }
        Refusal::Overflow => LedgerError::Conflict(format!(
            "the balance would pass the largest amount a ledger keeps ({} micro-credits)",
            i64::MAX
        )),
        Refusal::ChargeOutOfRange { charged, amount } => {
            LedgerError::Conflict(format!("cannot charge {charged} on a hold of {amount}"))
        }
        Refusal::NotOpen(state) => {
            LedgerError::Conflict(format!("the hold is already {}", state.as_str()))
        }
    }
}

/// Expires the user's due buckets now (also done inside every charge). Returns entries written.
pub async fn expire_grants(db: &Db, t: Target) -> Result<u32, sqlx::Error> {
    let (mut tx, mut account) = open(db, t).await?;
    let entries: Vec<NewEntry> = NewEntry::expiries(t.user_id, account.expire(now_ms())).collect();
    if !entries.is_empty() {
        save_one(&mut tx, t, &account, &entries).await?;
    }
    tx.commit().await?;
    Ok(entries.len() as u32)
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
    /// [`EntryKind::Grant`], [`EntryKind::Refund`] or [`EntryKind::Adjustment`].
    pub kind: EntryKind,
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
    let (entry, remaining) = account
        .credit(c.kind, c.amount)
        .map_err(|r| refused(c.kind, r))?;
    let result = async {
        let grant_id: i64 = tx_run!(&mut tx, x => sqlx::query_scalar(
            "INSERT INTO credit_grants (app_id, user_id, source, amount, remaining, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id")
            .bind(t.app_id).bind(t.user_id).bind(c.source).bind(c.amount).bind(remaining)
            .bind(c.expires_at).bind(now_ms()).fetch_one(&mut **x).await)?;
        account.add_bucket(rules::Bucket {
            id: grant_id,
            remaining,
            expires_at: c.expires_at,
        });
        let entry = NewEntry {
            source: Some(c.source),
            ..noted(t, Entry { grant_id: Some(grant_id), ..entry }, c.note)
        };
        // The new bucket was inserted with its remaining; only the account row changes.
        account::save(&mut tx, t.app_id, [(t.user_id, &account)]).await?;
        let row = account::append_returning(&mut tx, t.app_id, &[entry]).await?;
        if let Some(a) = audit {
            record_audit_tx(&mut tx, a).await?;
        }
        let row = row.into_iter().next().ok_or(sqlx::Error::RowNotFound)?;
        if c.kind == EntryKind::Grant {
            let granted = crate::domain::events::CreditsGranted {
                user_id: String::new(),
                amount_micros: c.amount,
                source: c.source.to_string(),
                reason: c.note.reason.map(str::to_string),
                expires_at: c.expires_at,
            };
            let e = Outgoing::about(
                EventType::CreditsGranted,
                t.user_id,
                format!("credits.granted:{}", row.id),
                granted,
            );
            crate::store::events::publish(&mut tx, t.app_id, &e).await?;
        }
        Ok(row)
    }
    .await;
    finish(db, t, tx, result, c.note.key, |e| e).await
}

/// Credits taken from a balance at once: a [`EntryKind::Debit`] (usage known up front) or a
/// negative [`EntryKind::Adjustment`]. Refused when `balance − held − amount` would fall below
/// `−overdraft`.
pub async fn charge(
    db: &Db,
    t: Target,
    kind: EntryKind,
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
    let balance_before = account.balance();
    let mut entries: Vec<NewEntry> =
        NewEntry::expiries(t.user_id, account.expire(now_ms())).collect();
    let charged = match account.charge(kind, amount, overdraft) {
        Ok(entry) => entry,
        Err(refusal) => {
            // The expiry entries still count: they are facts whatever happens next.
            if !entries.is_empty() {
                save_one(&mut tx, t, &account, &entries).await?;
            }
            tx.commit().await?;
            return Err(refused(kind, refusal));
        }
    };
    entries.push(noted(t, charged, note));
    let result = async {
        account::save(&mut tx, t.app_id, [(t.user_id, &account)]).await?;
        let rows = account::append_returning(&mut tx, t.app_id, &entries).await?;
        if let Some(a) = audit {
            record_audit_tx(&mut tx, a).await?;
        }
        let row = rows.into_iter().last().ok_or(sqlx::Error::RowNotFound)?;
        // No app threshold here (an operator's or the app's own debit): zero is announced.
        let cause = format!("entry:{}", row.id);
        if let Some(e) = crate::store::events::balance_event(
            t.user_id,
            balance_before,
            account.balance(),
            None,
            &cause,
        ) {
            crate::store::events::publish(&mut tx, t.app_id, &e).await?;
        }
        Ok(row)
    }
    .await;
    finish(db, t, tx, result, note.key, |e| e).await
}

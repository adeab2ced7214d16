//! Holds: credits reserved for work whose cost is known only afterwards (an AI call).
//! `reserve` → `settle(actual ≤ amount)` | `release`; a hold left open past its expiry (its
//! process died) is resolved by the expiry job: settled at its recorded usage, else released.

use serde::Serialize;

use std::borrow::Cow;

use super::account::{self, NewEntry, NewHold};
use super::{LedgerError, Note, Target, Written, by_key, noted, open_with, refused, save_one};
use crate::domain::ledger::{EntryKind, Hold, HoldState, Refusal};
use crate::store::scope::{self, Scope};
use crate::store::usage::NewUsage;
use crate::store::{Db, Tx, now_ms};
use crate::{scoped_run, tx_run};

/// A hold and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldRow {
    pub id: i64,
    pub user_id: i64,
    pub amount: i64,
    /// Usage recorded while the work ran.
    pub used: Option<i64>,
    pub state: HoldState,
    /// What was charged when it closed.
    pub charged: Option<i64>,
    pub reference: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

type HoldTuple = (
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

const HOLD_COLUMNS: &str =
    "id, user_id, amount, used, state, charged, reference, expires_at, created_at, resolved_at";

fn hold_row(t: HoldTuple) -> HoldRow {
    HoldRow {
        id: t.0,
        user_id: t.1,
        amount: t.2,
        used: t.3,
        // The column's CHECK admits only the four states.
        state: HoldState::parse(&t.4).unwrap_or(HoldState::Open),
        charged: t.5,
        reference: t.6,
        expires_at: t.7,
        created_at: t.8,
        resolved_at: t.9,
    }
}

async fn hold_in(tx: &mut Tx, app_id: i64, id: i64) -> Result<Option<HoldRow>, sqlx::Error> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM credit_holds WHERE app_id = $1 AND id = $2");
    let row: Option<HoldTuple> = tx_run!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).fetch_optional(&mut **c).await)?;
    Ok(row.map(hold_row))
}

/// A hold to reserve, for an AI call or the holds API (see [`reserve`]).
pub struct CallHold {
    pub t: Target,
    pub amount: i64,
    pub overdraft: i64,
    pub expires_at: i64,
    /// The reason written on the hold's entry (`ai call` for the gateway's).
    pub reason: Option<&'static str>,
    /// The request id, or what the app names the work by.
    pub reference: Option<String>,
    /// The request's `Idempotency-Key` effect key, written on the hold's entry: a retry of a
    /// call that already took its hold (its process died before the answer was stored) finds
    /// it and is answered with the first hold (the gateway refuses to run such a call again).
    pub key: Option<String>,
    /// The plan columns the call was priced on, checked against the user's row in the hold's
    /// transaction (`None`: not checked).
    pub plan: Option<super::period::PlanColumns>,
    /// What the call is, as JSON ([`crate::store::usage::CallDetails`]), kept on the hold.
    pub call: Option<String>,
}

/// How a hold ends: at `charged`, in state `ends`, with the call's usage record if it is one.
pub struct CallClose {
    pub t: Target,
    pub hold_id: i64,
    pub charged: i64,
    pub ends: HoldState,
    pub reason: Option<&'static str>,
    pub usage: Option<NewUsage>,
    /// The app's `credits_low`: a balance falling to it or below publishes `credits.low`
    /// (falling to zero publishes `credits.exhausted` whatever this is).
    pub credits_low: Option<i64>,
}

impl CallClose {
    /// An AI call's close: settled when something is charged, else released.
    pub fn of_call(
        t: Target,
        hold_id: i64,
        charged: i64,
        reason: &'static str,
        usage: Option<NewUsage>,
    ) -> CallClose {
        CallClose {
            t,
            hold_id,
            charged,
            ends: HoldState::closed_at(charged),
            reason: Some(reason),
            usage,
            credits_low: None,
        }
    }

    /// The same close, announcing a balance that falls to `low` or below.
    pub fn announcing_below(mut self, low: Option<i64>) -> CallClose {
        self.credits_low = low;
        self
    }
}

/// Hold `id` of the app, if it exists.
pub async fn hold(db: &Db, app_id: i64, id: i64) -> Result<Option<HoldRow>, sqlx::Error> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM credit_holds WHERE app_id = $1 AND id = $2");
    let row: Option<HoldTuple> = scoped_run!(db, Scope::App(app_id), c =>
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(app_id).bind(id).fetch_optional(c).await)?;
    Ok(row.map(hold_row))
}

/// Reserves `amount` for the user, or refuses with [`LedgerError::Insufficient`]. The same
/// `note.key` again returns the first hold. Concurrent reserves never overspend: each runs
/// under the account lock and checks `balance − held − amount ≥ −overdraft`.
pub async fn reserve(
    db: &Db,
    t: Target,
    amount: i64,
    overdraft: i64,
    expires_at: i64,
    note: Note<'_>,
) -> Result<Written<HoldRow>, LedgerError> {
    debug_assert!(amount > 0);
    let reads = account::Reads {
        new_holds: 1,
        ..Default::default()
    };
    let (mut tx, opened) = open_with(db, t, reads).await?;
    let mut account = opened.account;
    if let Some(first) = by_key(&mut tx, t.app_id, note.key).await? {
        let hold = match first.hold_id {
            Some(id) if first.kind == EntryKind::Hold.as_str() => {
                hold_in(&mut tx, t.app_id, id).await?
            }
            _ => None,
        };
        return hold.map(Written::Replayed).ok_or_else(|| {
            LedgerError::Conflict("this idempotency key was used for another ledger entry".into())
        });
    }
    let mut entries: Vec<NewEntry> =
        NewEntry::expiries(t.user_id, account.expire(now_ms())).collect();
    let held = match account.reserve(amount, overdraft) {
        Ok(entry) => entry,
        Err(refusal) => {
            if !entries.is_empty() {
                save_one(&mut tx, t, &account, &entries).await?;
            }
            tx.commit().await?;
            return Err(refused(EntryKind::Hold, refusal));
        }
    };
    let result = async {
        let hold = NewHold {
            user_id: t.user_id,
            amount,
            reference: note.reference,
            expires_at,
            call: None,
        };
        let id = opened.hold_ids[0];
        account::insert_holds(&mut tx, t.app_id, &[hold], &[id]).await?;
        entries.push(NewEntry {
            hold_id: Some(id),
            ..noted(t, held, note)
        });
        save_one(&mut tx, t, &account, &entries).await?;
        hold_in(&mut tx, t.app_id, id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
    .await;
    match result {
        Ok(hold) => {
            tx.commit().await?;
            Ok(Written::New(hold))
        }
        // The key was taken by a concurrent writer for another user of the app.
        Err(e) if crate::store::is_unique_violation(&e) => Err(LedgerError::Conflict(
            "this idempotency key was used for another ledger entry".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Settles a hold at `actual`. Settling again with the same amount returns the settled hold;
/// a different amount, or a hold released or expired meanwhile, is a conflict.
pub async fn settle(
    db: &Db,
    app_id: i64,
    hold_id: i64,
    actual: i64,
    reason: Option<&str>,
) -> Result<Written<HoldRow>, LedgerError> {
    let close = Close {
        app_id,
        user_id: None,
        hold_id,
        charged: actual,
        ends: HoldState::Settled,
        reason,
        usage: None,
        credits_low: None,
    };
    resolve(db, close).await
}

/// Releases a hold without charging. Idempotent.
pub async fn release(
    db: &Db,
    app_id: i64,
    hold_id: i64,
    reason: Option<&str>,
) -> Result<Written<HoldRow>, LedgerError> {
    let close = Close {
        app_id,
        user_id: None,
        hold_id,
        charged: 0,
        ends: HoldState::Released,
        reason,
        usage: None,
        credits_low: None,
    };
    resolve(db, close).await
}

/// Closes a hold by itself as `c` says, with the call's usage record (if any) in the same
/// transaction: the charge and its record exist together or not at all. The batch writer
/// ([`super::Batcher`]) falls back to this when it cannot write a close in its batch.
pub async fn close_call(db: &Db, c: &CallClose) -> Result<Written<HoldRow>, LedgerError> {
    let close = Close {
        app_id: c.t.app_id,
        user_id: Some(c.t.user_id),
        hold_id: c.hold_id,
        charged: c.charged,
        ends: c.ends,
        reason: c.reason,
        usage: c.usage.as_ref(),
        credits_low: c.credits_low,
    };
    resolve(db, close).await
}

/// One hold's close, as [`resolve`] writes it.
struct Close<'a> {
    app_id: i64,
    /// The hold's user when the caller knows it (else read from the hold).
    user_id: Option<i64>,
    hold_id: i64,
    charged: i64,
    ends: HoldState,
    reason: Option<&'a str>,
    /// The call's usage record, written in the same transaction.
    usage: Option<&'a crate::store::usage::NewUsage>,
    /// The app's `credits_low`, announced when the close crosses it.
    credits_low: Option<i64>,
}

async fn resolve(db: &Db, c: Close<'_>) -> Result<Written<HoldRow>, LedgerError> {
    let (app_id, hold_id) = (c.app_id, c.hold_id);
    let not_found = || LedgerError::NotFound(format!("no hold {hold_id}"));
    // The hold names its user; the user's account is locked before the hold is re-read, so
    // its state cannot change between the check and the update.
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let user_id = match c.user_id {
        Some(id) => id,
        None => tx_run!(&mut tx, x => sqlx::query_scalar(
            "SELECT user_id FROM credit_holds WHERE app_id = $1 AND id = $2")
            .bind(app_id).bind(hold_id).fetch_optional(&mut **x).await)?
        .ok_or_else(not_found)?,
    };
    let t = Target { app_id, user_id };
    let mut account = account::load_one(&mut tx, t).await?;
    let balance_before = account.balance();
    let hold = hold_in(&mut tx, app_id, hold_id)
        .await?
        .filter(|h| h.user_id == user_id)
        .ok_or_else(not_found)?;
    let charged = c.charged;
    let held = Hold {
        amount: hold.amount,
        state: hold.state,
    };
    let entry = match account.close(held, charged, c.ends) {
        Ok(entry) => entry,
        Err(Refusal::NotOpen(_)) => {
            return if hold.state == c.ends && hold.charged == Some(charged) {
                Ok(Written::Replayed(hold))
            } else {
                Err(LedgerError::Conflict(format!(
                    "hold {hold_id} is already {} (charged {})",
                    hold.state.as_str(),
                    hold.charged.unwrap_or(0)
                )))
            };
        }
        Err(refusal) => return Err(refused(entry_kind(charged), refusal)),
    };
    account::close_holds(&mut tx, app_id, &[(hold_id, c.ends, charged)]).await?;
    let mut entries = vec![NewEntry {
        hold_id: Some(hold_id),
        reference: hold.reference.as_deref().map(Cow::Borrowed),
        key: Some(Cow::Owned(close_key(hold_id))),
        ..NewEntry::plain(user_id, entry, c.reason)
    }];
    // What the hold still covered of expired buckets can expire now.
    entries.extend(NewEntry::expiries(user_id, account.expire(now_ms())));
    save_one(&mut tx, t, &account, &entries).await?;
    if let Some(usage) = c.usage {
        crate::store::usage::insert_tx(&mut tx, t.app_id, &[(t.user_id, usage)]).await?;
    }
    // The same cause as the batch writer's, so the hold's close announces once either way.
    let cause = format!("hold:{hold_id}");
    let after = account.balance();
    if let Some(e) =
        crate::store::events::balance_event(user_id, balance_before, after, c.credits_low, &cause)
    {
        crate::store::events::publish(&mut tx, app_id, &e).await?;
    }
    let closed = hold_in(&mut tx, app_id, hold_id)
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(Written::New(closed))
}

/// The idempotency key of a hold's closing entry: a hold closes once.
pub(super) fn close_key(hold_id: i64) -> String {
    format!("hold:{hold_id}:close")
}

fn entry_kind(charged: i64) -> EntryKind {
    if charged > 0 {
        EntryKind::Settle
    } else {
        EntryKind::Release
    }
}

/// Records what the work has used so far (≤ the hold), so that a hold orphaned by a crash is
/// settled at it rather than released for free. False if the hold is not open.
pub async fn record_usage(
    db: &Db,
    app_id: i64,
    hold_id: i64,
    used: i64,
) -> Result<bool, sqlx::Error> {
    record_progress(db, app_id, hold_id, used, None).await
}

/// [`record_usage`] for an AI call, with what it has produced so far: the expiry job writes the
/// call's usage record from it if the call's process dies.
pub async fn record_progress(
    db: &Db,
    app_id: i64,
    hold_id: i64,
    used: i64,
    call: Option<&crate::store::usage::CallDetails>,
) -> Result<bool, sqlx::Error> {
    let call = call.map(|c| c.to_json());
    scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE credit_holds SET used = $1, call = COALESCE($4, call) WHERE app_id = $2 \
         AND id = $3 AND state = 'open' AND $1 <= amount")
        .bind(used).bind(app_id).bind(hold_id).bind(&call).execute(c).await
        .map(|r| r.rows_affected() == 1))
}

/// Resolves up to `limit` holds past their expiry: each is settled at its recorded usage, or
/// released when none was recorded. Returns how many were resolved.
pub async fn expire_holds(db: &Db, limit: i64) -> Result<u32, LedgerError> {
    type Due = (i64, i64, Option<i64>, Option<String>, Option<String>, i64);
    let due: Vec<Due> = scoped_run!(db, Scope::AllApps, c => sqlx::query_as(
        "SELECT app_id, id, used, call, reference, created_at FROM credit_holds \
         WHERE state = 'open' AND expires_at <= $1 ORDER BY expires_at LIMIT $2")
        .bind(now_ms()).bind(limit).fetch_all(c).await)?;
    let mut resolved = 0;
    for (app_id, id, used, call, reference, created_at) in due {
        let charged = used.unwrap_or(0).max(0);
        // An AI call's process died before its own settle: its usage record is written with
        // the charge, in the same transaction, from what the hold last knew of the call.
        let record = call
            .and_then(|c| serde_json::from_str::<crate::store::usage::CallDetails>(&c).ok())
            .map(|c| {
                let request_id = reference.clone().unwrap_or_default();
                c.expired_record(request_id, id, charged, now_ms() - created_at)
            });
        let close = Close {
            app_id,
            user_id: None,
            hold_id: id,
            charged,
            ends: HoldState::Expired,
            reason: Some("hold expired"),
            usage: record.as_ref(),
            credits_low: None,
        };
        match resolve(db, close).await {
            Ok(_) => resolved += 1,
            // Settled or released by its owner a moment ago.
            Err(LedgerError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

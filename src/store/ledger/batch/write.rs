//! One batch in one transaction, through the ledger's one load-apply-save path
//! ([`crate::store::ledger::account`]): per app, the accounts of all its users locked and
//! loaded in one statement, every write applied by the account's rules in arrival order, then
//! the new holds, the closed holds, the accounts, the buckets, the entries and the usage
//! records saved in one statement each — queued and sent together (on SQLite one query, see
//! [`Writes`]). A batch of any size and any number of users is about a dozen statements per
//! app, and on SQLite half a dozen hand-offs to its thread.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{CallHold, Op, Outcome};
use crate::domain::ledger::{Hold, Refusal};
use crate::store::bulk::{JsonSql, Writes, rows_json};
use crate::store::ledger::account::{self, NewEntry, NewHold};
use crate::store::ledger::holds::close_key;
use crate::store::ledger::period::{PLAN_COLUMNS, PlanColumns};
use crate::store::ledger::{LedgerError, Target, metrics};
use crate::store::scope::{self, Scope};
use crate::store::usage::{self, NewUsage};
use crate::store::{Tx, now_ms};
use crate::tx_run;

/// What a batch did: each op's outcome, and each account's available credits after it.
pub(super) struct Written {
    pub outcomes: Vec<Outcome>,
    pub available: Vec<(Target, i64)>,
}

pub(super) async fn write(db: &crate::store::Db, ops: &[Op]) -> Result<Written, LedgerError> {
    let mut tx = db.begin().await?;
    let mut outcomes = vec![Outcome::Retry; ops.len()];
    let mut available = Vec::new();
    let mut apps: Vec<i64> = ops.iter().map(|op| op.target().app_id).collect();
    apps.sort_unstable();
    apps.dedup();
    for app_id in apps {
        scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
        let mine: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].target().app_id == app_id)
            .collect();
        let accounts = write_app(&mut tx, app_id, ops, &mine, &mut outcomes).await?;
        available.extend(accounts);
    }
    tx.commit().await?;
    Ok(Written {
        outcomes,
        available,
    })
}

/// The writes of one app's calls (`mine`, indexes into `ops` in arrival order), in the app's
/// scope — its usage records too: row-level security refuses another app's rows. Returns each
/// account's available credits once they are applied.
async fn write_app<'a>(
    tx: &mut Tx,
    app_id: i64,
    ops: &'a [Op],
    mine: &[usize],
    outcomes: &mut [Outcome],
) -> Result<Vec<(Target, i64)>, LedgerError> {
    let mut usages: Vec<(i64, &'a NewUsage)> = Vec::new();
    let users: Vec<i64> = mine.iter().map(|&i| ops[i].target().user_id).collect();
    let mut accounts = account::load(tx, app_id, &users).await?;
    let checked: Vec<i64> = mine
        .iter()
        .filter_map(|&i| match &ops[i] {
            Op::Reserve(r, _) if r.plan.is_some() => Some(r.t.user_id),
            _ => None,
        })
        .collect();
    let plans = plan_columns_in(tx, app_id, &checked).await?;
    let closing: Vec<i64> = mine
        .iter()
        .filter_map(|&i| match &ops[i] {
            Op::Close(c, _) => Some(c.hold_id),
            Op::Reserve(..) => None,
        })
        .collect();
    let mut holds = account::holds(tx, app_id, &closing).await?;
    let keys: Vec<&str> = mine
        .iter()
        .filter_map(|&i| match &ops[i] {
            Op::Reserve(r, _) => r.key.as_deref(),
            Op::Close(..) => None,
        })
        .collect();
    // A key written before (or twice in this batch) would fail the batch's insert: that
    // reserve is left to the one-by-one write, which answers with the first hold.
    let taken = account::taken_keys(tx, app_id, &keys).await?;
    let mut seen = std::collections::HashSet::new();
    let now = now_ms();
    let mut entries: Vec<NewEntry<'a>> = Vec::new();
    // The holds to insert: (op index, entry index, hold).
    let mut new_holds: Vec<(usize, usize, &CallHold)> = Vec::new();
    let mut closed = Vec::new();
    for &i in mine {
        let t = ops[i].target();
        let Some(a) = accounts.get_mut(&t.user_id) else {
            continue;
        };
        match &ops[i] {
            Op::Reserve(r, _) => {
                if let Some(key) = r.key.as_deref()
                    && (taken.contains(key) || !seen.insert(key))
                {
                    continue;
                }
                if r.plan.is_some() && r.plan != plans.get(&t.user_id).cloned() {
                    outcomes[i] = Outcome::PlanChanged;
                    continue;
                }
                entries.extend(NewEntry::expiries(t.user_id, a.expire(now)));
                match a.reserve(r.amount, r.overdraft) {
                    Ok(entry) => {
                        new_holds.push((i, entries.len(), r));
                        entries.push(NewEntry {
                            reference: r.reference.as_deref().map(Cow::Borrowed),
                            key: r.key.as_deref().map(Cow::Borrowed),
                            ..NewEntry::plain(t.user_id, entry, r.reason)
                        });
                    }
                    Err(Refusal::Insufficient { available, needed }) => {
                        metrics::refused("hold");
                        outcomes[i] = Outcome::Insufficient { available, needed };
                    }
                    // Left to the one-by-one write, which answers precisely.
                    Err(_) => {}
                }
            }
            Op::Close(c, _) => {
                // Not this user's, or not open (the expiry job closed it; or it is named twice
                // in the batch): written alone after the batch, which answers the conflict.
                let Some(hold) = holds.get_mut(&c.hold_id).filter(|h| h.user_id == t.user_id)
                else {
                    continue;
                };
                let held = Hold {
                    amount: hold.amount,
                    state: hold.state,
                };
                let Ok(entry) = a.close(held, c.charged, c.ends) else {
                    continue;
                };
                hold.state = c.ends;
                closed.push((c.hold_id, c.ends, c.charged));
                entries.push(NewEntry {
                    hold_id: Some(c.hold_id),
                    reference: hold.reference.clone().map(Cow::Owned),
                    key: Some(Cow::Owned(close_key(c.hold_id))),
                    ..NewEntry::plain(t.user_id, entry, c.reason)
                });
                // What the closed hold covered of expired buckets can expire now.
                entries.extend(NewEntry::expiries(t.user_id, a.expire(now)));
                usages.extend(c.usage.as_ref().map(|u| (t.user_id, u)));
                outcomes[i] = Outcome::Closed;
            }
        }
    }
    let inserts: Vec<NewHold> = new_holds
        .iter()
        .map(|&(_, _, r)| NewHold {
            user_id: r.t.user_id,
            amount: r.amount,
            reference: r.reference.as_deref(),
            expires_at: r.expires_at,
            call: r.call.as_deref(),
        })
        .collect();
    // Everything below is written in one go (on SQLite, one query: see `Writes`).
    let mut writes = Writes::new();
    let ids = account::insert_holds_into(tx, &mut writes, &inserts).await?;
    for (&(i, e, _), id) in new_holds.iter().zip(ids) {
        outcomes[i] = Outcome::Held(id);
        entries[e].hold_id = Some(id);
    }
    account::close_holds_into(&mut writes, &closed);
    account::save_into(&mut writes, accounts.iter().map(|(u, a)| (*u, a)));
    account::append_into(&mut writes, &entries);
    usage::insert_into(&mut writes, &usages);
    writes.run(tx, app_id, now).await?;
    Ok(accounts
        .iter()
        .map(|(&user_id, a)| (Target { app_id, user_id }, a.available()))
        .collect())
}

/// The plan columns of `users` (of one app), read in the batch's transaction.
async fn plan_columns_in(
    tx: &mut Tx,
    app_id: i64,
    users: &[i64],
) -> Result<HashMap<i64, PlanColumns>, sqlx::Error> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    // The columns of `PLAN_COLUMNS`, which a `const` template cannot splice in.
    static READ: JsonSql = JsonSql::new(
        2,
        "WITH v AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id FROM {rows}) \
         SELECT u.id, u.plan_id, u.period_start, u.period_end, u.plan_until FROM users u \
         JOIN v ON u.id = v.id WHERE u.app_id = $1",
    );
    debug_assert_eq!(
        PLAN_COLUMNS,
        "plan_id, period_start, period_end, plan_until"
    );
    let json = rows_json(users.iter().map(|u| [u]));
    let sql = READ.get(tx);
    type Row = (i64, Option<String>, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = tx_run!(&mut *tx, c => sqlx::query_as(sql)
        .bind(app_id).bind(&json).fetch_all(&mut **c).await)?;
    Ok(rows
        .into_iter()
        .map(|(id, plan, start, end, until)| (id, (plan, start, end, until)))
        .collect())
}

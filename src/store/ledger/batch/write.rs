//! One batch in one transaction, through the ledger's one load-apply-save path
//! ([`crate::store::ledger::account`]): per app, the accounts of all its users, their buckets,
//! the plan columns, holds and keys the batch names and ids for its new holds read in one
//! statement (after one that locks the accounts on PostgreSQL), every write applied by the
//! account's rules in arrival order, then the new holds, the closed holds, the accounts, the
//! buckets, the entries and the usage records saved in one query ([`Writes`]). A batch of any
//! size and any number of users is four statements on SQLite (`BEGIN`, read, write, `COMMIT`)
//! and six on PostgreSQL (with the scope and the lock).

use std::borrow::Cow;

use super::{CallHold, Op, Outcome};
use crate::domain::ledger::{Hold, Refusal};
use crate::store::bulk::Writes;
use crate::store::events::{self, balance_event};
use crate::store::ledger::account::{self, NewEntry, NewHold};
use crate::store::ledger::holds::close_key;
use crate::store::ledger::{LedgerError, Target, metrics};
use crate::store::scope::{self, Scope};
use crate::store::usage::{self, NewUsage};
use crate::store::{Tx, now_ms};

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
    let mut reads = account::Reads::default();
    for &i in mine {
        match &ops[i] {
            Op::Reserve(r, _) => {
                reads.new_holds += 1;
                if r.plan.is_some() {
                    reads.plans_of.push(r.t.user_id);
                }
                reads.keys.extend(r.key.as_deref());
            }
            Op::Close(c, _) => reads.holds.push(c.hold_id),
        }
    }
    let account::Loaded {
        mut accounts,
        plans,
        mut holds,
        // A key written before (or twice in this batch) would fail the batch's insert: that
        // reserve is left to the one-by-one write, which answers with the first hold.
        taken,
        hold_ids,
    } = account::load(tx, app_id, &users, reads).await?;
    let mut seen = std::collections::HashSet::new();
    let now = now_ms();
    // Per user whose hold this batch closes: the balance before the first close, the last hold
    // closed and the app's threshold — to tell whether the batch's charges cross it.
    let mut announced: std::collections::HashMap<i64, (i64, i64, Option<i64>)> = Default::default();
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
                let was = a.balance();
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
                let seen = announced.entry(t.user_id).or_insert((was, 0, None));
                (seen.1, seen.2) = (c.hold_id, c.credits_low);
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
    account::insert_holds_into(&mut writes, &inserts, &hold_ids);
    for (&(i, e, _), &id) in new_holds.iter().zip(&hold_ids) {
        outcomes[i] = Outcome::Held(id);
        entries[e].hold_id = Some(id);
    }
    account::close_holds_into(&mut writes, &closed);
    account::save_into(&mut writes, accounts.iter().map(|(u, a)| (*u, a)));
    account::append_into(&mut writes, &entries);
    usage::insert_into(&mut writes, &usages);
    writes.run(tx, app_id, now).await?;
    for (user_id, (was, hold_id, low)) in announced {
        let Some(a) = accounts.get(&user_id) else {
            continue;
        };
        if let Some(e) = balance_event(user_id, was, a.balance(), low, &format!("hold:{hold_id}")) {
            events::publish(tx, app_id, &e).await?;
        }
    }
    Ok(accounts
        .iter()
        .map(|(&user_id, a)| (Target { app_id, user_id }, a.available()))
        .collect())
}

//! One batch in one transaction. Per user: the account locked once; the batch's settlements
//! in one conditional update, its new holds in one insert; every write applied to the account
//! in arrival order; entries in one insert; the account saved once. The usage records of the
//! whole batch in one insert. A batch of any size is about a dozen statements.

use std::collections::HashMap;

use super::{CallClose, CallHold, Op, Outcome};
use crate::store::ledger::holds;
use crate::store::ledger::period::{PLAN_COLUMNS, PlanColumns};
use crate::store::ledger::{
    INSERT_ENTRIES, LedgerError, Target, consume, expire_due, lock, metrics, save,
};
use crate::store::scope::{self, Scope};
use crate::store::usage::{self, NewUsage};
use crate::store::{Tx, keep_prepared, now_ms, values_placeholders};
use crate::tx_run;

/// An entry the batch appends (holds and their settlements: no grant, no source).
struct BatchEntry {
    t: Target,
    kind: &'static str,
    amount: i64,
    held: i64,
    balance_after: i64,
    hold_id: i64,
    reason: &'static str,
    reference: Option<String>,
    key: Option<String>,
}

/// A hold closed by the batch's update: its amount and reference.
type Closed = (i64, Option<String>);

pub(super) async fn write(db: &crate::store::Db, ops: &[Op]) -> Result<Vec<Outcome>, LedgerError> {
    let mut tx = db.begin().await?;
    let mut outcomes = vec![Outcome::Retry; ops.len()];
    // Accounts are locked in one order (app, user) in every process: two replicas' batches
    // naming the same users cannot deadlock on PostgreSQL.
    let mut users: Vec<Target> = ops.iter().map(Op::target).collect();
    users.sort_by_key(|t| (t.app_id, t.user_id));
    users.dedup();
    let mut usages: Vec<(Target, &NewUsage)> = Vec::new();
    let mut scoped = None;
    for t in users {
        if scoped != Some(t.app_id) {
            scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
            scoped = Some(t.app_id);
        }
        let mine: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].target() == t).collect();
        let mut closes: Vec<&CallClose> = mine
            .iter()
            .filter_map(|&i| match &ops[i] {
                Op::Close(c, _) => Some(c),
                Op::Reserve(..) => None,
            })
            .collect();
        let reserves = mine.len() > closes.len();
        // A hold named twice goes into the update once, for its first close: with two rows
        // joined to one hold, the databases apply either. The second is written alone.
        let mut seen = std::collections::HashSet::new();
        closes.retain(|c| seen.insert(c.hold_id));
        let mut account = lock(&mut tx, t).await?;
        let checks_plan = mine
            .iter()
            .any(|&i| matches!(&ops[i], Op::Reserve(r, _) if r.plan.is_some()));
        let plan_now = if checks_plan {
            plan_columns_in(&mut tx, t).await?
        } else {
            None
        };
        if reserves {
            expire_due(&mut tx, t, &mut account).await?;
        }
        let mut closed = close_holds(&mut tx, t, &closes).await?;
        let mut entries = Vec::new();
        // The holds to insert: (op index, entry index, hold).
        let mut new_holds: Vec<(usize, usize, &CallHold)> = Vec::new();
        let mut charged = 0;
        for &i in &mine {
            match &ops[i] {
                Op::Reserve(r, _) => {
                    if r.plan.is_some() && r.plan != plan_now {
                        outcomes[i] = Outcome::PlanChanged;
                        continue;
                    }
                    let available = account.balance - account.held;
                    if available - r.amount < -r.overdraft {
                        metrics::refused("hold");
                        outcomes[i] = Outcome::Insufficient {
                            available,
                            needed: r.amount,
                        };
                        continue;
                    }
                    account.held += r.amount;
                    new_holds.push((i, entries.len(), r));
                    entries.push(hold_entry(r, account.balance));
                }
                Op::Close(c, _) => {
                    // Taken, not read: a hold named twice is closed once.
                    let Some((amount, reference)) = closed.remove(&c.hold_id) else {
                        continue;
                    };
                    account.held -= amount;
                    account.balance -= c.charged;
                    charged += c.charged;
                    entries.push(close_entry(c, amount, reference, account.balance));
                    usages.extend(c.usage.as_ref().map(|u| (t, u)));
                    outcomes[i] = Outcome::Closed;
                }
            }
        }
        let holds: Vec<&CallHold> = new_holds.iter().map(|h| h.2).collect();
        let ids = insert_holds(&mut tx, t, &holds).await?;
        for (&(i, e, _), id) in new_holds.iter().zip(ids) {
            outcomes[i] = Outcome::Held(id);
            entries[e].hold_id = id;
        }
        // Charging reads the buckets soonest-expiring first, which tells whether any is due;
        // a batch that charged nothing must look.
        let due = charged == 0 || consume(&mut tx, t, charged).await?;
        append_many(&mut tx, &entries).await?;
        if due && !closes.is_empty() {
            // What the closed holds covered of expired buckets can expire now.
            expire_due(&mut tx, t, &mut account).await?;
        }
        save(&mut tx, t, account).await?;
    }
    usage::insert_tx(&mut tx, &usages).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// The user's plan columns, read in the batch's transaction.
async fn plan_columns_in(tx: &mut Tx, t: Target) -> Result<Option<PlanColumns>, sqlx::Error> {
    let sql = format!("SELECT {PLAN_COLUMNS} FROM users WHERE app_id = $1 AND id = $2");
    tx_run!(&mut *tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(t.app_id).bind(t.user_id).fetch_optional(&mut **c).await)
}

fn hold_entry(r: &CallHold, balance_after: i64) -> BatchEntry {
    BatchEntry {
        t: r.t,
        kind: "hold",
        amount: 0,
        held: r.amount,
        balance_after,
        // Known once the hold is inserted.
        hold_id: 0,
        reason: super::HOLD_REASON,
        reference: Some(r.reference.clone()),
        key: r.key.clone(),
    }
}

fn close_entry(
    c: &CallClose,
    amount: i64,
    reference: Option<String>,
    balance_after: i64,
) -> BatchEntry {
    BatchEntry {
        t: c.t,
        kind: if c.charged > 0 { "settle" } else { "release" },
        amount: -c.charged,
        held: -amount,
        balance_after,
        hold_id: c.hold_id,
        reason: c.reason,
        reference,
        key: Some(format!("hold:{}:close", c.hold_id)),
    }
}

/// Moves the user's holds named by `closes` from open to settled/released in one conditional
/// update; returns those it moved. A hold not open any more (the expiry job closed it) or
/// charged above its amount is left out, and written alone after the batch.
async fn close_holds(
    tx: &mut Tx,
    t: Target,
    closes: &[&CallClose],
) -> Result<HashMap<i64, Closed>, sqlx::Error> {
    if closes.is_empty() {
        return Ok(HashMap::new());
    }
    let now = now_ms();
    let rows: Vec<(i64, i64, Option<String>)> = if let [c] = closes {
        tx_run!(&mut *tx, x => sqlx::query_as(
            "UPDATE credit_holds SET state = $1, charged = $2, resolved_at = $3 \
             WHERE app_id = $4 AND id = $5 AND user_id = $6 AND state = 'open' AND $2 <= amount \
             RETURNING id, amount, reference")
            .bind(holds::closed_state(c.charged)).bind(c.charged).bind(now).bind(t.app_id)
            .bind(c.hold_id).bind(t.user_id).fetch_all(&mut **x).await)?
    } else {
        // VALUES columns are named column1, column2, … on both databases.
        let sql = format!(
            "UPDATE credit_holds SET state = v.column2, charged = v.column3, resolved_at = $1 \
             FROM (VALUES {}) AS v \
             WHERE credit_holds.id = v.column1 AND credit_holds.app_id = $2 \
             AND credit_holds.user_id = $3 AND credit_holds.state = 'open' \
             AND v.column3 <= credit_holds.amount RETURNING id, amount, reference",
            values_placeholders(4, closes.len(), 3)
        );
        tx_run!(&mut *tx, x => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(keep_prepared(closes.len()))
                .bind(now).bind(t.app_id).bind(t.user_id);
            for c in closes {
                q = q.bind(c.hold_id).bind(holds::closed_state(c.charged)).bind(c.charged);
            }
            q.fetch_all(&mut **x).await
        })?
    };
    Ok(rows
        .into_iter()
        .map(|(id, amount, reference)| (id, (amount, reference)))
        .collect())
}

/// Inserts the user's new holds, in one statement; returns their ids in order.
async fn insert_holds(
    tx: &mut Tx,
    t: Target,
    holds: &[&CallHold],
) -> Result<Vec<i64>, sqlx::Error> {
    let now = now_ms();
    match holds {
        [] => Ok(Vec::new()),
        [h] => {
            let id: i64 = tx_run!(&mut *tx, c => sqlx::query_scalar(
                "INSERT INTO credit_holds (app_id, user_id, amount, state, reference, expires_at, \
                 created_at, call) VALUES ($1, $2, $3, 'open', $4, $5, $6, $7) RETURNING id")
                .bind(t.app_id).bind(t.user_id).bind(h.amount).bind(&h.reference)
                .bind(h.expires_at).bind(now).bind(&h.call).fetch_one(&mut **c).await)?;
            Ok(vec![id])
        }
        _ => {
            // The ids are taken first so each hold knows its own: the order in which a
            // multi-row insert returns its rows is not defined.
            let ids = next_hold_ids(tx, holds.len()).await?;
            let sql = format!(
                "INSERT INTO credit_holds (id, app_id, user_id, amount, state, reference, \
                 expires_at, created_at, call) VALUES {}",
                values_placeholders(1, holds.len(), 9)
            );
            tx_run!(&mut *tx, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .persistent(keep_prepared(holds.len()));
                for (h, id) in holds.iter().zip(&ids) {
                    q = q.bind(id).bind(t.app_id).bind(t.user_id).bind(h.amount).bind("open")
                        .bind(&h.reference).bind(h.expires_at).bind(now).bind(&h.call);
                }
                q.execute(&mut **c).await.map(|_| ())
            })?;
            Ok(ids)
        }
    }
}

/// `n` unused hold ids. SQLite: past the table's AUTOINCREMENT high-water mark, safe because
/// this transaction holds the only write lock (an explicit id above it moves it). PostgreSQL:
/// from the column's sequence, as its default would.
async fn next_hold_ids(tx: &mut Tx, n: usize) -> Result<Vec<i64>, sqlx::Error> {
    match tx {
        Tx::Sqlite(c) => {
            let last: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'credit_holds'",
            )
            .fetch_one(&mut **c)
            .await?;
            Ok((1..=n as i64).map(|k| last + k).collect())
        }
        Tx::Postgres(c) => {
            sqlx::query_scalar(
                "SELECT nextval(pg_get_serial_sequence('credit_holds', 'id')) \
                 FROM generate_series(1, $1)",
            )
            .bind(n as i64)
            .fetch_all(&mut **c)
            .await
        }
    }
}

/// Appends the entries in one statement.
async fn append_many(tx: &mut Tx, entries: &[BatchEntry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT_ENTRIES} {}",
        values_placeholders(1, entries.len(), 13)
    );
    let now = now_ms();
    tx_run!(tx, c => {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(keep_prepared(entries.len()));
        for e in entries {
            q = q.bind(e.t.app_id).bind(e.t.user_id).bind(e.kind).bind(e.amount).bind(e.held)
                .bind(e.balance_after).bind(None::<i64>).bind(e.hold_id).bind(None::<&str>)
                .bind(e.reason).bind(e.reference.as_deref()).bind(e.key.as_deref()).bind(now);
        }
        q.execute(&mut **c).await.map(|_| ())
    })?;
    for e in entries {
        metrics::entry(e.kind, e.amount);
    }
    Ok(())
}

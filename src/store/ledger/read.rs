//! Reading the ledger: a user's balances and buckets, their entries (newest first, by cursor),
//! and `verify`, which recomputes every cached balance from the entries.

use serde::Serialize;

use super::{ENTRY_COLUMNS, EntryRow, EntryTuple, Target, entry_row};
use crate::scoped_run;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

/// A user's credits now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Balances {
    pub balance: i64,
    pub held: i64,
    /// Buckets with credits left, in the order they are spent.
    pub buckets: Vec<Bucket>,
}

impl Balances {
    /// What can still be reserved or spent (before any overdraft).
    pub fn available(&self) -> i64 {
        self.balance - self.held
    }
}

/// What is left of one grant (or refund, or positive adjustment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub grant_id: i64,
    pub source: String,
    pub amount: i64,
    pub remaining: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

pub async fn balances(db: &Db, t: Target) -> Result<Balances, sqlx::Error> {
    let account: Option<(i64, i64)> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(
        "SELECT balance, held FROM credit_accounts WHERE user_id = $1 AND app_id = $2")
        .bind(t.user_id).bind(t.app_id).fetch_optional(c).await)?;
    let Some((balance, held)) = account else {
        return Ok(Balances::default());
    };
    let rows: Vec<(i64, String, i64, i64, Option<i64>, i64)> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(
        "SELECT id, source, amount, remaining, expires_at, created_at FROM credit_grants \
         WHERE user_id = $1 AND app_id = $2 AND remaining > 0 \
         ORDER BY expires_at IS NULL, expires_at, id LIMIT 1000")
        .bind(t.user_id).bind(t.app_id).fetch_all(c).await)?;
    let buckets = rows
        .into_iter()
        .map(
            |(grant_id, source, amount, remaining, expires_at, created_at)| Bucket {
                grant_id,
                source,
                amount,
                remaining,
                expires_at,
                created_at,
            },
        )
        .collect();
    Ok(Balances {
        balance,
        held,
        buckets,
    })
}

/// True when the user has buckets past their expiry with credits left (so a read should
/// expire them first).
pub async fn has_expired_grants(db: &Db, t: Target) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
        "SELECT id FROM credit_grants WHERE user_id = $1 AND app_id = $2 AND remaining > 0 \
         AND expires_at <= $3 LIMIT 1")
        .bind(t.user_id).bind(t.app_id).bind(now_ms()).fetch_optional(c).await)?;
    Ok(found.is_some())
}

/// The user's entries, newest first: up to `limit` with ids below `before` (a cursor).
pub async fn entries(
    db: &Db,
    t: Target,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EntryRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE app_id = $1 AND user_id = $2 \
         AND id < $3 ORDER BY id DESC LIMIT $4"
    );
    let rows: Vec<EntryTuple> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(t.app_id).bind(t.user_id).bind(before.unwrap_or(i64::MAX)).bind(limit)
        .fetch_all(c).await)?;
    Ok(rows.into_iter().map(entry_row).collect())
}

/// An account whose cached numbers disagree with its entries, holds or buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub app_id: i64,
    pub user_id: i64,
    pub problem: String,
}

/// Recomputes every account from its entries, open holds and buckets, across all apps, and
/// returns (accounts checked, mismatches).
pub async fn verify(db: &Db) -> Result<(u64, Vec<Mismatch>), sqlx::Error> {
    type Row = (i64, i64, i64, i64, i64, i64, i64, i64, Option<i64>);
    let sum = |expr: &str, table: &str, extra: &str| {
        format!(
            "(SELECT CAST(COALESCE(SUM({expr}), 0) AS BIGINT) FROM {table} x \
             WHERE x.user_id = a.user_id{extra})"
        )
    };
    let sql = format!(
        "SELECT a.app_id, a.user_id, a.balance, a.held, {}, {}, {}, {}, \
         (SELECT balance_after FROM ledger_entries x WHERE x.user_id = a.user_id ORDER BY id DESC LIMIT 1) \
         FROM credit_accounts a WHERE a.user_id > $1 ORDER BY a.user_id LIMIT 1000",
        sum("amount", "ledger_entries", ""),
        sum("held", "ledger_entries", ""),
        sum("amount", "credit_holds", " AND x.state = 'open'"),
        sum("remaining", "credit_grants", ""),
    );
    let (mut checked, mut found, mut after) = (0u64, Vec::new(), 0i64);
    loop {
        let rows: Vec<Row> = scoped_run!(db, Scope::AllApps, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(after).fetch_all(c).await)?;
        let Some(last) = rows.last() else { break };
        after = last.1;
        for (app_id, user_id, balance, held, entries, entries_held, open_holds, buckets, last) in
            rows
        {
            checked += 1;
            let mut problems = Vec::new();
            if balance != entries {
                problems.push(format!("balance {balance} ≠ sum of entries {entries}"));
            }
            if held != entries_held || held != open_holds {
                problems.push(format!(
                    "held {held} ≠ entries' held {entries_held} or open holds {open_holds}"
                ));
            }
            if buckets != balance.max(0) {
                problems.push(format!("buckets hold {buckets}, balance is {balance}"));
            }
            if last.is_some_and(|l| l != balance) {
                problems.push(format!(
                    "last entry's balance_after {} ≠ balance {balance}",
                    last.unwrap_or_default()
                ));
            }
            found.extend(problems.into_iter().map(|problem| Mismatch {
                app_id,
                user_id,
                problem,
            }));
        }
    }
    Ok((checked, found))
}

//! The one load and save path of every ledger write, for one user or a batch of hundreds:
//! lock and load the accounts ([`load`]), let [`crate::domain::ledger::Account`] apply the
//! operations, then [`save`] the accounts and buckets and [`append`] the entries. Each step is
//! one statement for all the users of an app, whatever their number ([`crate::store::bulk`]).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::domain::ledger::{Account, Bucket, Entry, HoldState};
use crate::store::bulk::{JsonSql, Writes, rows_json};
use crate::store::{Tx, now_ms};
use crate::tx_run;

use super::{ENTRY_COLUMNS, EntryRow, EntryTuple, Target, entry_row, metrics};

/// Creates the accounts of `users` (of one app) where missing, locks them, and loads them with
/// their buckets. Locks are taken in user order, so two writers naming the same users cannot
/// deadlock on PostgreSQL (SQLite's one write lock is already held since `BEGIN IMMEDIATE`).
pub(super) async fn load(
    tx: &mut Tx,
    app_id: i64,
    users: &[i64],
) -> Result<HashMap<i64, Account>, sqlx::Error> {
    // One statement creates a missing row and locks it: the upsert's update takes the row lock.
    static LOCK: JsonSql = JsonSql::new(
        3,
        "INSERT INTO credit_accounts (user_id, app_id, balance, held, updated_at) \
         SELECT CAST(x.value->>0 AS BIGINT), $1, 0, 0, $2 FROM {rows} WHERE true ORDER BY x.key \
         ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at \
         RETURNING user_id, balance, held",
    );
    static BUCKETS: JsonSql = JsonSql::new(
        2,
        "WITH v AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS user_id FROM {rows}) \
         SELECT g.user_id, g.id, g.remaining, g.expires_at FROM credit_grants g JOIN v \
         ON g.user_id = v.user_id WHERE g.app_id = $1 AND g.remaining > 0",
    );
    let mut sorted = users.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let ids = rows_json(sorted.iter().map(|u| [u]));
    let sql = LOCK.get(tx);
    let locked: Vec<(i64, i64, i64)> = tx_run!(&mut *tx, c => sqlx::query_as(sql)
        .bind(app_id).bind(now_ms()).bind(&ids).fetch_all(&mut **c).await)?;
    let sql = BUCKETS.get(tx);
    let buckets: Vec<(i64, i64, i64, Option<i64>)> = tx_run!(&mut *tx, c => sqlx::query_as(sql)
        .bind(app_id).bind(&ids).fetch_all(&mut **c).await)?;
    let mut by_user: HashMap<i64, Vec<Bucket>> = HashMap::new();
    for (user_id, id, remaining, expires_at) in buckets {
        by_user.entry(user_id).or_default().push(Bucket {
            id,
            remaining,
            expires_at,
        });
    }
    Ok(locked
        .into_iter()
        .map(|(user_id, balance, held)| {
            let buckets = by_user.remove(&user_id).unwrap_or_default();
            (user_id, Account::load(balance, held, buckets))
        })
        .collect())
}

/// One user's account, locked and loaded.
pub(super) async fn load_one(tx: &mut Tx, t: Target) -> Result<Account, sqlx::Error> {
    let mut accounts = load(tx, t.app_id, &[t.user_id]).await?;
    accounts.remove(&t.user_id).ok_or(sqlx::Error::RowNotFound)
}

/// Writes back the accounts' balances and held totals and the buckets that changed.
pub(super) async fn save<'a>(
    tx: &mut Tx,
    app_id: i64,
    accounts: impl IntoIterator<Item = (i64, &'a Account)>,
) -> Result<(), sqlx::Error> {
    let mut writes = Writes::new();
    save_into(&mut writes, accounts);
    writes.run(tx, app_id, now_ms()).await
}

/// [`save`], queued.
pub(super) fn save_into<'a>(
    writes: &mut Writes,
    accounts: impl IntoIterator<Item = (i64, &'a Account)>,
) {
    static ACCOUNTS: JsonSql = JsonSql::new(
        3,
        "WITH v AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS user_id, \
         CAST(x.value->>1 AS BIGINT) AS balance, CAST(x.value->>2 AS BIGINT) AS held FROM {rows}) \
         UPDATE credit_accounts SET balance = v.balance, held = v.held FROM v \
         WHERE credit_accounts.user_id = v.user_id AND credit_accounts.app_id = $1",
    );
    static BUCKETS: JsonSql = JsonSql::new(
        3,
        "WITH v AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id, \
         CAST(x.value->>1 AS BIGINT) AS remaining FROM {rows}) \
         UPDATE credit_grants SET remaining = v.remaining FROM v \
         WHERE credit_grants.id = v.id AND credit_grants.app_id = $1",
    );
    let mut rows = Vec::new();
    let mut changed = Vec::new();
    for (user_id, a) in accounts {
        rows.push((user_id, a.balance(), a.held()));
        changed.extend(a.changed_buckets());
    }
    if rows.is_empty() {
        return;
    }
    writes.push(&ACCOUNTS, rows_json(rows));
    if !changed.is_empty() {
        writes.push(&BUCKETS, rows_json(changed));
    }
}

/// An entry to append: what the account's rules wrote, and what describes it.
#[derive(Debug, Clone)]
pub(super) struct NewEntry<'a> {
    pub user_id: i64,
    pub entry: Entry,
    pub hold_id: Option<i64>,
    pub source: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub reference: Option<Cow<'a, str>>,
    /// Unique per app: the same key written twice is one entry.
    pub key: Option<Cow<'a, str>>,
}

impl<'a> NewEntry<'a> {
    /// An entry with nothing but its reason.
    pub fn plain(user_id: i64, entry: Entry, reason: Option<&'a str>) -> NewEntry<'a> {
        NewEntry {
            user_id,
            entry,
            hold_id: None,
            source: None,
            reason,
            reference: None,
            key: None,
        }
    }

    /// The entries of a bucket's expiry.
    pub fn expiries(user_id: i64, entries: Vec<Entry>) -> impl Iterator<Item = NewEntry<'a>> {
        entries
            .into_iter()
            .map(move |e| NewEntry::plain(user_id, e, Some("grant expired")))
    }
}

static APPEND: JsonSql = JsonSql::new(
    3,
    "INSERT INTO ledger_entries (app_id, user_id, kind, amount, held, balance_after, grant_id, \
     hold_id, source, reason, reference, idempotency_key, created_at) \
     SELECT $1, CAST(x.value->>0 AS BIGINT), x.value->>1, CAST(x.value->>2 AS BIGINT), \
     CAST(x.value->>3 AS BIGINT), CAST(x.value->>4 AS BIGINT), CAST(x.value->>5 AS BIGINT), \
     CAST(x.value->>6 AS BIGINT), x.value->>7, x.value->>8, x.value->>9, x.value->>10, $2 \
     FROM {rows} ORDER BY x.key",
);

fn entries_json(entries: &[NewEntry<'_>]) -> String {
    rows_json(entries.iter().map(|e| {
        (
            e.user_id,
            e.entry.kind.as_str(),
            e.entry.amount,
            e.entry.held,
            e.entry.balance_after,
            e.entry.grant_id,
            e.hold_id,
            e.source,
            e.reason,
            e.reference.as_deref(),
            e.key.as_deref(),
        )
    }))
}

fn count(entries: &[NewEntry<'_>]) {
    // Counted when written; a rolled-back transaction overcounts, which is rare and harmless.
    for e in entries {
        metrics::entry(e.entry.kind.as_str(), e.entry.amount);
    }
}

/// Appends the entries of one app, in order, in one statement.
pub(super) async fn append(
    tx: &mut Tx,
    app_id: i64,
    entries: &[NewEntry<'_>],
) -> Result<(), sqlx::Error> {
    let mut writes = Writes::new();
    append_into(&mut writes, entries);
    writes.run(tx, app_id, now_ms()).await
}

/// [`append`], queued.
pub(super) fn append_into(writes: &mut Writes, entries: &[NewEntry<'_>]) {
    if entries.is_empty() {
        return;
    }
    writes.push(&APPEND, entries_json(entries));
    count(entries);
}

/// [`append`], returning the rows written, in order.
pub(super) async fn append_returning(
    tx: &mut Tx,
    app_id: i64,
    entries: &[NewEntry<'_>],
) -> Result<Vec<EntryRow>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let json = entries_json(entries);
    let sql = format!("{} RETURNING {ENTRY_COLUMNS}", APPEND.get(tx).0);
    let rows: Vec<EntryTuple> = tx_run!(&mut *tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(now_ms()).bind(&json).fetch_all(&mut **c).await)?;
    count(entries);
    let mut rows: Vec<EntryRow> = rows.into_iter().map(entry_row).collect();
    // Ids follow the insertion order; RETURNING's own order is not defined.
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Which of `keys` entries of the app already carry.
pub(super) async fn taken_keys(
    tx: &mut Tx,
    app_id: i64,
    keys: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    static READ: JsonSql = JsonSql::new(
        2,
        "WITH v AS MATERIALIZED (SELECT x.value->>0 AS k FROM {rows}) \
         SELECT e.idempotency_key FROM ledger_entries e JOIN v ON e.idempotency_key = v.k \
         WHERE e.app_id = $1",
    );
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let json = rows_json(keys.iter().map(|k| [k]));
    let sql = READ.get(tx);
    let rows: Vec<String> = tx_run!(&mut *tx, c => sqlx::query_scalar(sql)
        .bind(app_id).bind(&json).fetch_all(&mut **c).await)?;
    Ok(rows.into_iter().collect())
}

/// A hold to insert.
pub(super) struct NewHold<'a> {
    pub user_id: i64,
    pub amount: i64,
    pub reference: Option<&'a str>,
    pub expires_at: i64,
    /// What the call is, as JSON ([`crate::store::usage::CallDetails`]).
    pub call: Option<&'a str>,
}

/// Inserts open holds of one app in one statement; returns their ids in order.
pub(super) async fn insert_holds(
    tx: &mut Tx,
    app_id: i64,
    holds: &[NewHold<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut writes = Writes::new();
    let ids = insert_holds_into(tx, &mut writes, holds).await?;
    writes.run(tx, app_id, now_ms()).await?;
    Ok(ids)
}

/// [`insert_holds`], queued: the ids are read now, the insert is queued.
pub(super) async fn insert_holds_into(
    tx: &mut Tx,
    writes: &mut Writes,
    holds: &[NewHold<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    static INSERT: JsonSql = JsonSql::new(
        3,
        "INSERT INTO credit_holds (id, app_id, user_id, amount, state, reference, expires_at, \
         created_at, call) SELECT CAST(x.value->>0 AS BIGINT), $1, CAST(x.value->>1 AS BIGINT), \
         CAST(x.value->>2 AS BIGINT), 'open', x.value->>3, CAST(x.value->>4 AS BIGINT), $2, \
         x.value->>5 FROM {rows} ORDER BY x.key",
    );
    if holds.is_empty() {
        return Ok(Vec::new());
    }
    // The ids are taken first so each hold knows its own: the order in which a multi-row
    // insert returns its rows is not defined.
    let ids = next_hold_ids(tx, holds.len()).await?;
    let json = rows_json(
        holds
            .iter()
            .zip(&ids)
            .map(|(h, id)| (id, h.user_id, h.amount, h.reference, h.expires_at, h.call)),
    );
    writes.push(&INSERT, json);
    Ok(ids)
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

/// A hold as a close needs it: whose it is, its amount, state and reference.
#[derive(Debug, Clone)]
pub(super) struct HeldCall {
    pub user_id: i64,
    pub amount: i64,
    pub state: HoldState,
    pub reference: Option<String>,
}

/// The holds `ids` of one app, read under their users' account locks.
pub(super) async fn holds(
    tx: &mut Tx,
    app_id: i64,
    ids: &[i64],
) -> Result<HashMap<i64, HeldCall>, sqlx::Error> {
    static READ: JsonSql = JsonSql::new(
        2,
        "WITH v AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id FROM {rows}) \
         SELECT h.id, h.user_id, h.amount, h.state, h.reference FROM credit_holds h \
         JOIN v ON h.id = v.id WHERE h.app_id = $1",
    );
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let json = rows_json(ids.iter().map(|id| [id]));
    let sql = READ.get(tx);
    let rows: Vec<(i64, i64, i64, String, Option<String>)> = tx_run!(&mut *tx, c =>
        sqlx::query_as(sql).bind(app_id).bind(&json).fetch_all(&mut **c).await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, user_id, amount, state, reference)| {
            let state = HoldState::parse(&state)?;
            Some((
                id,
                HeldCall {
                    user_id,
                    amount,
                    state,
                    reference,
                },
            ))
        })
        .collect())
}

/// Marks holds closed: `(id, state, charged)` each, in one statement.
pub(super) async fn close_holds(
    tx: &mut Tx,
    app_id: i64,
    closed: &[(i64, HoldState, i64)],
) -> Result<(), sqlx::Error> {
    let mut writes = Writes::new();
    close_holds_into(&mut writes, closed);
    writes.run(tx, app_id, now_ms()).await
}

/// [`close_holds`], queued.
pub(super) fn close_holds_into(writes: &mut Writes, closed: &[(i64, HoldState, i64)]) {
    static CLOSE: JsonSql = JsonSql::new(
        3,
        "WITH v AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id, x.value->>1 AS state, \
         CAST(x.value->>2 AS BIGINT) AS charged FROM {rows}) \
         UPDATE credit_holds SET state = v.state, charged = v.charged, resolved_at = $2 FROM v \
         WHERE credit_holds.id = v.id AND credit_holds.app_id = $1",
    );
    if closed.is_empty() {
        return;
    }
    let json = rows_json(closed.iter().map(|(id, s, c)| (id, s.as_str(), c)));
    writes.push(&CLOSE, json);
}

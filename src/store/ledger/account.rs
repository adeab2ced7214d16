//! The one load and save path of every ledger write, for one user or a batch of hundreds:
//! lock and load the accounts ([`load`]), let [`crate::domain::ledger::Account`] apply the
//! operations, then [`save`] the accounts and buckets and [`append`] the entries. Each step is
//! one statement for all the users of an app, whatever their number ([`crate::store::bulk`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use crate::domain::ledger::{Account, Bucket, Entry, HoldState};
use crate::store::bulk::{JsonSql, Writes, rows_item, rows_json};
use crate::store::ledger::period::PlanColumns;
use crate::store::{Backend, Tx, now_ms};
use crate::tx_run;

use super::{ENTRY_COLUMNS, EntryRow, EntryTuple, Target, entry_row, metrics};

/// What a write reads besides the accounts of its users: the plan columns of some users, some
/// holds, which idempotency keys are taken, and ids for the holds it may insert.
#[derive(Debug, Default)]
pub(super) struct Reads<'a> {
    pub plans_of: Vec<i64>,
    pub holds: Vec<i64>,
    pub keys: Vec<&'a str>,
    /// At most how many holds the write inserts.
    pub new_holds: usize,
}

/// What [`load`] read.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub accounts: HashMap<i64, Account>,
    pub plans: HashMap<i64, PlanColumns>,
    pub holds: HashMap<i64, HeldCall>,
    pub taken: HashSet<String>,
    /// `new_holds` unused hold ids, in order.
    pub hold_ids: Vec<i64>,
}

/// Loads the accounts of `users` (of one app) with their buckets, and everything `reads`
/// names, in one statement: each read is one arm of a `UNION ALL`, its rows tagged by arm, so
/// a write costs one hand-off to SQLite's thread (one round trip to PostgreSQL) however many
/// things it must know.
///
/// The accounts are the write's locks. SQLite: `BEGIN IMMEDIATE` already holds the one write
/// lock, the accounts are read in the same statement, and a missing one is new (zero) and
/// created by [`save_into`]'s upsert. PostgreSQL: one statement first creates the missing rows
/// and locks them all in user order (the upsert's update takes the row lock), so two writers
/// naming the same users cannot deadlock; the reads follow under those locks.
pub(super) async fn load(
    tx: &mut Tx,
    app_id: i64,
    users: &[i64],
    reads: Reads<'_>,
) -> Result<Loaded, sqlx::Error> {
    static LOCK: JsonSql = JsonSql::new(
        3,
        "INSERT INTO credit_accounts (user_id, app_id, balance, held, updated_at) \
         SELECT CAST(x.value->>0 AS BIGINT), $1, 0, 0, $2 FROM {rows} WHERE true ORDER BY x.key \
         ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at \
         RETURNING user_id, balance, held",
    );
    let mut sorted = users.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let ids = rows_json(sorted.iter().map(|u| [u]));
    let mut accounts: HashMap<i64, (i64, i64)> = HashMap::new();
    if let Tx::Postgres(_) = tx {
        let sql = LOCK.get(tx);
        let locked: Vec<(i64, i64, i64)> = tx_run!(&mut *tx, c => sqlx::query_as(sql)
            .bind(app_id).bind(now_ms()).bind(&ids).fetch_all(&mut **c).await)?;
        accounts.extend(locked.into_iter().map(|(u, b, h)| (u, (b, h))));
    }
    let sql = match tx {
        Tx::Sqlite(_) => READ_SQLITE.as_str(),
        Tx::Postgres(_) => READ_POSTGRES.as_str(),
    };
    type Row = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let plans = rows_json(reads.plans_of.iter().map(|u| [u]));
    let holds = rows_json(reads.holds.iter().map(|h| [h]));
    let keys = rows_json(reads.keys.iter().map(|k| [k]));
    let rows: Vec<Row> = tx_run!(&mut *tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(&ids).bind(&plans).bind(&holds).bind(&keys)
        .bind(reads.new_holds as i64).fetch_all(&mut **c).await)?;
    let mut loaded = Loaded::default();
    let mut buckets: HashMap<i64, Vec<Bucket>> = HashMap::new();
    for (tag, a, b, c, d, s, t) in rows {
        let n = |v: Option<i64>| v.unwrap_or_default();
        match tag {
            ARM_ACCOUNT => {
                accounts.insert(n(a), (n(b), n(c)));
            }
            ARM_BUCKET => buckets.entry(n(a)).or_default().push(Bucket {
                id: n(b),
                remaining: n(c),
                expires_at: d,
            }),
            ARM_PLAN => {
                loaded.plans.insert(n(a), (s, b, c, d));
            }
            ARM_HOLD => {
                if let Some(state) = s.as_deref().and_then(HoldState::parse) {
                    let hold = HeldCall {
                        user_id: n(b),
                        amount: n(c),
                        state,
                        reference: t,
                    };
                    loaded.holds.insert(n(a), hold);
                }
            }
            ARM_KEY => loaded.taken.extend(s),
            // SQLite: the table's AUTOINCREMENT high-water mark; ids past it are free, as this
            // transaction holds the only write lock (an explicit id above it moves it).
            ARM_HOLD_ID if matches!(tx, Tx::Sqlite(_)) => {
                let last = n(a);
                loaded.hold_ids = (1..=reads.new_holds as i64).map(|k| last + k).collect();
            }
            // PostgreSQL: one id per row, from the column's sequence, as its default would.
            ARM_HOLD_ID => loaded.hold_ids.push(n(a)),
            _ => {}
        }
    }
    for user_id in sorted {
        // Not there yet (SQLite): a new account, created by the save.
        let (balance, held) = accounts.remove(&user_id).unwrap_or_default();
        let buckets = buckets.remove(&user_id).unwrap_or_default();
        loaded
            .accounts
            .insert(user_id, Account::load(balance, held, buckets));
    }
    Ok(loaded)
}

const ARM_ACCOUNT: i64 = 0;
const ARM_BUCKET: i64 = 1;
const ARM_PLAN: i64 = 2;
const ARM_HOLD: i64 = 3;
const ARM_KEY: i64 = 4;
const ARM_HOLD_ID: i64 = 5;

/// [`load`]'s reads. Parameters: `$1` the app, `$2` the users, `$3` the users whose plan
/// columns are read, `$4` the holds, `$5` the keys (JSON arrays of one-element rows), `$6` how
/// many hold ids. Every arm has the same columns: the tag, four numbers, two texts. The keys
/// are typed in `MATERIALIZED` copies first (see [`crate::store::bulk`]: indexes under
/// row-level security).
fn read_sql(backend: Backend) -> String {
    let rows = |n| rows_item(backend, n);
    let (account, hold_id) = if backend == Backend::Sqlite {
        (
            format!(
                "SELECT {ARM_ACCOUNT}, a.user_id, a.balance, a.held, NULL, NULL, NULL \
                 FROM credit_accounts a JOIN u ON a.user_id = u.id WHERE a.app_id = $1 UNION ALL "
            ),
            format!(
                "SELECT {ARM_HOLD_ID}, COALESCE(MAX(seq), 0), NULL, NULL, NULL, NULL, NULL \
                 FROM sqlite_sequence WHERE name = 'credit_holds' AND $6 > 0"
            ),
        )
    } else {
        (
            String::new(),
            format!(
                "SELECT {ARM_HOLD_ID}, nextval(pg_get_serial_sequence('credit_holds', 'id')), \
                 NULL, NULL, NULL, NULL, NULL FROM generate_series(1, $6::bigint)"
            ),
        )
    };
    format!(
        "WITH u AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id FROM {users}), \
         p AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id FROM {plans}), \
         h AS MATERIALIZED (SELECT CAST(x.value->>0 AS BIGINT) AS id FROM {holds}), \
         k AS MATERIALIZED (SELECT x.value->>0 AS k FROM {keys}) \
         {account}\
         SELECT CAST({ARM_BUCKET} AS BIGINT), g.user_id, g.id, g.remaining, g.expires_at, \
         CAST(NULL AS TEXT), CAST(NULL AS TEXT) FROM credit_grants g JOIN u ON g.user_id = u.id \
         WHERE g.app_id = $1 AND g.remaining > 0 \
         UNION ALL SELECT {ARM_PLAN}, s.id, s.period_start, s.period_end, s.plan_until, \
         s.plan_id, NULL FROM users s JOIN p ON s.id = p.id WHERE s.app_id = $1 \
         UNION ALL SELECT {ARM_HOLD}, c.id, c.user_id, c.amount, NULL, c.state, c.reference \
         FROM credit_holds c JOIN h ON c.id = h.id WHERE c.app_id = $1 \
         UNION ALL SELECT {ARM_KEY}, NULL, NULL, NULL, NULL, e.idempotency_key, NULL \
         FROM ledger_entries e JOIN k ON e.idempotency_key = k.k WHERE e.app_id = $1 \
         UNION ALL {hold_id}",
        users = rows(2),
        plans = rows(3),
        holds = rows(4),
        keys = rows(5),
    )
}

static READ_SQLITE: LazyLock<String> = LazyLock::new(|| read_sql(Backend::Sqlite));
static READ_POSTGRES: LazyLock<String> = LazyLock::new(|| read_sql(Backend::Postgres));

impl Loaded {
    /// The loaded account of `user_id`.
    pub fn take(&mut self, user_id: i64) -> Result<Account, sqlx::Error> {
        self.accounts
            .remove(&user_id)
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// One user's account, locked and loaded.
pub(super) async fn load_one(tx: &mut Tx, t: Target) -> Result<Account, sqlx::Error> {
    let mut loaded = load(tx, t.app_id, &[t.user_id], Reads::default()).await?;
    loaded.take(t.user_id)
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
    // An upsert: on SQLite a new account is created here (see `load`).
    static ACCOUNTS: JsonSql = JsonSql::new(
        3,
        "INSERT INTO credit_accounts (user_id, app_id, balance, held, updated_at) \
         SELECT CAST(x.value->>0 AS BIGINT), $1, CAST(x.value->>1 AS BIGINT), \
         CAST(x.value->>2 AS BIGINT), $2 FROM {rows} WHERE true \
         ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance, held = excluded.held, \
         updated_at = excluded.updated_at WHERE credit_accounts.app_id = excluded.app_id",
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

/// A hold to insert.
pub(super) struct NewHold<'a> {
    pub user_id: i64,
    pub amount: i64,
    pub reference: Option<&'a str>,
    pub expires_at: i64,
    /// What the call is, as JSON ([`crate::store::usage::CallDetails`]).
    pub call: Option<&'a str>,
}

/// Inserts open holds of one app, with the ids [`load`] took for them, in one statement.
pub(super) async fn insert_holds(
    tx: &mut Tx,
    app_id: i64,
    holds: &[NewHold<'_>],
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    let mut writes = Writes::new();
    insert_holds_into(&mut writes, holds, ids);
    writes.run(tx, app_id, now_ms()).await
}

/// [`insert_holds`], queued. The ids were taken before so each hold knows its own: the order
/// in which a multi-row insert returns its rows is not defined.
pub(super) fn insert_holds_into(writes: &mut Writes, holds: &[NewHold<'_>], ids: &[i64]) {
    static INSERT: JsonSql = JsonSql::new(
        3,
        "INSERT INTO credit_holds (id, app_id, user_id, amount, state, reference, expires_at, \
         created_at, call) SELECT CAST(x.value->>0 AS BIGINT), $1, CAST(x.value->>1 AS BIGINT), \
         CAST(x.value->>2 AS BIGINT), 'open', x.value->>3, CAST(x.value->>4 AS BIGINT), $2, \
         x.value->>5 FROM {rows} ORDER BY x.key",
    );
    assert!(ids.len() >= holds.len(), "an id for every new hold");
    if holds.is_empty() {
        return;
    }
    let json = rows_json(
        holds
            .iter()
            .zip(ids)
            .map(|(h, id)| (id, h.user_id, h.amount, h.reference, h.expires_at, h.call)),
    );
    writes.push(&INSERT, json);
}

/// A hold as a close needs it: whose it is, its amount, state and reference.
#[derive(Debug, Clone)]
pub(super) struct HeldCall {
    pub user_id: i64,
    pub amount: i64,
    pub state: HoldState,
    pub reference: Option<String>,
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

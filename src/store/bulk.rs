//! Statements over many rows with one parameter: the rows travel as a JSON array of arrays and
//! the statement reads them as a table. The statement text does not depend on how many rows
//! there are, so it is prepared once per connection and kept, and binding is one string however
//! large the batch — where a `VALUES ($1, …), …` list is a new statement of thousands of
//! parameters for every batch size (docs/decisions.md, "Batched writes bind one JSON array").
//!
//! In a template, `{rows}` is the FROM item: `x.value->>0`, `x.value->>1`, … are a row's
//! columns (text, or NULL for a JSON null; `CAST(… AS BIGINT)` for numbers) and `x.key` its
//! position, for `ORDER BY x.key`. Only this FROM item differs between the backends.
//!
//! A statement that finds rows of a table by the batch's keys first turns the JSON into typed
//! columns in a `WITH v AS MATERIALIZED (…)` and joins on those (`t.id = v.id`): under
//! PostgreSQL's row-level security a condition that applies `->>` or a cast to a column of the
//! join cannot use an index (those functions are not leakproof), and the table is scanned
//! whole — on every batch, as the table grows.

use std::sync::OnceLock;

use super::{Backend, Tx};

/// A statement template, made per backend on first use.
pub struct JsonSql {
    /// The parameter number (`$n`) the JSON array is bound to.
    param: u8,
    template: &'static str,
    built: OnceLock<(String, String)>,
}

impl JsonSql {
    pub const fn new(param: u8, template: &'static str) -> JsonSql {
        JsonSql {
            param,
            template,
            built: OnceLock::new(),
        }
    }

    /// The statement for `tx`'s backend.
    pub fn get(&self, tx: &Tx) -> sqlx::AssertSqlSafe<&str> {
        let (sqlite, postgres) = self.built.get_or_init(|| {
            let made = |backend| {
                let rows = rows_item(backend, self.param.into());
                self.template.replace("{rows}", &rows)
            };
            (made(Backend::Sqlite), made(Backend::Postgres))
        });
        sqlx::AssertSqlSafe(match tx {
            Tx::Sqlite(_) => sqlite.as_str(),
            Tx::Postgres(_) => postgres.as_str(),
        })
    }
}

/// The FROM item that reads the JSON array bound to `$n` as a table (`x.value`, `x.key`): the
/// one place the backends differ in these statements.
pub fn rows_item(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("json_each(${n}) AS x"),
        Backend::Postgres => {
            format!("json_array_elements(${n}::json) WITH ORDINALITY AS x(value, key)")
        }
    }
}

/// The JSON array of `rows`, each serialised as an array (a tuple serialises as one).
pub fn rows_json<T: serde::Serialize>(rows: impl IntoIterator<Item = T>) -> String {
    let rows: Vec<T> = rows.into_iter().collect();
    serde_json::to_string(&rows).expect("tuples of numbers and strings serialise")
}

/// Writes that return nothing, queued and then run together in the caller's transaction. Each
/// is a [`JsonSql`] whose template names `$1` the app, `$2` the time of the write, and reads its
/// rows from `{rows}` (its own JSON array, parameter 3).
///
/// Why: sqlx runs SQLite on a thread of its own, and every statement is a hand-off to that
/// thread and back (two wake-ups); on PostgreSQL every statement is a round trip. For the call
/// path's batches those hand-offs and round trips, not the database's work, were most of the
/// time (a batch of one call took 1.4 ms on SQLite, of which SQLite's own work was a few
/// percent). So the queued writes are sent as one query, whose statements share the app and
/// time parameters and number their arrays `$3`, `$4`, …:
/// - SQLite: a multi-statement query, run in order.
/// - PostgreSQL, which takes several statements with parameters in no one query: one statement
///   whose writes are data-modifying `WITH` items. They run against one snapshot and cannot see
///   each other's rows, which the queued writes never need: each writes other rows (new holds
///   and closed holds are different holds), and foreign keys are checked at the statement's
///   end, when a new hold an entry names exists.
#[derive(Default)]
pub struct Writes {
    queued: Vec<(&'static JsonSql, String)>,
}

impl Writes {
    pub fn new() -> Writes {
        Writes::default()
    }

    /// Queues `sql` over `rows` (a JSON array from [`rows_json`]).
    pub fn push(&mut self, sql: &'static JsonSql, rows: String) {
        debug_assert_eq!(
            sql.param, 3,
            "a queued write reads its rows from parameter 3"
        );
        self.queued.push((sql, rows));
    }

    /// Runs the queued writes, in order, for `app_id` at `now`.
    pub async fn run(self, tx: &mut Tx, app_id: i64, now: i64) -> Result<(), sqlx::Error> {
        let sql = match (&self.queued[..], &*tx) {
            ([], _) => return Ok(()),
            ([(one, _)], _) => sqlx::AssertSqlSafe(one.get(tx).0.to_owned()),
            (_, Tx::Sqlite(_)) => sqlx::AssertSqlSafe(self.joined(
                Backend::Sqlite,
                |_, write| format!("{write};\n"),
                "",
            )),
            (_, Tx::Postgres(_)) => sqlx::AssertSqlSafe(self.joined(
                Backend::Postgres,
                |i, write| format!("{}w{i} AS ({write})", if i == 0 { "WITH " } else { ", " }),
                " SELECT 1",
            )),
        };
        let queued = &self.queued;
        crate::tx_run!(&mut *tx, c => {
            let mut query = sqlx::query(sql).bind(app_id).bind(now);
            for (_, rows) in queued {
                query = query.bind(rows);
            }
            query.execute(&mut **c).await.map(|_| ())
        })
    }

    /// The queued writes as one query text: write `i` reads its rows from `$i + 3` and is
    /// wrapped by `each(i, write)`; `tail` ends the text.
    fn joined(&self, backend: Backend, each: impl Fn(usize, &str) -> String, tail: &str) -> String {
        let mut text = String::new();
        for (i, (sql, _)) in self.queued.iter().enumerate() {
            let rows = rows_item(backend, i + 3);
            text.push_str(&each(i, &sql.template.replace("{rows}", &rows)));
        }
        text.push_str(tail);
        text
    }
}

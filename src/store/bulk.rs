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

use super::Tx;

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
            let n = self.param;
            (
                self.template
                    .replace("{rows}", &format!("json_each(${n}) AS x")),
                self.template.replace(
                    "{rows}",
                    &format!("json_array_elements(${n}::json) WITH ORDINALITY AS x(value, key)"),
                ),
            )
        });
        sqlx::AssertSqlSafe(match tx {
            Tx::Sqlite(_) => sqlite.as_str(),
            Tx::Postgres(_) => postgres.as_str(),
        })
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
/// thread and back (two wake-ups). For the call path's batches those hand-offs, not SQLite,
/// were most of the time (a batch of one call took 1.4 ms, of which SQLite's own work was a
/// few percent). On SQLite the queued writes are one multi-statement query — one hand-off —
/// whose statements share the app and time parameters and number their arrays `$3`, `$4`, ….
/// PostgreSQL cannot take several statements with parameters in one query, so there they run
/// one after another.
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
        match tx {
            Tx::Sqlite(c) if self.queued.len() > 1 => {
                let mut script = String::new();
                for (i, (sql, _)) in self.queued.iter().enumerate() {
                    let rows = format!("json_each(${}) AS x", i + 3);
                    script.push_str(&sql.template.replace("{rows}", &rows));
                    script.push_str(";\n");
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(script))
                    .bind(app_id)
                    .bind(now);
                for (_, rows) in self.queued {
                    query = query.bind(rows);
                }
                query.execute(&mut **c).await.map(|_| ())
            }
            _ => {
                for (sql, rows) in &self.queued {
                    let text = sql.get(tx);
                    crate::tx_run!(&mut *tx, c => sqlx::query(text).bind(app_id).bind(now)
                        .bind(rows).execute(&mut **c).await.map(|_| ()))?;
                }
                Ok(())
            }
        }
    }
}

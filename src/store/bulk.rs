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

//! Storage: one [`Db`] over SQLite or PostgreSQL, chosen by the URL scheme.
//!
//! Queries are written once, in portable SQL with `$1` placeholders, and run on whichever pool
//! is live through [`db_run!`]; only the few statements that must differ per dialect get their
//! own arm. Transactions stay inside the store: handlers call store functions.

pub mod billing;
pub mod bulk;
pub mod idempotency;
pub mod identity;
pub mod invites;
pub mod jobs;
pub mod ledger;
pub mod migrate;
mod pool;
pub mod privacy;
pub mod quotas;
pub mod scope;
mod tx;
pub mod usage;

pub use pool::{Backend, Db, PoolStats};
pub use tx::Tx;

/// Runs the same expression on whichever backend is live.
///
/// `db_run!(db, conn => sqlx::query("SELECT 1").execute(conn).await)` binds `conn` to the
/// SQLite pool in one arm and the PostgreSQL pool in the other; the expression is compiled for
/// each. With a [`Tx`], `conn` is the transaction's connection (`&mut *conn` to execute).
#[macro_export]
macro_rules! db_run {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($conn) => $body,
            $crate::store::Db::Postgres($conn, _) => $body,
        }
    };
}

/// [`db_run!`] for a transaction: `tx_run!(tx, conn => query.execute(&mut **conn).await)`.
#[macro_export]
macro_rules! tx_run {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite($conn) => $body,
            $crate::store::Tx::Postgres($conn) => $body,
        }
    };
}

/// True when the error is a unique-constraint violation, on either backend.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// `($1, $2), ($3, $4), …`: the VALUES list of a multi-row statement of `rows` rows of
/// `columns` parameters each, numbered from `$first`.
pub fn values_placeholders(first: usize, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(first + r * columns + c).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Whether a multi-row statement of `rows` rows stays prepared in the connection's cache: the
/// small ones recur; the large ones, one text per row count, would fill it with big statements.
pub fn keep_prepared(rows: usize) -> bool {
    rows <= 8
}

/// Milliseconds since the Unix epoch, the one time representation in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_placeholders_number_rows_then_columns_from_first() {
        assert_eq!(super::values_placeholders(1, 1, 2), "($1, $2)");
        assert_eq!(
            super::values_placeholders(4, 2, 3),
            "($4, $5, $6), ($7, $8, $9)"
        );
    }
}

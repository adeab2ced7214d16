//! Storage: one [`Db`] over SQLite or PostgreSQL, chosen by the URL scheme.
//!
//! Queries are written once, in portable SQL with `$1` placeholders, and run on whichever pool
//! is live through [`db_run!`]; only the few statements that must differ per dialect get their
//! own arm. Transactions stay inside the store: handlers call store functions.

pub mod backup;
pub mod billing;
pub mod bulk;
pub mod case_timeline;
pub mod copy;
pub mod email;
pub mod events;
pub mod idempotency;
pub mod identity;
pub mod invites;
pub mod jobs;
pub mod ledger;
pub mod migrate;
pub mod nudges;
mod pool;
pub mod privacy;
pub mod quotas;
pub mod recovery;
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

/// Milliseconds since the Unix epoch, the one time representation in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

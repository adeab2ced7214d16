//! Transactions on either backend, and the helper that commits on `Ok` and rolls back on `Err`.

use std::future::Future;
use std::pin::Pin;

use sqlx::{Postgres, Sqlite, Transaction};

use super::Db;

/// An open transaction. Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// The future a [`Db::transaction`] closure returns, borrowing the transaction.
pub type TxFuture<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 't>>;

impl Db {
    /// Begins a transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock up
    /// front, so a transaction that reads then writes cannot fail halfway with SQLITE_BUSY.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Runs `f` inside a transaction: commits if it returns `Ok`, rolls back if it returns `Err`.
    ///
    /// ```ignore
    /// db.transaction(|tx| Box::pin(async move {
    ///     tx_run!(tx, c => sqlx::query("INSERT …").execute(&mut **c).await)?;
    ///     Ok::<_, anyhow::Error>(())
    /// })).await?;
    /// ```
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t mut Tx) -> TxFuture<'t, T, E>,
        E: From<sqlx::Error>,
    {
        let mut tx = self.begin().await?;
        match f(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // The caller's error matters more than a failed rollback, which the database
                // performs anyway when the connection returns to the pool.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        }
    }
}

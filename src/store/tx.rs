//! Transactions on either backend, and the helper that commits on `Ok` and rolls back on `Err`.

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::sqlite::SqliteConnection;
use sqlx::{Postgres, Sqlite, SqlitePool, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::Db;

/// An open transaction. Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(SqliteTx),
    Postgres(Transaction<'static, Postgres>),
}

/// A SQLite write transaction and this process's turn to write. SQLite has one writer; when
/// many tasks of one process want it, waiting in a FIFO queue here is fairer and much faster
/// in the tail than SQLite's busy handler, which sleeps and retries (measured with the ledger
/// bench: p99 of a reserve+settle pair). Other processes on the same file still meet the busy
/// timeout. Derefs to the connection, so `&mut **tx` executes on it as with a plain
/// transaction.
#[derive(Debug)]
pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl Deref for SqliteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// The longest wait for this process's turn to write.
const WRITE_TURN_TIMEOUT_SECS: u64 = 10;

/// The write queue of a SQLite database file, shared by every pool on it in this process.
fn write_queue(pool: &SqlitePool) -> Arc<tokio::sync::Mutex<()>> {
    static QUEUES: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let file = pool
        .connect_options()
        .get_filename()
        .to_string_lossy()
        .into_owned();
    QUEUES
        .get_or_init(Mutex::default)
        .lock()
        .expect("write queue map")
        .entry(file)
        .or_default()
        .clone()
}

/// The future a [`Db::transaction`] closure returns, borrowing the transaction.
pub type TxFuture<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 't>>;

impl Db {
    /// Begins a transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock up
    /// front, so a transaction that reads then writes cannot fail halfway with SQLITE_BUSY.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => {
                // A turn that never comes (a task holding a transaction while it begins
                // another) fails like a busy database instead of hanging.
                let wait = std::time::Duration::from_secs(WRITE_TURN_TIMEOUT_SECS);
                let turn = tokio::time::timeout(wait, write_queue(pool).lock_owned())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?;
                let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                Tx::Sqlite(SqliteTx { tx, _turn: turn })
            }
            Db::Postgres(pool, _) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Begins a transaction scoped to `scope` (on the owner's pool for every app, when there is
    /// one; see [`super::scope::begin`]).
    pub async fn begin_in(&self, scope: super::scope::Scope) -> Result<Tx, sqlx::Error> {
        match self {
            Db::Sqlite(_) => self.begin().await,
            Db::Postgres(pool, owner) => Ok(Tx::Postgres(
                super::scope::begin(pool, owner.as_ref(), scope).await?,
            )),
        }
    }

    /// The database as the schema's owner sees it: for migrations. The same database when no
    /// owner is configured.
    pub fn as_owner(&self) -> Db {
        match self {
            Db::Postgres(_, Some(owner)) => Db::Postgres(owner.clone(), None),
            other => other.clone(),
        }
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
            Tx::Sqlite(t) => t.tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        }
    }
}

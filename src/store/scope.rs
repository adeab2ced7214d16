//! Tenant scope for PostgreSQL row-level security (migration 0005): every query on a tenant
//! table runs in a transaction that names its app, or explicitly all apps. SQLite has no RLS;
//! there the scope is a no-op and queries run on the pool as before.

use sqlx::{PgConnection, Postgres, Transaction};

/// Which tenants a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only this app's rows.
    App(i64),
    /// Every app: the key lookup (it finds the app) and operators' cross-app views.
    AllApps,
}

impl Scope {
    /// `App(id)` when there is an app, else `AllApps`.
    pub fn of(app_id: Option<i64>) -> Scope {
        app_id.map_or(Scope::AllApps, Scope::App)
    }
}

/// Sets the scope for the rest of the transaction (`set_config(…, true)` is transaction-local).
pub async fn apply(conn: &mut PgConnection, scope: Scope) -> Result<(), sqlx::Error> {
    let (key, value) = match scope {
        Scope::App(id) => ("tollgate.app_id", id.to_string()),
        Scope::AllApps => ("tollgate.all_apps", "on".to_string()),
    };
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(key)
        .bind(value)
        .execute(conn)
        .await
        .map(|_| ())
}

/// A PostgreSQL transaction with its scope set. Every app at once is asked for on the owner's
/// pool when there is one: there the policies let `tollgate.all_apps` through (migration
/// 0009), and the serving role, which owns no table, cannot use it.
pub async fn begin(
    pool: &sqlx::PgPool,
    owner: Option<&sqlx::PgPool>,
    scope: Scope,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = match (scope, owner) {
        (Scope::AllApps, Some(owner)) => owner,
        _ => pool,
    };
    let mut tx = pool.begin().await?;
    apply(&mut tx, scope).await?;
    Ok(tx)
}

/// Runs one statement on tenant tables: on SQLite on the pool, on PostgreSQL in a transaction
/// with `scope` set. `scoped_run!(db, scope, conn => query.fetch_one(conn).await)`.
#[macro_export]
macro_rules! scoped_run {
    ($db:expr, $scope:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($conn) => $body,
            $crate::store::Db::Postgres(pool, owner) => {
                let mut tx = $crate::store::scope::begin(pool, owner.as_ref(), $scope).await?;
                let result = {
                    let $conn = &mut *tx;
                    $body
                };
                if result.is_ok() {
                    tx.commit().await?;
                }
                result
            }
        }
    };
}

/// Runs several reads on one connection: on PostgreSQL in one transaction with `scope` set (one
/// BEGIN and one `set_config` for all of them, instead of one each with [`scoped_run!`]); on
/// SQLite on a pooled connection. `conn` is a `&mut` connection: use `&mut *conn` per
/// statement. `scoped_conn!(db, scope, conn => async { … }.await)`.
#[macro_export]
macro_rules! scoped_conn {
    ($db:expr, $scope:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(pool) => {
                let mut pooled = pool.acquire().await?;
                let $conn: &mut sqlx::SqliteConnection = &mut *pooled;
                $body
            }
            $crate::store::Db::Postgres(pool, owner) => {
                let mut tx = $crate::store::scope::begin(pool, owner.as_ref(), $scope).await?;
                let result = {
                    let $conn: &mut sqlx::PgConnection = &mut *tx;
                    $body
                };
                if result.is_ok() {
                    tx.commit().await?;
                }
                result
            }
        }
    };
}

/// Sets the scope on a transaction opened with `Db::begin` (no-op on SQLite). For every app,
/// begin with [`super::Db::begin_in`] instead: it picks the owner's pool.
pub async fn apply_tx(tx: &mut super::Tx, scope: Scope) -> Result<(), sqlx::Error> {
    match tx {
        super::Tx::Postgres(t) => apply(t, scope).await,
        super::Tx::Sqlite(_) => Ok(()),
    }
}

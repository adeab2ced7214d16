//! What backups need from the database: the tables of tollgate's schema and their row counts
//! seen in one snapshot, whether a restore target is empty, and the `backups` table.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Postgres, Row, Transaction};

use super::Db;
use crate::db_run;

/// Row counts by table: what a backup holds, compared after a restore.
pub type RowCounts = BTreeMap<String, i64>;

const SQLITE_TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table' \
     AND name NOT LIKE 'sqlite_%' ORDER BY name";
const PG_TABLES: &str = "SELECT table_name::text FROM information_schema.tables \
     WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name";

/// A table name as an SQL identifier. Names come from the catalog, never from a user, and
/// tollgate's are lowercase letters, digits and `_`; anything else is refused rather than quoted.
fn identifier(name: &str) -> Result<&str, sqlx::Error> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(name)
    } else {
        Err(sqlx::Error::Protocol(format!(
            "unexpected table name {name:?}"
        )))
    }
}

/// `SELECT count(*)` of a table named by the catalog.
fn count_sql(name: &str) -> Result<sqlx::AssertSqlSafe<String>, sqlx::Error> {
    Ok(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\"",
        identifier(name)?
    )))
}

/// A SQLite database file, opened read-only to check a backup (or a restore target).
pub struct SqliteFile(SqliteConnection);

impl SqliteFile {
    pub async fn open(path: &Path) -> Result<SqliteFile, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .read_only(true)
            .create_if_missing(false);
        Ok(SqliteFile(SqliteConnection::connect_with(&options).await?))
    }

    /// `PRAGMA integrity_check`: `"ok"`, or the first problems SQLite found.
    pub async fn integrity(&mut self) -> Result<String, sqlx::Error> {
        let rows = sqlx::query("PRAGMA integrity_check(20)")
            .fetch_all(&mut self.0)
            .await?;
        let lines: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        Ok(lines.join("; "))
    }

    pub async fn row_counts(&mut self) -> Result<RowCounts, sqlx::Error> {
        let names: Vec<String> = sqlx::query_scalar(SQLITE_TABLES)
            .fetch_all(&mut self.0)
            .await?;
        let mut counts = RowCounts::new();
        for name in names {
            let sql = count_sql(&name)?;
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut self.0).await?;
            counts.insert(name, n);
        }
        Ok(counts)
    }

    pub async fn close(self) -> Result<(), sqlx::Error> {
        self.0.close().await
    }
}

/// Writes a consistent copy of the live SQLite database to `path` while it serves: `VACUUM
/// INTO` reads one snapshot, so writers go on and the copy holds no half-applied transaction.
pub async fn sqlite_vacuum_into(db: &Db, path: &Path) -> Result<(), sqlx::Error> {
    let Db::Sqlite(pool) = db else {
        return Err(sqlx::Error::Protocol("VACUUM INTO is SQLite's".into()));
    };
    sqlx::query("VACUUM INTO $1")
        .bind(path.display().to_string())
        .execute(pool)
        .await
        .map(|_| ())
}

/// A PostgreSQL snapshot held open while `pg_dump --snapshot` reads it, with the row counts of
/// every table of the schema as that snapshot sees them: the dump holds exactly these rows.
pub struct PgSnapshot {
    tx: Transaction<'static, Postgres>,
    pub id: String,
    pub schema: String,
    pub counts: RowCounts,
}

impl PgSnapshot {
    /// Ends the snapshot once the dump has read it.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// Exports a snapshot of tollgate's schema (the connection's `current_schema()`), on the
/// owner's pool when there is one, seeing every app's rows.
pub async fn pg_snapshot(db: &Db) -> Result<PgSnapshot, sqlx::Error> {
    let Db::Postgres(pool, owner) = db else {
        return Err(sqlx::Error::Protocol("snapshots are PostgreSQL's".into()));
    };
    let mut tx = owner.as_ref().unwrap_or(pool).begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    super::scope::apply(&mut tx, super::scope::Scope::AllApps).await?;
    let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut *tx)
        .await?;
    let schema = schema.ok_or_else(|| {
        sqlx::Error::Protocol("the connection's search_path names no existing schema".into())
    })?;
    let names: Vec<String> = sqlx::query_scalar(PG_TABLES)
        .bind(&schema)
        .fetch_all(&mut *tx)
        .await?;
    let mut counts = RowCounts::new();
    for name in names {
        let sql = count_sql(&name)?;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *tx).await?;
        counts.insert(name, n);
    }
    Ok(PgSnapshot {
        tx,
        id,
        schema,
        counts,
    })
}

/// The schema a PostgreSQL connection resolves unqualified names to, if it exists yet.
pub async fn pg_current_schema(db: &Db) -> Result<Option<String>, sqlx::Error> {
    let Db::Postgres(pool, owner) = db else {
        return Ok(None);
    };
    sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(owner.as_ref().unwrap_or(pool))
        .await
}

/// The tables of `schema` (PostgreSQL), or of the SQLite database.
pub async fn tables(db: &Db, schema: &str) -> Result<Vec<String>, sqlx::Error> {
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar(SQLITE_TABLES).fetch_all(pool).await,
        Db::Postgres(pool, owner) => {
            sqlx::query_scalar(PG_TABLES)
                .bind(schema)
                .fetch_all(owner.as_ref().unwrap_or(pool))
                .await
        }
    }
}

/// Row counts of the live database, in one snapshot on PostgreSQL.
pub async fn row_counts(db: &Db) -> Result<RowCounts, sqlx::Error> {
    match db {
        Db::Sqlite(_) => {
            let mut counts = RowCounts::new();
            for name in tables(db, "").await? {
                let sql = count_sql(&name)?;
                let n: i64 = db_run!(db, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?;
                counts.insert(name, n);
            }
            Ok(counts)
        }
        Db::Postgres(..) => {
            if pg_current_schema(db).await?.is_none() {
                // A database the schema was never created in holds none of tollgate's tables.
                return Ok(RowCounts::new());
            }
            let snapshot = pg_snapshot(db).await?;
            let counts = snapshot.counts.clone();
            snapshot.release().await?;
            Ok(counts)
        }
    }
}

/// How a backup was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Command,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Command => "command",
        }
    }
}

/// One finished backup attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Recorded<'a> {
    pub trigger: Trigger,
    pub path: &'a str,
    /// Size of the verified file; `None` when the attempt failed.
    pub bytes: Option<i64>,
    pub error: Option<&'a str>,
    pub started_at: i64,
    pub finished_at: i64,
}

/// Records a backup attempt (ok when it has bytes and no error).
pub async fn record(db: &Db, r: &Recorded<'_>) -> Result<(), sqlx::Error> {
    let outcome = if r.error.is_none() { "ok" } else { "failed" };
    db_run!(db, pool => sqlx::query(
        "INSERT INTO backups (trigger, path, outcome, bytes, error, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(r.trigger.as_str())
    .bind(r.path)
    .bind(outcome)
    .bind(r.bytes)
    .bind(r.error)
    .bind(r.started_at)
    .bind(r.finished_at)
    .execute(pool)
    .await
    .map(|_| ()))
}

/// When the newest verified backup finished (ms since the epoch), if there is one.
pub async fn newest_ok(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    db_run!(db, pool => sqlx::query_scalar(
        "SELECT max(finished_at) FROM backups WHERE outcome = 'ok'",
    )
    .fetch_one(pool)
    .await)
}

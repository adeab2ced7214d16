//! Opening the pool: the URL scheme picks the backend; SQLite gets its pragmas.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use crate::config::DatabaseConfig;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The live connection pool, SQLite or PostgreSQL. Cheap to clone. On PostgreSQL, the second
/// pool connects as the schema's owner when `database.owner_url` is set: migrations and
/// cross-app statements use it (see [`crate::store::scope`]).
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool, Option<PgPool>),
}

/// Pool occupancy, exported as metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Db {
    /// Opens a pool for `url` (`sqlite:…` or `postgres://…`); unknown schemes are refused.
    /// Connections are made lazily after the first one, which proves the database answers.
    pub async fn connect(url: &str, cfg: &DatabaseConfig) -> anyhow::Result<Db> {
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("invalid SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL is durable across process crashes; only power loss can drop
                // the last transactions, the usual trade-off for a server database.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(cfg.busy_timeout_ms));
            if let Some(dir) = options.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create data directory {}", dir.display()))?;
            }
            // A file next to the process needs no liveness ping before each use: that ping is
            // a thread hand-off per acquire (decisions.md, "The AI call path's ledger").
            let pool = pool_options(cfg).test_before_acquire(false);
            Db::Sqlite(pool.connect_with(options).await?)
        } else if crate::config::database_url::is_postgres(url) {
            // Pool settings in the URL (`connection_limit`, `pool_timeout`) win over [database].
            let split = crate::config::database_url::split(url)
                .map_err(|p| anyhow::anyhow!("DATABASE_URL: {}", p.join("; ")))?;
            let mut cfg = cfg.clone();
            cfg.max_connections = split.max_connections.unwrap_or(cfg.max_connections);
            cfg.acquire_timeout_ms = split.acquire_timeout_ms.unwrap_or(cfg.acquire_timeout_ms);
            let cfg = &cfg;
            let mut options =
                PgConnectOptions::from_str(&split.url).context("invalid PostgreSQL URL")?;
            if cfg.statement_timeout_ms > 0 {
                options =
                    options.options([("statement_timeout", cfg.statement_timeout_ms.to_string())]);
            }
            let owner = match &cfg.owner_url {
                Some(owner_url) => {
                    let owner_url = crate::config::database_url::split(owner_url)
                        .map_err(|p| anyhow::anyhow!("database.owner_url: {}", p.join("; ")))?
                        .url;
                    let owner = PgConnectOptions::from_str(&owner_url)
                        .context("invalid database.owner_url")?;
                    let few = PoolOptions::new()
                        .max_connections(cfg.max_connections.clamp(1, 4))
                        .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms));
                    Some(few.connect_with(owner).await?)
                }
                None => None,
            };
            Db::Postgres(pool_options(cfg).connect_with(options).await?, owner)
        } else {
            bail!("unsupported database URL scheme (expected sqlite: or postgres://)");
        };
        Ok(db)
    }

    /// The file a `sqlite:` URL names, if it names one (not an in-memory database).
    pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
        if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
            return None;
        }
        let options = SqliteConnectOptions::from_str(url).ok()?;
        Some(options.get_filename().to_path_buf())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(..) => Backend::Postgres,
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        crate::db_run!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    /// Closes every connection; later queries fail. Used at shutdown.
    pub async fn close(&self) {
        crate::db_run!(self, pool => pool.close().await)
    }

    pub fn stats(&self) -> PoolStats {
        crate::db_run!(self, pool => PoolStats {
            size: pool.size(),
            idle: pool.num_idle() as u32,
            max: pool.options().get_max_connections(),
        })
    }
}

fn pool_options<DB: sqlx::Database>(cfg: &DatabaseConfig) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(cfg.min_connections)
        .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
}

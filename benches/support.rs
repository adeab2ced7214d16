//! What every benchmark needs: a migrated database — a temp SQLite file, or a fresh schema on
//! the PostgreSQL server named by BENCH_DATABASE_URL — and its removal afterwards.

use tollgate::config::Config;
use tollgate::store::{Db, migrate};

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A migrated database for `name`, the config pointing at it, and the PostgreSQL schema to drop.
pub struct BenchDb {
    pub db: Db,
    pub config: Config,
    schema: Option<String>,
}

impl BenchDb {
    pub async fn new(name: &str) -> anyhow::Result<BenchDb> {
        let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut config = Config::defaults();
        config.data_dir = dir;
        config.database.max_connections = 20;
        let mut schema = None;
        if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
            let name = format!("tg_{name}_{}", std::process::id());
            let admin = Db::connect(&url, &config.database).await?;
            tollgate::db_run!(&admin, pool => sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(pool).await.map(|_| ()))?;
            admin.close().await;
            let sep = if url.contains('?') { '&' } else { '?' };
            config.database.url = Some(format!("{url}{sep}options=-c%20search_path%3D{name}"));
            schema = Some(name);
        }
        let db = Db::connect(&config.database_url(), &config.database).await?;
        migrate::run(&db).await?;
        Ok(BenchDb { db, config, schema })
    }

    /// Drops the schema (PostgreSQL) or the temp directory (SQLite).
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Some(schema) = &self.schema {
            tollgate::db_run!(&self.db, pool => sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(pool).await.map(|_| ()))?;
        }
        self.db.close().await;
        let _ = std::fs::remove_dir_all(&self.config.data_dir);
        Ok(())
    }
}

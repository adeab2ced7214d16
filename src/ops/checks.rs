//! Live dependency checks: database, migrations, Redis. Each one is bounded in time and
//! reports how long it took, so `/ready` and `tollgate check` never hang on a dead dependency.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::store::{Db, migrate};

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub latency: Duration,
    /// What was seen: an error, or a short fact such as the migration versions.
    pub output: Option<String>,
}

async fn timed<F>(name: &'static str, work: F) -> Check
where
    F: Future<Output = Result<Option<String>, String>>,
{
    let start = Instant::now();
    let result = match tokio::time::timeout(CHECK_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    let latency = start.elapsed();
    match result {
        Ok(output) => Check {
            name,
            ok: true,
            latency,
            output,
        },
        Err(e) => Check {
            name,
            ok: false,
            latency,
            output: Some(e),
        },
    }
}

/// The database answers a query.
pub async fn database(db: &Db) -> Check {
    timed("database", async {
        db.ping().await.map(|_| None).map_err(|e| e.to_string())
    })
    .await
}

/// Every embedded migration is applied, none failed halfway, none was edited.
pub async fn migrations(db: &Db) -> Check {
    timed("migrations", async {
        let s = migrate::status(db).await.map_err(|e| e.to_string())?;
        if let Some(damage) = s.damage() {
            return Err(damage);
        }
        if !s.pending.is_empty() {
            return Err(format!(
                "pending migrations {:?}; run `tollgate migrate`",
                s.pending_versions()
            ));
        }
        Ok(Some(format!("{} applied", s.applied.len())))
    })
    .await
}

/// Redis answers PING.
pub async fn redis(url: &str) -> Check {
    timed("redis", async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if pong == "PONG" {
            Ok(None)
        } else {
            Err(format!("unexpected reply {pong:?}"))
        }
    })
    .await
}

/// The SMTP server of `SMTP_URL` accepts a connection, the TLS it asks for and the credentials;
/// `None` when email is not configured.
pub async fn email(config: &crate::config::Config) -> Option<Check> {
    let mailer = match crate::events::email::Mailer::from_config(config) {
        Ok(None) => return None,
        Ok(Some(m)) => Ok(m),
        Err(e) => Err(e),
    };
    Some(
        timed("email", async move {
            let mailer = mailer?;
            mailer.check().await.map(Some)
        })
        .await,
    )
}

/// All checks that apply to this deployment, run concurrently.
pub async fn all(db: &Db, redis_url: Option<&str>) -> Vec<Check> {
    let redis_check = async {
        match redis_url {
            Some(url) => Some(redis(url).await),
            None => None,
        }
    };
    let (d, m, r) = tokio::join!(database(db), migrations(db), redis_check);
    [Some(d), Some(m), r].into_iter().flatten().collect()
}

/// On PostgreSQL, whether tollgate's role is a superuser (which bypasses row-level security);
/// `None` on SQLite or when it cannot be told.
pub async fn database_superuser(db: &Db) -> Option<bool> {
    match db {
        Db::Postgres(pool, _) => {
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(pool)
                .await
                .ok()
        }
        Db::Sqlite(_) => None,
    }
}

/// The newest verified backup is younger than `backup.max_age_hours`; `None` when no backups
/// are scheduled. Its output says the age, so `/ready` and `tollgate check` show it.
pub async fn backup(db: &Db, config: &crate::config::Config) -> Option<Check> {
    config.backup.cron.as_ref()?;
    let max_age_ms = i64::from(config.backup.max_age_hours) * 3_600_000;
    Some(
        timed("backup", async move {
            let newest = crate::store::backup::newest_ok(db)
                .await
                .map_err(|e| e.to_string())?;
            let Some(finished_at) = newest else {
                return Err("no verified backup yet".to_string());
            };
            let age_ms = (crate::store::now_ms() - finished_at).max(0);
            let age = format!("newest verified backup {} min old", age_ms / 60_000);
            if age_ms > max_age_ms {
                Err(format!(
                    "{age}, older than backup.max_age_hours ({} h)",
                    config.backup.max_age_hours
                ))
            } else {
                Ok(Some(age))
            }
        })
        .await,
    )
}

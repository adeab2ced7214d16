//! Schedules of the apps' own jobs made at run time (the admin API); the scheduler reads them
//! for every app beside the config's (docs/jobs.md).

use serde::Serialize;

use crate::scoped_run;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

/// A stored schedule.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredSchedule {
    /// The app's slug.
    #[serde(skip)]
    pub app: String,
    pub name: String,
    pub cron: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub queue: String,
    /// `once`, `none` or `all`.
    pub catch_up: String,
    pub created_at: i64,
}

type Tuple = (String, String, String, String, String, String, String, i64);

fn row(t: Tuple) -> StoredSchedule {
    StoredSchedule {
        app: t.0,
        name: t.1,
        cron: t.2,
        kind: t.3,
        args: serde_json::from_str(&t.4).unwrap_or_default(),
        queue: t.5,
        catch_up: t.6,
        created_at: t.7,
    }
}

const COLUMNS: &str = "a.slug, s.name, s.cron, s.kind, s.args, s.queue, s.catch_up, s.created_at";

/// Every app's stored schedules (the scheduler's read; across apps).
pub async fn all(db: &Db) -> Result<Vec<StoredSchedule>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM app_schedules s JOIN apps a ON a.id = s.app_id ORDER BY s.id"
    );
    let rows: Vec<Tuple> = scoped_run!(db, Scope::AllApps, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(c).await)?;
    Ok(rows.into_iter().map(row).collect())
}

pub async fn of_app(db: &Db, app_id: i64) -> Result<Vec<StoredSchedule>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM app_schedules s JOIN apps a ON a.id = s.app_id \
         WHERE s.app_id = $1 ORDER BY s.name"
    );
    let rows: Vec<Tuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).fetch_all(c).await)?;
    Ok(rows.into_iter().map(row).collect())
}

/// Stores a schedule; false when the app has one of this name.
pub async fn create(db: &Db, app_id: i64, s: &StoredSchedule) -> Result<bool, sqlx::Error> {
    let args = s.args.to_string();
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "INSERT INTO app_schedules (app_id, name, cron, kind, args, queue, catch_up, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (app_id, name) DO NOTHING")
        .bind(app_id).bind(&s.name).bind(&s.cron).bind(&s.kind).bind(&args).bind(&s.queue)
        .bind(&s.catch_up).bind(now_ms()).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn delete(db: &Db, app_id: i64, name: &str) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "DELETE FROM app_schedules WHERE app_id = $1 AND name = $2")
        .bind(app_id).bind(name).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

//! The queries behind `tollgate jobs …` (and the admin API): stats, listing, retry, cancel,
//! discard, queue pauses, kill switches and pruning.

use super::{JobRow, job_row};
use crate::db_run;
use crate::store::Db;

/// Jobs of one queue in one state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateCount {
    pub queue: String,
    pub state: String,
    pub count: i64,
    /// For due available/retryable jobs: when the oldest became due (ms).
    pub oldest_due_at: Option<i64>,
}

/// Counts per queue and state, and when the oldest due job became due.
pub async fn counts(db: &Db, now: i64) -> Result<Vec<StateCount>, sqlx::Error> {
    db_run!(db, pool => {
        let rows = sqlx::query(
            "SELECT queue, state, COUNT(*) AS n, \
             MIN(CASE WHEN state IN ('available', 'retryable') AND NOT parked AND run_at <= $1 \
             THEN run_at END) AS oldest FROM jobs GROUP BY queue, state ORDER BY queue, state")
            .bind(now)
            .fetch_all(pool).await?;
        rows.iter().map(|r| {
            use sqlx::Row;
            Ok(StateCount {
                queue: r.try_get("queue")?,
                state: r.try_get("state")?,
                count: r.try_get("n")?,
                oldest_due_at: r.try_get("oldest")?,
            })
        }).collect()
    })
}

/// A queue and whether it is paused.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueRow {
    pub name: String,
    pub paused: bool,
}

pub async fn queues(db: &Db) -> Result<Vec<QueueRow>, sqlx::Error> {
    db_run!(db, pool => {
        let rows = sqlx::query("SELECT name, paused FROM job_queues ORDER BY name")
            .fetch_all(pool).await?;
        rows.iter().map(|r| {
            use sqlx::Row;
            Ok(QueueRow { name: r.try_get("name")?, paused: r.try_get("paused")? })
        }).collect()
    })
}

/// Pauses or resumes a queue (creating its row if needed).
pub async fn set_paused(db: &Db, queue: &str, paused: bool, now: i64) -> Result<(), sqlx::Error> {
    db_run!(db, pool => sqlx::query(
        "INSERT INTO job_queues (name, paused, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at")
        .bind(queue).bind(paused).bind(now)
        .execute(pool).await.map(|_| ()))
}

/// Which jobs an operation applies to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    /// Only ids below this one (cursor for the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Jobs matching the filter, newest first.
pub async fn list(db: &Db, f: &Filter) -> Result<Vec<JobRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM jobs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR queue = $2) \
         AND ($3 IS NULL OR kind = $3) AND id < $4 ORDER BY id DESC LIMIT $5",
        super::JOB_COLUMNS
    );
    db_run!(db, pool => {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(f.state.as_deref()).bind(f.queue.as_deref()).bind(f.kind.as_deref())
            .bind(f.before_id.unwrap_or(i64::MAX)).bind(f.limit)
            .fetch_all(pool).await?;
        rows.iter().map(|r| Ok(job_row!(r))).collect()
    })
}

pub async fn get(db: &Db, id: i64) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {} FROM jobs WHERE id = $1", super::JOB_COLUMNS);
    db_run!(db, pool => {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?;
        row.as_ref().map(|r| Ok(job_row!(r))).transpose()
    })
}

/// One failed attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptError {
    pub attempt: i64,
    pub at: i64,
    pub worker: Option<String>,
    pub error: String,
}

pub async fn errors(db: &Db, id: i64) -> Result<Vec<AttemptError>, sqlx::Error> {
    db_run!(db, pool => {
        let rows = sqlx::query(
            "SELECT attempt, at, worker, error FROM job_errors WHERE job_id = $1 ORDER BY attempt")
            .bind(id).fetch_all(pool).await?;
        rows.iter().map(|r| {
            use sqlx::Row;
            Ok(AttemptError {
                attempt: r.try_get("attempt")?,
                at: r.try_get("at")?,
                worker: r.try_get("worker")?,
                error: r.try_get("error")?,
            })
        }).collect()
    })
}

/// Makes a finished or waiting job available now. A job that used all its attempts gets one
/// more. Running and available jobs are left alone (returns false).
pub async fn retry(db: &Db, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let n = db_run!(db, pool => sqlx::query(
        "UPDATE jobs SET state = 'available', run_at = $1, finalized_at = NULL, \
         locked_until = NULL, parked = FALSE, \
         max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END \
         WHERE id = $2 AND state IN ('retryable', 'completed', 'discarded', 'cancelled')")
        .bind(now).bind(id)
        .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Ends an unfinished job as `cancelled` or `discarded`, with `reason` as its last error. A
/// running handler is stopped by its worker at the next heartbeat.
pub async fn finish(
    db: &Db,
    id: i64,
    to_state: &'static str,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let n = db_run!(db, pool => sqlx::query(
        "UPDATE jobs SET state = $1, finalized_at = $2, locked_until = NULL, last_error = $3 \
         WHERE id = $4 AND state IN ('available', 'retryable', 'running')")
        .bind(to_state).bind(now).bind(reason).bind(id)
        .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Jobs still to do in a queue: due or running (jobs scheduled later do not count).
pub async fn pending_in_queue(db: &Db, queue: &str, now: i64) -> Result<i64, sqlx::Error> {
    db_run!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE queue = $1 AND (state = 'running' OR \
         (state IN ('available', 'retryable') AND NOT parked AND run_at <= $2))")
        .bind(queue).bind(now)
        .fetch_one(pool).await)
}

/// Reads a runtime setting (kill switches live here).
pub async fn setting(db: &Db, key: &str) -> Result<Option<String>, sqlx::Error> {
    db_run!(db, pool => sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key).fetch_optional(pool).await)
}

/// All settings whose key starts with `prefix`.
pub async fn settings_with_prefix(
    db: &Db,
    prefix: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let pattern = format!("{prefix}%");
    db_run!(db, pool => sqlx::query_as("SELECT key, value FROM settings WHERE key LIKE $1")
        .bind(pattern).fetch_all(pool).await)
}

pub async fn set_setting(db: &Db, key: &str, value: &str, now: i64) -> Result<(), sqlx::Error> {
    db_run!(db, pool => sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
        .bind(key).bind(value).bind(now)
        .execute(pool).await.map(|_| ()))
}

/// Lets parked jobs run (the enqueue switch is back on). Returns how many.
pub async fn unpark_all(db: &Db) -> Result<u64, sqlx::Error> {
    db_run!(db, pool => sqlx::query("UPDATE jobs SET parked = FALSE WHERE parked")
        .execute(pool).await.map(|r| r.rows_affected()))
}

/// Deletes up to `batch` jobs in `states` finished before `before`. Returns how many.
pub async fn prune(
    db: &Db,
    finished_states: &[&str],
    before: i64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let placeholders: Vec<String> = (0..finished_states.len())
        .map(|i| format!("${}", i + 3))
        .collect();
    let sql = format!(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state IN ({}) \
         AND finalized_at < $1 LIMIT $2)",
        placeholders.join(", ")
    );
    db_run!(db, pool => {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before).bind(batch);
        for s in finished_states {
            q = q.bind(*s);
        }
        q.execute(pool).await.map(|r| r.rows_affected())
    })
}

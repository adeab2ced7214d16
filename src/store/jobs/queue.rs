//! The queries a worker runs: enqueue, claim, complete, fail, release, heartbeat, rescue.
//! None of them holds a transaction while a handler runs.

use crate::store::{Db, Tx};
use crate::{db_run, tx_run};

/// What to insert.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub queue: &'a str,
    pub kind: &'a str,
    pub args: &'a str,
    pub priority: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub run_at: i64,
    pub created_at: i64,
    pub parked: bool,
    pub unique_key: Option<&'a str>,
    /// The `Idempotency-Key` effect of the request that enqueued it (an app's HTTP job).
    pub effect_key: Option<&'a str>,
}

/// The NOTIFY channel workers LISTEN on (PostgreSQL); the payload is the queue name.
pub const NOTIFY_CHANNEL: &str = "tollgate_jobs";

/// Inserts a job in the caller's transaction. Returns `(id, inserted)`: with a unique key that
/// an unfinished job already holds, nothing is inserted and that job's id is returned.
/// A job a store change enqueues in its own transaction (the store has no `jobs::Client`): on
/// the events queue, due now, 10 attempts of at most a minute each, unique by `unique` while
/// unfinished when given.
pub async fn insert_follow_up(
    tx: &mut Tx,
    kind: &str,
    args: &serde_json::Value,
    unique: Option<&str>,
) -> Result<(), sqlx::Error> {
    let now = crate::store::now_ms();
    let args = args.to_string();
    let job = NewJob {
        queue: crate::store::events::QUEUE,
        kind,
        args: &args,
        priority: 0,
        max_attempts: 10,
        timeout_ms: 60_000,
        run_at: now,
        created_at: now,
        parked: false,
        unique_key: unique,
        effect_key: None,
    };
    insert(tx, &job).await.map(|_| ())
}

pub async fn insert(tx: &mut Tx, job: &NewJob<'_>) -> Result<(i64, bool), sqlx::Error> {
    let inserted: Option<i64> = tx_run!(tx, c => sqlx::query_scalar(
        "INSERT INTO jobs (queue, kind, args, state, priority, attempt, max_attempts, timeout_ms, \
         run_at, created_at, parked, unique_key, effect_key) \
         VALUES ($1, $2, $3, 'available', $4, 0, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (kind, unique_key) \
         WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable') \
         DO NOTHING RETURNING id")
        .bind(job.queue).bind(job.kind).bind(job.args).bind(job.priority)
        .bind(job.max_attempts).bind(job.timeout_ms).bind(job.run_at).bind(job.created_at)
        .bind(job.parked).bind(job.unique_key).bind(job.effect_key)
        .fetch_optional(&mut **c).await)?;
    if let Some(id) = inserted {
        if let Tx::Postgres(c) = tx
            && !job.parked
        {
            // Delivered at commit, so a worker never wakes for a job it cannot see yet.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(job.queue)
                .execute(&mut **c)
                .await?;
        }
        return Ok((id, true));
    }
    let existing: i64 = tx_run!(tx, c => sqlx::query_scalar(
        "SELECT id FROM jobs WHERE kind = $1 AND unique_key = $2 \
         AND state IN ('available', 'running', 'retryable')")
        .bind(job.kind).bind(job.unique_key)
        .fetch_one(&mut **c).await)?;
    Ok((existing, false))
}

/// The job enqueued under an `Idempotency-Key` effect, if any.
pub async fn by_effect_key(tx: &mut Tx, key: &str) -> Result<Option<i64>, sqlx::Error> {
    tx_run!(tx, c => sqlx::query_scalar("SELECT id FROM jobs WHERE effect_key = $1")
        .bind(key).fetch_optional(&mut **c).await)
}

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub args: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub created_at: i64,
    pub run_at: i64,
}

macro_rules! claimed_row {
    ($r:expr) => {{
        use sqlx::Row;
        let r = $r;
        Claimed {
            id: r.try_get("id")?,
            queue: r.try_get("queue")?,
            kind: r.try_get("kind")?,
            args: r.try_get("args")?,
            attempt: r.try_get("attempt")?,
            max_attempts: r.try_get("max_attempts")?,
            timeout_ms: r.try_get("timeout_ms")?,
            created_at: r.try_get("created_at")?,
            run_at: r.try_get("run_at")?,
        }
    }};
}

/// Claims up to `limit` due jobs of `queue` for `worker`, most urgent first, and leases them
/// until `locked_until`. PostgreSQL skips rows other workers are claiming; SQLite has one
/// writer at a time, so one UPDATE … RETURNING is already exclusive.
pub async fn claim(
    db: &Db,
    queue: &str,
    worker: &str,
    limit: i64,
    now: i64,
    locked_until: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    const RETURNING: &str = "RETURNING jobs.id, jobs.queue, jobs.kind, jobs.args, jobs.attempt, \
         jobs.max_attempts, jobs.timeout_ms, jobs.created_at, jobs.run_at";
    const SET: &str = "SET state = 'running', attempt = attempt + 1, attempted_at = $1, \
         attempted_by = $2, locked_until = $3";
    const DUE: &str = "SELECT id FROM jobs WHERE state IN ('available', 'retryable') \
         AND NOT parked AND queue = $4 AND run_at <= $1 ORDER BY priority, run_at, id LIMIT $5";
    let sql = match db {
        Db::Postgres(..) => format!(
            "WITH next AS ({DUE} FOR UPDATE SKIP LOCKED) \
             UPDATE jobs {SET} FROM next WHERE jobs.id = next.id {RETURNING}"
        ),
        Db::Sqlite(_) => format!("UPDATE jobs {SET} WHERE id IN ({DUE}) {RETURNING}"),
    };
    db_run!(db, pool => {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now).bind(worker).bind(locked_until).bind(queue).bind(limit)
            .fetch_all(pool).await?;
        rows.iter().map(|r| Ok(claimed_row!(r))).collect()
    })
}

/// Marks a batch of jobs completed, if `worker` still holds them. Returns how many it did.
pub async fn complete_many(
    db: &Db,
    ids: &[i64],
    worker: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    const SET: &str = "UPDATE jobs SET state = 'completed', finalized_at = $1, locked_until = NULL";
    let done = match db {
        Db::Postgres(pool, _) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SET} WHERE id = ANY($2) AND state = 'running' AND attempted_by = $3"
        )))
        .bind(now)
        .bind(ids)
        .bind(worker)
        .execute(pool)
        .await?
        .rows_affected(),
        Db::Sqlite(pool) => {
            let list = serde_json::to_string(ids).expect("integers serialise");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SET} WHERE id IN (SELECT value FROM json_each($2)) AND state = 'running' \
                 AND attempted_by = $3"
            )))
            .bind(now)
            .bind(list)
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
        }
    };
    Ok(done)
}

/// How a failed attempt ends.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    pub id: i64,
    pub attempt: i64,
    /// The worker that held the attempt; `None` when a rescuer ends a lost attempt.
    pub worker: Option<&'a str>,
    pub error: &'a str,
    pub now: i64,
    /// `Some(run_at)`: retry then; `None`: discard (dead letter).
    pub retry_at: Option<i64>,
}

/// Records a failed attempt: the job becomes retryable or discarded and the error is kept.
/// Does nothing (returns false) if the attempt is no longer the job's current running one.
pub async fn fail(db: &Db, f: &Failure<'_>) -> Result<bool, sqlx::Error> {
    let (state, run_at, finalized) = match f.retry_at {
        Some(at) => ("retryable", at, None),
        None => ("discarded", f.now, Some(f.now)),
    };
    let error = truncate(f.error, 4000);
    let mut tx = db.begin().await?;
    let updated = tx_run!(&mut tx, c => sqlx::query(
        "UPDATE jobs SET state = $1, run_at = $2, finalized_at = $3, locked_until = NULL, \
         last_error = $4 WHERE id = $5 AND attempt = $6 AND state = 'running' \
         AND ($7 IS NULL OR attempted_by = $7) AND ($7 IS NOT NULL OR locked_until < $8)")
        .bind(state).bind(run_at).bind(finalized).bind(error).bind(f.id).bind(f.attempt)
        .bind(f.worker).bind(f.now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    if updated == 0 {
        return Ok(false);
    }
    tx_run!(&mut tx, c => sqlx::query(
        "INSERT INTO job_errors (job_id, attempt, at, worker, error) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
        .bind(f.id).bind(f.attempt).bind(f.now).bind(f.worker).bind(error)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(true)
}

/// Gives an unfinished attempt back (shutdown): the job is available again at once, and the
/// attempt does not count, since the job did not fail.
pub async fn release(db: &Db, id: i64, worker: &str, now: i64) -> Result<bool, sqlx::Error> {
    let n = db_run!(db, pool => sqlx::query(
        "UPDATE jobs SET state = 'available', attempt = attempt - 1, run_at = $1, \
         locked_until = NULL WHERE id = $2 AND state = 'running' AND attempted_by = $3")
        .bind(now).bind(id).bind(worker)
        .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Extends the lease of every job `worker` runs; returns the ids it still holds (a job missing
/// from the answer was cancelled, discarded or rescued meanwhile).
pub async fn heartbeat(db: &Db, worker: &str, locked_until: i64) -> Result<Vec<i64>, sqlx::Error> {
    db_run!(db, pool => sqlx::query_scalar(
        "UPDATE jobs SET locked_until = $1 WHERE state = 'running' AND attempted_by = $2 RETURNING id")
        .bind(locked_until).bind(worker)
        .fetch_all(pool).await)
}

/// A running job whose lease ran out.
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub attempted_by: Option<String>,
}

/// Running jobs whose lease ended before `now`, oldest first.
pub async fn expired_leases(db: &Db, now: i64, limit: i64) -> Result<Vec<Expired>, sqlx::Error> {
    db_run!(db, pool => {
        let rows = sqlx::query(
            "SELECT id, kind, queue, attempt, max_attempts, attempted_by FROM jobs \
             WHERE state = 'running' AND locked_until < $1 ORDER BY locked_until LIMIT $2")
            .bind(now).bind(limit)
            .fetch_all(pool).await?;
        rows.iter().map(|r| {
            use sqlx::Row;
            Ok(Expired {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                queue: r.try_get("queue")?,
                attempt: r.try_get("attempt")?,
                max_attempts: r.try_get("max_attempts")?,
                attempted_by: r.try_get("attempted_by")?,
            })
        }).collect()
    })
}

/// Cuts long error text at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

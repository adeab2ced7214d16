//! Stored answers for `Idempotency-Key`: the first request with a key claims it (a row with a
//! lock), runs, and stores its final status, headers and body; repeats replay that answer.

use crate::scoped_run;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

/// An answer stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
    /// JSON list of `[name, value]` pairs.
    pub headers: String,
    pub body: Vec<u8>,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request runs; complete or abandon the row with this id.
    Fresh(i64),
    /// The first request with this key is still running.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
    /// The first request finished; replay its answer.
    Done(Stored),
}

/// Claims `(principal, key)` for a request with `fingerprint`. A claim whose lock expired (its
/// process died mid-request) is taken over.
pub async fn claim(
    db: &Db,
    app_id: Option<i64>,
    principal: &str,
    key: &str,
    fingerprint: &str,
    lock_ms: i64,
) -> Result<Claim, sqlx::Error> {
    let now = now_ms();
    let scope = Scope::of(app_id);
    let inserted: Option<i64> = scoped_run!(db, scope, c => sqlx::query_scalar(
        "INSERT INTO idempotency_keys (app_id, principal, key, fingerprint, locked_until, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (principal, key) DO NOTHING RETURNING id")
        .bind(app_id).bind(principal).bind(key).bind(fingerprint).bind(now + lock_ms).bind(now)
        .fetch_optional(c).await)?;
    if let Some(id) = inserted {
        return Ok(Claim::Fresh(id));
    }
    type Row = (
        i64,
        String,
        Option<i32>,
        Option<String>,
        Option<Vec<u8>>,
        Option<i64>,
    );
    let row: Option<Row> = scoped_run!(db, scope, c => sqlx::query_as(
        "SELECT id, fingerprint, status, headers, body, locked_until FROM idempotency_keys \
         WHERE principal = $1 AND key = $2")
        .bind(principal).bind(key).fetch_optional(c).await)?;
    // Pruned between the two statements: treat as in flight; the client's retry will claim it.
    let Some((id, stored_fingerprint, status, headers, body, locked_until)) = row else {
        return Ok(Claim::InFlight);
    };
    if stored_fingerprint != fingerprint {
        return Ok(Claim::Mismatch);
    }
    if let Some(status) = status {
        return Ok(Claim::Done(Stored {
            status: status as u16,
            headers: headers.unwrap_or_else(|| "[]".into()),
            body: body.unwrap_or_default(),
        }));
    }
    if locked_until.is_some_and(|until| until < now) {
        let taken: Option<i64> = scoped_run!(db, scope, c => sqlx::query_scalar(
            "UPDATE idempotency_keys SET locked_until = $1 WHERE id = $2 AND status IS NULL \
             AND locked_until < $3 RETURNING id")
            .bind(now + lock_ms).bind(id).bind(now).fetch_optional(c).await)?;
        if let Some(id) = taken {
            return Ok(Claim::Fresh(id));
        }
    }
    Ok(Claim::InFlight)
}

/// Stores the final answer of a claimed request.
pub async fn complete(
    db: &Db,
    app_id: Option<i64>,
    id: i64,
    answer: &Stored,
) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::of(app_id), c => sqlx::query(
        "UPDATE idempotency_keys SET status = $1, headers = $2, body = $3, locked_until = NULL \
         WHERE id = $4")
        .bind(answer.status as i32).bind(&answer.headers).bind(&answer.body).bind(id)
        .execute(c).await.map(|_| ()))
}

/// Moves a running request's lock to `until` (its request is still alive). False when the row
/// was completed or forgotten meanwhile.
pub async fn extend(
    db: &Db,
    app_id: Option<i64>,
    id: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
    scoped_run!(db, Scope::of(app_id), c => sqlx::query(
        "UPDATE idempotency_keys SET locked_until = $1 WHERE id = $2 AND status IS NULL")
        .bind(until).bind(id).execute(c).await.map(|r| r.rows_affected() == 1))
}

/// Forgets a claim whose request failed in a way a retry may fix (a 5xx): nothing was stored.
pub async fn abandon(db: &Db, app_id: Option<i64>, id: i64) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::of(app_id), c => sqlx::query("DELETE FROM idempotency_keys WHERE id = $1")
        .bind(id).execute(c).await.map(|_| ()))
}

/// Deletes up to `limit` keys created before `before`; returns how many.
pub async fn prune(db: &Db, before: i64, limit: i64) -> Result<u64, sqlx::Error> {
    scoped_run!(db, Scope::AllApps, c => sqlx::query(
        "DELETE FROM idempotency_keys WHERE id IN \
         (SELECT id FROM idempotency_keys WHERE created_at < $1 LIMIT $2)")
        .bind(before).bind(limit).execute(c).await.map(|r| r.rows_affected()))
}

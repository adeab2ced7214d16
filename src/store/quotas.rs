//! Quota counters: usage per user, metric and period. Checked and incremented in one statement
//! (an upsert that only updates while the sum stays within the limit), so concurrent requests
//! never pass a limit together. A period is keyed by its start: a new period starts at zero.

use crate::scoped_run;
use crate::store::Db;
use crate::store::ledger::Target;
use crate::store::scope::Scope;

/// Adds `quantity` to the counter if the result stays within `limit`. Returns the new count, or
/// `None` when it would exceed the limit (nothing is added).
pub async fn consume(
    db: &Db,
    t: Target,
    metric: &str,
    period_start: i64,
    quantity: i64,
    limit: i64,
) -> Result<Option<i64>, sqlx::Error> {
    if quantity > limit {
        return Ok(None);
    }
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
        "INSERT INTO quota_counters (app_id, user_id, metric, period_start, used) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, metric, period_start) DO UPDATE SET used = quota_counters.used + excluded.used \
         WHERE quota_counters.used + excluded.used <= $6 RETURNING used")
        .bind(t.app_id).bind(t.user_id).bind(metric).bind(period_start).bind(quantity).bind(limit)
        .fetch_optional(c).await)
}

/// Takes back `quantity` counted for work that did not happen (never below zero).
pub async fn give_back(
    db: &Db,
    t: Target,
    metric: &str,
    period_start: i64,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
        "UPDATE quota_counters SET used = used - $1 WHERE app_id = $2 AND user_id = $3 \
         AND metric = $4 AND period_start = $5 AND used >= $1")
        .bind(quantity).bind(t.app_id).bind(t.user_id).bind(metric).bind(period_start)
        .execute(c).await.map(|_| ()))
}

/// The count of `metric` in the period starting at `period_start` (0 when nothing was used).
pub async fn used(db: &Db, t: Target, metric: &str, period_start: i64) -> Result<i64, sqlx::Error> {
    let used: Option<i64> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
        "SELECT used FROM quota_counters WHERE app_id = $1 AND user_id = $2 AND metric = $3 \
         AND period_start = $4")
        .bind(t.app_id).bind(t.user_id).bind(metric).bind(period_start).fetch_optional(c).await)?;
    Ok(used.unwrap_or(0))
}

//! Quota counters: usage per user, metric and period. Checked and incremented in one statement
//! (an upsert that only updates while the sum stays within the limit), so concurrent requests
//! never pass a limit together. A period is keyed by its start: a new period starts at zero.

use crate::domain::plans::{Period, Plan};
use crate::scoped_run;
use crate::store::Db;
use crate::store::ledger::{Target, UserPlan};
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

/// What one use of a plan's quota on a metric came to.
#[derive(Debug, Clone, Copy)]
pub enum PlanQuota {
    /// The plan sets no quota on the metric: nothing is counted.
    Unlimited,
    /// Counted: the period's count after this use.
    Counted { used: i64, period: Period },
    /// The period's limit is reached: nothing is counted.
    Refused { limit: i64, retry_after_secs: u64 },
}

/// Counts `quantity` of `metric` against the user's plan in the current period (the plan's
/// period kind, anchored on the user's billing period where it is one). The one place the
/// plan's quota rule is applied: the quota API and the gateway both count through it.
pub async fn consume_on_plan(
    db: &Db,
    t: Target,
    user: &UserPlan,
    plan: &Plan,
    metric: &str,
    quantity: i64,
    now: i64,
) -> Result<PlanQuota, sqlx::Error> {
    let Some(quota) = plan.quotas.get(metric) else {
        return Ok(PlanQuota::Unlimited);
    };
    let period = Period::of(quota.period, now, user.billing);
    match consume(db, t, metric, period.start, quantity, quota.limit).await? {
        Some(used) => Ok(PlanQuota::Counted { used, period }),
        None => {
            metrics::counter!(crate::store::ledger::metrics::QUOTA_REFUSED, "metric" => metric.to_string(), "app_id" => t.app_id.to_string())
                .increment(1);
            Ok(PlanQuota::Refused {
                limit: quota.limit,
                retry_after_secs: ((period.end - now).max(0) as u64).div_ceil(1000),
            })
        }
    }
}

//! Everything `GET /v1/me` shows about a user — who they are, their plan, balances and buckets,
//! quota counters, whether this period's credits were granted — read in one scoped transaction
//! (two to four statements) instead of one transaction per statement.

use crate::domain::plans::{BillingSettings, Period, Plan};
use crate::scoped_conn;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

use super::{Balances, Bucket, Target, UserPlan};

/// A user as `/v1/me` shows them.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub user_id: i64,
    pub created_at: i64,
    pub invited_at: Option<i64>,
    pub app_name: String,
    pub user_plan: UserPlan,
    pub plan: Plan,
    pub balances: Balances,
    /// (metric, period start, used) of the counters that may be current.
    pub quota_used: Vec<(String, i64, i64)>,
    /// False when the plan includes credits for this period and they were not granted yet.
    pub period_granted: bool,
}

impl Snapshot {
    /// Whether [`super::refresh`] has something to write (period credits, expired buckets).
    pub fn needs_refresh(&self, now: i64) -> bool {
        !self.period_granted
            || self
                .balances
                .buckets
                .iter()
                .any(|b| b.expires_at.is_some_and(|at| at <= now))
    }

    /// Usage of `metric` in the period starting at `start`.
    pub fn used(&self, metric: &str, start: i64) -> i64 {
        self.quota_used
            .iter()
            .find(|(m, s, _)| m == metric && *s == start)
            .map_or(0, |(_, _, used)| *used)
    }
}

type UserColumns = (
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);
type BucketColumns = (
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The snapshot, or `None` when the user does not exist or was deleted.
pub async fn snapshot(
    db: &Db,
    t: Target,
    billing: &BillingSettings,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let now = now_ms();
    scoped_conn!(db, Scope::App(t.app_id), conn => async {
        let user: Option<UserColumns> = sqlx::query_as(
            "SELECT u.id, u.created_at, u.invited_at, u.deleted_at, a.name, u.plan_id, \
             u.period_start, u.period_end, u.plan_until FROM users u JOIN apps a ON a.id = u.app_id \
             WHERE u.app_id = $1 AND u.id = $2")
            .bind(t.app_id).bind(t.user_id).fetch_optional(&mut *conn).await?;
        let Some((user_id, created_at, invited_at, deleted_at, app_name, plan_id, start, end, until)) = user else {
            return Ok(None);
        };
        if deleted_at.is_some() {
            return Ok(None);
        }
        let user_plan = UserPlan::read((plan_id, start, end, until), now);
        let plan = billing.plan(user_plan.plan_id.as_deref());
        // The account and its buckets in one statement (no account yet: no rows).
        let rows: Vec<BucketColumns> = sqlx::query_as(
            "SELECT a.balance, a.held, g.id, g.source, g.amount, g.remaining, g.expires_at, g.created_at \
             FROM credit_accounts a LEFT JOIN credit_grants g ON g.user_id = a.user_id AND g.remaining > 0 \
             WHERE a.user_id = $1 AND a.app_id = $2 \
             ORDER BY g.expires_at IS NULL, g.expires_at, g.id LIMIT 1000")
            .bind(t.user_id).bind(t.app_id).fetch_all(&mut *conn).await?;
        let mut balances = Balances::default();
        for (balance, held, id, source, amount, remaining, expires_at, created) in rows {
            balances.balance = balance;
            balances.held = held;
            if let (Some(grant_id), Some(source), Some(amount), Some(remaining), Some(created_at)) =
                (id, source, amount, remaining, created)
            {
                balances.buckets.push(Bucket { grant_id, source, amount, remaining, expires_at, created_at });
            }
        }
        let period_granted = if let Some(key) = user_plan
            .credit_key(t, &plan.id, now)
            .filter(|_| plan.credits.is_positive())
        {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM ledger_entries WHERE app_id = $1 AND idempotency_key = $2")
                .bind(t.app_id).bind(&key).fetch_optional(&mut *conn).await?;
            found.is_some()
        } else {
            true
        };
        let earliest = plan
            .quotas
            .values()
            .map(|q| Period::of(q.period, now, user_plan.billing).start)
            .min();
        let quota_used: Vec<(String, i64, i64)> = match earliest {
            Some(since) => sqlx::query_as(
                "SELECT metric, period_start, used FROM quota_counters \
                 WHERE app_id = $1 AND user_id = $2 AND period_start >= $3")
                .bind(t.app_id).bind(t.user_id).bind(since).fetch_all(&mut *conn).await?,
            None => Vec::new(),
        };
        Ok(Some(Snapshot {
            user_id,
            created_at,
            invited_at,
            app_name,
            user_plan,
            plan,
            balances,
            quota_used,
            period_granted,
        }))
    }.await)
}

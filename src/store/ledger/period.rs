//! The user's plan and billing period, and the credits each period includes: granted once per
//! period (the idempotency key is user + plan + period start) by the cron job, or on first use if the
//! job has not reached the user yet, whichever comes first.

use crate::domain::plans::{BillingSettings, Period, Plan, iso};
use crate::store::identity::{NewAudit, record_audit_tx};
use crate::store::scope::{self, Scope};
use crate::store::{Db, now_ms};
use crate::{scoped_conn, scoped_run, tx_run};

use super::{Credit, LedgerError, Note, Target, credit, expire_grants};

/// The plan a user is on (`None`: the app's default) and their billing period, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPlan {
    pub plan_id: Option<String>,
    pub billing: Option<Period>,
    /// When the plan stops applying unless renewed (a subscription set to cancel).
    pub until: Option<i64>,
}

/// The `users` columns a [`UserPlan`] is read from.
pub(crate) const PLAN_COLUMNS: &str = "plan_id, period_start, period_end, plan_until";

/// Those columns as read.
pub type PlanColumns = (Option<String>, Option<i64>, Option<i64>, Option<i64>);

impl UserPlan {
    /// The plan the stored columns give at `now`: the default plan (and no billing period) once
    /// `plan_until` has passed.
    pub fn read((plan_id, start, end, until): PlanColumns, now: i64) -> UserPlan {
        if until.is_some_and(|u| u <= now) {
            return UserPlan::default();
        }
        UserPlan {
            plan_id,
            billing: start.zip(end).map(|(start, end)| Period { start, end }),
            until,
        }
    }

    /// The period whose credits the user gets at `now`: the calendar month (UTC) for a plan
    /// without a billing period; the paid period while it lasts for one with a period (a store
    /// subscription). Between a paid period's end and its renewal — a late webhook, the grace
    /// before a lapse — none: the renewal grants the next paid period, so a calendar month is
    /// never granted beside it.
    pub fn credit_period(&self, now: i64) -> Option<Period> {
        match self.billing {
            Some(b) => (b.start <= now && now < b.end).then_some(b),
            None => Some(Period::month_of(now)),
        }
    }

    /// The ledger key of the period credits due at `now`, if any are ([`period_key`]).
    pub fn credit_key(&self, t: Target, plan_id: &str, now: i64) -> Option<String> {
        self.credit_period(now).map(|p| period_key(t, plan_id, p))
    }
}

pub async fn user_plan(db: &Db, t: Target) -> Result<UserPlan, sqlx::Error> {
    let row = plan_columns(db, t).await?;
    let now = now_ms();
    Ok(row.map(|r| UserPlan::read(r, now)).unwrap_or_default())
}

/// The user's plan columns as stored (`None`: no such user).
pub async fn plan_columns(db: &Db, t: Target) -> Result<Option<PlanColumns>, sqlx::Error> {
    let sql = format!("SELECT {PLAN_COLUMNS} FROM users WHERE app_id = $1 AND id = $2");
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(t.app_id).bind(t.user_id).fetch_optional(c).await)
}

/// Puts a user on a plan (`None`: the default), with an optional billing period, and writes
/// the audit row in the same transaction. Takes effect on the user's next request. False if
/// there is no such live user.
pub async fn set_plan(
    db: &Db,
    t: Target,
    plan: &UserPlan,
    audit: Option<&NewAudit<'_>>,
) -> Result<bool, sqlx::Error> {
    let (start, end) = plan.billing.map(|p| (p.start, p.end)).unzip();
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let was: Option<Option<String>> = tx_run!(&mut tx, c => sqlx::query_scalar(
        "SELECT plan_id FROM users WHERE app_id = $1 AND id = $2 AND deleted_at IS NULL")
        .bind(t.app_id).bind(t.user_id).fetch_optional(&mut **c).await)?;
    let updated = tx_run!(&mut tx, c => sqlx::query(
        "UPDATE users SET plan_id = $1, period_start = $2, period_end = $3, plan_until = $4 \
         WHERE app_id = $5 AND id = $6 AND deleted_at IS NULL")
        .bind(&plan.plan_id).bind(start).bind(end).bind(plan.until).bind(t.app_id).bind(t.user_id)
        .execute(&mut **c).await.map(|r| r.rows_affected() == 1))?;
    if updated && let Some(a) = audit {
        record_audit_tx(&mut tx, a).await?;
    }
    // Most calls set the plan the user already has (every delivery of a subscription): only a
    // different plan id reads the app's plans, which name the entitlements announced.
    if updated
        && let Some(was) = was
        && was != plan.plan_id
    {
        let billing = crate::store::identity::app_by_id(db, t.app_id)
            .await?
            .map(|a| a.settings.billing)
            .unwrap_or_default();
        let (old, new) = (
            billing.plan(was.as_deref()),
            billing.plan(plan.plan_id.as_deref()),
        );
        if old.id != new.id {
            let data = crate::domain::events::EntitlementsUpdated {
                user_id: String::new(),
                plan_id: new.id.clone(),
                entitlements: new.entitlements.clone(),
            };
            let e = crate::store::events::Outgoing::about(
                crate::domain::events::EventType::EntitlementsUpdated,
                t.user_id,
                // A change of plan happens once; a later change back is a new event.
                format!(
                    "entitlements.updated:{}:{}",
                    t.user_id,
                    uuid::Uuid::now_v7().simple()
                ),
                data,
            );
            crate::store::events::publish(&mut tx, t.app_id, &e).await?;
        }
    }
    tx.commit().await?;
    Ok(updated)
}

/// Grants the credits the user's plan includes for the current period, unless already granted.
/// They expire at the period's end. Source `monthly_free` on the default plan, `subscription`
/// on any other. Returns true when it granted now.
pub async fn grant_period_credits(
    db: &Db,
    t: Target,
    billing: &BillingSettings,
    user: &UserPlan,
    plan: &Plan,
) -> Result<bool, LedgerError> {
    if !plan.credits.is_positive() {
        return Ok(false);
    }
    let Some(period) = user.credit_period(now_ms()) else {
        return Ok(false);
    };
    let key = period_key(t, &plan.id, period);
    let source = if plan.id == billing.default_plan {
        "monthly_free"
    } else {
        "subscription"
    };
    let reason = format!("credits included in plan {:?}", plan.id);
    let written = credit(
        db,
        t,
        &Credit {
            kind: super::EntryKind::Grant,
            amount: plan.credits.0,
            source,
            expires_at: Some(period.end),
            note: Note {
                reason: Some(&reason),
                reference: Some(&plan.id),
                key: Some(&key),
            },
        },
        None,
    )
    .await?;
    Ok(!written.is_replayed())
}

/// Brings a user's ledger up to date before it is read or charged: this period's included
/// credits granted, expired buckets removed. Returns the user's plan.
pub async fn refresh(
    db: &Db,
    t: Target,
    billing: &BillingSettings,
) -> Result<(UserPlan, Plan), LedgerError> {
    let now = now_ms();
    // One scoped read decides whether anything needs writing (usually not).
    let (user, granted, expired) = scoped_conn!(db, Scope::App(t.app_id), c => async {
        let row: Option<PlanColumns> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLAN_COLUMNS} FROM users WHERE app_id = $1 AND id = $2")))
            .bind(t.app_id).bind(t.user_id).fetch_optional(&mut *c).await?;
        let user = row.map(|r| UserPlan::read(r, now)).unwrap_or_default();
        let plan = billing.plan(user.plan_id.as_deref());
        let granted = if let Some(key) = user
            .credit_key(t, &plan.id, now)
            .filter(|_| plan.credits.is_positive())
        {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM ledger_entries WHERE app_id = $1 AND idempotency_key = $2")
                .bind(t.app_id).bind(&key).fetch_optional(&mut *c).await?;
            found.is_some()
        } else {
            true
        };
        let expired: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM credit_grants WHERE user_id = $1 AND app_id = $2 AND remaining > 0 \
             AND expires_at <= $3 LIMIT 1")
            .bind(t.user_id).bind(t.app_id).bind(now).fetch_optional(&mut *c).await?;
        Ok::<_, sqlx::Error>((user, granted, expired.is_some()))
    }.await)?;
    let plan = billing.plan(user.plan_id.as_deref());
    if !granted {
        grant_period_credits(db, t, billing, &user, &plan).await?;
    }
    if expired {
        expire_grants(db, t).await?;
    }
    Ok((user, plan))
}

/// Period-credit keys this process has seen granted. A grant is never undone, so a key once
/// seen needs no second look: the AI call path reads one row per call instead of three.
#[derive(Debug, Default)]
pub struct GrantedKeys(std::sync::Mutex<std::collections::HashSet<String>>);

/// Beyond this many entries a cache starts over (bounded memory; a miss costs one read).
const CACHE_MAX: usize = 100_000;

impl GrantedKeys {
    fn contains(&self, key: &str) -> bool {
        self.0.lock().expect("granted keys").contains(key)
    }

    fn insert(&self, key: String) {
        let mut keys = self.0.lock().expect("granted keys");
        if keys.len() >= CACHE_MAX {
            keys.clear();
        }
        keys.insert(key);
    }
}

/// Each user's plan columns as this process last read them, for the AI call path. A call priced
/// on them carries them to its hold, and the hold's batch refuses it if the database says
/// otherwise ([`super::LedgerError::PlanChanged`]): a plan change is never missed, and the
/// call path reads no user row while nothing changes.
#[derive(Debug, Default)]
pub struct PlanCache(std::sync::Mutex<std::collections::HashMap<(i64, i64), PlanColumns>>);

impl PlanCache {
    fn get(&self, t: Target) -> Option<PlanColumns> {
        let plans = self.0.lock().expect("plan cache");
        plans.get(&(t.app_id, t.user_id)).cloned()
    }

    fn put(&self, t: Target, columns: PlanColumns) {
        let mut plans = self.0.lock().expect("plan cache");
        if plans.len() >= CACHE_MAX {
            plans.clear();
        }
        plans.insert((t.app_id, t.user_id), columns);
    }
}

/// What an AI call is priced on: the user's plan, and the columns it was read from.
pub struct CallPlan {
    pub user: UserPlan,
    pub plan: Plan,
    /// `None`: no such user row (nothing to check at the hold).
    pub columns: Option<PlanColumns>,
}

/// [`refresh`] for an AI call, whose hold expires buckets itself under the account lock: the
/// user's plan (from `plans` unless `fresh`), and this period's credits granted unless `seen`
/// knows them granted.
pub async fn refresh_for_charge(
    db: &Db,
    t: Target,
    billing: &BillingSettings,
    (seen, plans): (&GrantedKeys, &PlanCache),
    fresh: bool,
) -> Result<CallPlan, LedgerError> {
    let columns = match plans.get(t).filter(|_| !fresh) {
        Some(c) => Some(c),
        None => {
            let read = plan_columns(db, t).await?;
            if let Some(c) = &read {
                plans.put(t, c.clone());
            }
            read
        }
    };
    let now = now_ms();
    let user = columns
        .clone()
        .map(|c| UserPlan::read(c, now))
        .unwrap_or_default();
    let plan = billing.plan(user.plan_id.as_deref());
    if let Some(key) = user
        .credit_key(t, &plan.id, now)
        .filter(|k| plan.credits.is_positive() && !seen.contains(k))
    {
        grant_period_credits(db, t, billing, &user, &plan).await?;
        seen.insert(key);
    }
    Ok(CallPlan {
        user,
        plan,
        columns,
    })
}

/// One grant per user, plan and period: an upgrade mid-period grants the new plan's credits
/// too; switching back and forth grants each plan's at most once.
pub fn period_key(t: Target, plan_id: &str, period: Period) -> String {
    format!(
        "period-credits:{}:{plan_id}:{}",
        t.user_id,
        iso(period.start)
    )
}

/// id, then the plan columns.
type UserPlanRow = (i64, Option<String>, Option<i64>, Option<i64>, Option<i64>);

/// Live users of an app after `after_id`, for jobs that walk every user: (id, plan).
pub async fn users_page(
    db: &Db,
    app_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<(i64, UserPlan)>, sqlx::Error> {
    let rows: Vec<UserPlanRow> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT id, plan_id, period_start, period_end, plan_until FROM users WHERE app_id = $1 \
         AND id > $2 AND deleted_at IS NULL ORDER BY id LIMIT $3")
        .bind(app_id).bind(after_id).bind(limit).fetch_all(c).await)?;
    let now = now_ms();
    Ok(rows
        .into_iter()
        .map(|(id, plan_id, start, end, until)| {
            (id, UserPlan::read((plan_id, start, end, until), now))
        })
        .collect())
}

/// Of these idempotency keys, the ones already written in the app (one query for a page of
/// users, so the periodic job reads little when everyone has their credits).
pub async fn existing_keys(
    db: &Db,
    app_id: i64,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let placeholders: Vec<String> = (2..keys.len() + 2).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT idempotency_key FROM ledger_entries WHERE app_id = $1 AND idempotency_key IN ({})",
        placeholders.join(", ")
    );
    let found: Vec<String> = scoped_run!(db, Scope::App(app_id), c => {
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(app_id);
        for k in keys {
            q = q.bind(k);
        }
        q.fetch_all(c).await
    })?;
    Ok(found.into_iter().collect())
}

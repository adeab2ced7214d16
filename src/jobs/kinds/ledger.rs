//! Ledger upkeep: resolving holds past their timeout and removing expired grants
//! (`ledger.expire`), and granting each user the credits of their plan's period
//! (`ledger.period_credits`). Both are idempotent: re-running them changes nothing twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::plans::Plan;
use crate::jobs::{Job, JobContext};
use crate::store::identity;
use crate::store::ledger::{self, Target};

/// Rows handled per batch.
const BATCH: i64 = 500;

/// Resolves holds left open past their expiry (settled at recorded usage, else released) and
/// expires what is left of grants past their expiry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expire {}

impl Expire {
    pub const KIND_NAME: &'static str = "ledger.expire";
}

impl Job for Expire {
    const KIND: &'static str = Expire::KIND_NAME;
    const QUEUE: &'static str = crate::jobs::MAINTENANCE_QUEUE;
    const MAX_ATTEMPTS: i64 = 5;
    const TIMEOUT: Duration = Duration::from_secs(300);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let mut holds = 0;
        while !ctx.cancel.is_cancelled() {
            let n = ledger::expire_holds(&ctx.db, BATCH).await?;
            holds += n;
            if (n as i64) < BATCH {
                break;
            }
        }
        let mut grants = 0;
        for t in ledger::users_with_expired_grants(&ctx.db, BATCH * 10).await? {
            grants += ledger::expire_grants(&ctx.db, t).await?;
        }
        if holds + grants > 0 {
            tracing::info!(holds, grants, "expired holds and grants");
        }
        Ok(())
    }
}

/// Grants every live user of every app the credits their plan includes for the current period,
/// unless already granted (by an earlier run or lazily on first use).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodCredits {}

impl PeriodCredits {
    pub const KIND_NAME: &'static str = "ledger.period_credits";
}

impl Job for PeriodCredits {
    const KIND: &'static str = PeriodCredits::KIND_NAME;
    const QUEUE: &'static str = crate::jobs::MAINTENANCE_QUEUE;
    const MAX_ATTEMPTS: i64 = 5;
    const TIMEOUT: Duration = Duration::from_secs(3_600);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let mut granted = 0u64;
        for app in identity::list_apps(&ctx.db).await? {
            let billing = &app.settings.billing;
            if !billing.plans.iter().any(|p| p.credits.is_positive()) {
                continue;
            }
            let mut after = 0;
            loop {
                let page = ledger::users_page(&ctx.db, app.id, after, BATCH).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                let now = crate::store::now_ms();
                let wanted: Vec<(Target, ledger::UserPlan, Plan, String)> = page
                    .into_iter()
                    .filter_map(|(user_id, user)| {
                        let t = Target {
                            app_id: app.id,
                            user_id,
                        };
                        let plan = billing.plan(user.plan_id.as_deref());
                        let key = user.credit_key(t, &plan.id, now)?;
                        Some((t, user, plan, key))
                    })
                    .filter(|(_, _, plan, _)| plan.credits.is_positive())
                    .collect();
                let keys: Vec<String> = wanted.iter().map(|w| w.3.clone()).collect();
                let done = ledger::existing_keys(&ctx.db, app.id, &keys).await?;
                for (t, user, plan, key) in wanted {
                    if ctx.cancel.is_cancelled() {
                        return Ok(());
                    }
                    if !done.contains(&key)
                        && ledger::grant_period_credits(&ctx.db, t, billing, &user, &plan).await?
                    {
                        granted += 1;
                    }
                }
            }
        }
        tracing::info!(granted, "granted period credits");
        Ok(())
    }
}

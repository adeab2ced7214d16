//! Upkeep jobs: pruning finished jobs and old cron slots, and a no-op for drills and checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobContext};
use crate::store::idempotency;
use crate::store::jobs::{admin, cron, state};
use crate::store::now_ms;

/// Deletes completed and cancelled jobs after `jobs.retain_completed_hours`, discarded ones
/// after `jobs.retain_discarded_hours`, cron slots as old as completed jobs (keeping each
/// schedule's latest), and `Idempotency-Key` answers after
/// `ledger.idempotency_retention_hours`, and what `[retention]` keeps for a number of days
/// (webhook payloads, usage records, audit entries, payment events). Runs on `jobs.prune_cron`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {}

/// Rows deleted per statement, so pruning never holds a lock for long.
const BATCH: i64 = 1_000;
/// Rows deleted per run at most; the next run continues.
const MAX_PER_RUN: u64 = 200_000;
const HOUR_MS: i64 = 3_600_000;

impl Prune {
    pub const KIND_NAME: &'static str = "maintenance.prune";
}

impl Job for Prune {
    const KIND: &'static str = Prune::KIND_NAME;
    const QUEUE: &'static str = crate::jobs::MAINTENANCE_QUEUE;
    const MAX_ATTEMPTS: i64 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let j = &ctx.config.jobs;
        let now = now_ms();
        let completed_before = now - j.retain_completed_hours as i64 * HOUR_MS;
        let discarded_before = now - j.retain_discarded_hours as i64 * HOUR_MS;
        let finished = [state::COMPLETED, state::CANCELLED];
        let completed = delete_all(&ctx, &finished, completed_before).await?;
        let discarded = delete_all(&ctx, &[state::DISCARDED], discarded_before).await?;
        let slots = cron::prune_slots(&ctx.db, completed_before).await?;
        let keys_before = now - ctx.config.ledger.idempotency_retention_hours as i64 * HOUR_MS;
        let mut keys = 0;
        while keys < MAX_PER_RUN && !ctx.cancel.is_cancelled() {
            let n = idempotency::prune(&ctx.db, keys_before, BATCH).await?;
            keys += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let mut retained = Vec::new();
        for (kept, days) in ctx.config.retention.days() {
            if days == 0 {
                continue;
            }
            let before = now - i64::from(days) * 24 * HOUR_MS;
            let mut n = 0;
            while n < MAX_PER_RUN && !ctx.cancel.is_cancelled() {
                let pruned = crate::store::privacy::prune(&ctx.db, kept, before, BATCH).await?;
                n += pruned;
                if pruned < BATCH as u64 {
                    break;
                }
            }
            retained.push(format!("{}={n}", kept.as_str()));
        }
        tracing::info!(
            completed,
            discarded,
            slots,
            idempotency_keys = keys,
            retention = retained.join(" "),
            "pruned old rows"
        );
        Ok(())
    }
}

async fn delete_all(ctx: &JobContext, states: &[&str], before: i64) -> anyhow::Result<u64> {
    let mut total = 0;
    while total < MAX_PER_RUN && !ctx.cancel.is_cancelled() {
        let n = admin::prune(&ctx.db, states, before, BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// Does nothing, after an optional wait: for smoke tests, drills (kill a worker mid-job) and
/// benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Job for Noop {
    const KIND: &'static str = "noop";
    const TIMEOUT: Duration = Duration::from_secs(120);

    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        if self.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms.min(60_000))).await;
        }
        Ok(())
    }
}

//! `recovery.sweep`: loses the open recovery cases whose window has passed or whose
//! subscription has ended (docs/recovery.md). Idempotent: a case is lost once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobContext};
use crate::store::recovery;

/// Cases handled per batch.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {}

impl Sweep {
    pub const KIND_NAME: &'static str = "recovery.sweep";
}

impl Job for Sweep {
    const KIND: &'static str = Sweep::KIND_NAME;
    const QUEUE: &'static str = crate::jobs::MAINTENANCE_QUEUE;
    const MAX_ATTEMPTS: i64 = 5;
    const TIMEOUT: Duration = Duration::from_secs(300);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let mut lost = 0;
        while !ctx.cancel.is_cancelled() {
            let n = recovery::sweep(&ctx.db, ctx.now_ms(), BATCH).await?;
            lost += n;
            if (n as i64) < BATCH {
                break;
            }
        }
        if lost > 0 {
            tracing::info!(
                lost,
                "recovery cases lost: their window passed or their subscription ended"
            );
        }
        Ok(())
    }
}

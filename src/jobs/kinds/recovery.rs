//! `recovery.sweep`, every five minutes: loses the open recovery cases whose window has passed
//! or whose subscription has ended, makes each open case's due nudge, and enqueues a
//! `recovery.nudge` job for every nudge ready to go (docs/recovery.md). Both idempotent: a case
//! is lost once, a step is made once, and a nudge's job is unique while unfinished.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::config::recovery::Cadence;
use crate::jobs::{EnqueueOptions, Job, JobContext};
use crate::store::{nudges, recovery};

/// Cases handled per batch.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {}

impl Sweep {
    pub const KIND_NAME: &'static str = "recovery.sweep";
}

/// An app's cadence, from its `[apps.recovery]` (apps created at run time: the default).
pub fn cadence(config: &Config, slug: &str) -> Cadence {
    Cadence::of(config.app(slug).and_then(|a| a.recovery.as_ref()))
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
        let now = ctx.now_ms();
        nudges::plan(&ctx.db, now, |slug| cadence(&ctx.config, slug), BATCH).await?;
        for (app, nudge) in nudges::ready(&ctx.db, now, 10 * BATCH).await? {
            let options = EnqueueOptions::default().unique(format!("nudge:{nudge}"));
            ctx.jobs.enqueue(&SendNudge { app, nudge }, options).await?;
        }
        Ok(())
    }
}

/// Sends one nudge (`store::nudges::send`): at most once, and only while its case is open and
/// the app's quiet hours are not on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendNudge {
    pub app: i64,
    pub nudge: i64,
}

impl Job for SendNudge {
    const KIND: &'static str = "recovery.nudge";
    const QUEUE: &'static str = crate::store::events::QUEUE;
    const MAX_ATTEMPTS: i64 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let slug: Option<String> = crate::store::identity::app_by_id(&ctx.db, self.app)
            .await?
            .map(|a| a.slug);
        let Some(slug) = slug else {
            return Ok(()); // the app is gone: nothing to send
        };
        let base = public_base(&ctx.config);
        let link = nudges::Link { base: &base };
        let cad = cadence(&ctx.config, &slug);
        let sent = nudges::send(&ctx.db, self.app, self.nudge, ctx.now_ms(), &cad, &link).await?;
        metrics::counter!(NUDGES, "channel" => "event", "outcome" => match sent {
            nudges::Sent::Sent => "sent",
            nudges::Sent::Canceled => "canceled",
            nudges::Sent::Deferred(_) => "deferred",
            nudges::Sent::AlreadyDone => "already_done",
        })
        .increment(1);
        Ok(())
    }
}

/// `tollgate_recovery_nudges_total{channel, outcome}`.
pub const NUDGES: &str = "tollgate_recovery_nudges_total";

/// Where users reach tollgate: `public_url`, or the listen address outside production.
pub fn public_base(config: &Config) -> String {
    config
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{}", config.listen))
}

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
        let template = ctx
            .config
            .app(&slug)
            .and_then(|a| Some((a, a.recovery.as_ref()?.email_template.as_deref()?)))
            .and_then(|(a, name)| Some((name, a.email.as_ref()?.templates.get(name)?)));
        let render = |vars: &serde_json::Value| {
            let (_, t) = template.expect("only called with a template");
            crate::events::email::render(t, vars)
                .map(|m| (m.subject, m.text, m.html))
                .map_err(|e| e.one_line())
        };
        let channel = template.map(|(name, _)| nudges::EmailChannel {
            template: name,
            render: &render,
        });
        let now = ctx.now_ms();
        let sent = nudges::send(
            &ctx.db,
            self.app,
            self.nudge,
            now,
            &cad,
            &link,
            channel.as_ref(),
        )
        .await?;
        if let nudges::Sent::Sent { emailed: true } = sent {
            metrics::counter!(NUDGES, "channel" => "email", "outcome" => "queued").increment(1);
        }
        metrics::counter!(NUDGES, "channel" => "event", "outcome" => match sent {
            nudges::Sent::Sent { .. } => "sent",
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

/// Gives a recovered case its app's incentive, once: the credits through the ledger (keyed by
/// the case), the free days through Whop's API (with an `Idempotency-Key` per case), then
/// records both on the case — a retry or a second job finds it recorded and gives nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyIncentive {
    pub app: i64,
    pub case: i64,
}

impl Job for ApplyIncentive {
    const KIND: &'static str = recovery::INCENTIVE_KIND;
    const QUEUE: &'static str = crate::store::events::QUEUE;
    const MAX_ATTEMPTS: i64 = 10;
    const TIMEOUT: Duration = Duration::from_secs(60);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        use crate::store::ledger::{self, Credit, EntryKind, Note, Target};
        let Some(app) = crate::store::identity::app_by_id(&ctx.db, self.app).await? else {
            return Ok(()); // the app is gone
        };
        let Some(settings) = ctx.config.app(&app.slug).and_then(|a| a.recovery.as_ref()) else {
            return Ok(()); // no longer configured: nothing to give
        };
        let Some(case) = recovery::case(&ctx.db, app.id, self.case).await? else {
            return Ok(());
        };
        if case.state != crate::domain::recovery::CaseState::Recovered.as_str()
            || recovery::incentive(&ctx.db, app.id, case.id)
                .await?
                .is_some()
        {
            return Ok(());
        }
        let credits = settings.incentive_credits.0.max(0);
        if credits > 0 {
            let t = Target {
                app_id: app.id,
                user_id: case.user_id,
            };
            let key = format!("recovery:incentive:{}", case.id);
            let reference = format!("recovery_case:{}", case.id);
            let credit = Credit {
                kind: EntryKind::Grant,
                amount: credits,
                source: "incentive",
                expires_at: None,
                note: Note {
                    reason: Some("recovery incentive"),
                    reference: Some(&reference),
                    key: Some(&key),
                },
            };
            ledger::credit(&ctx.db, t, &credit, None).await?;
        }
        let days = free_days(&ctx, &app.slug, &case, settings.incentive_days).await?;
        let given = recovery::Incentive {
            days: i64::from(days),
            credits_micros: credits,
            applied_at: ctx.now_ms(),
        };
        recovery::record_incentive(&ctx.db, app.id, case.id, &given).await?;
        metrics::counter!(INCENTIVES, "provider" => case.provider.clone()).increment(1);
        Ok(())
    }
}

/// `tollgate_recovery_incentives_total{provider}`.
pub const INCENTIVES: &str = "tollgate_recovery_incentives_total";

/// Adds the free days at the store; the days given (0 where the store has no such call).
async fn free_days(
    ctx: &JobContext,
    slug: &str,
    case: &recovery::CaseRow,
    days: u32,
) -> anyhow::Result<u32> {
    use crate::billing::store_http::StoreError;
    if days == 0 {
        return Ok(0);
    }
    if case.provider != crate::billing::Provider::Whop.as_str() {
        tracing::info!(case = case.id, provider = %case.provider,
            "free days are given through Whop's API only; this case gets its credits alone");
        return Ok(0);
    }
    let http = crate::billing::store_http::http_client();
    let app = ctx.config.app(slug);
    let Some(api) = app.and_then(|a| crate::billing::whop_api::WhopApi::of_app(a, &http)) else {
        // Validation requires the key with incentive days; a config changed under a queued job.
        return Err(crate::jobs::Permanent::error(
            "the app gives free days but [apps.whop] api_key is not set",
        ));
    };
    let idempotency = format!("tollgate-incentive-{}", case.id);
    match api
        .add_free_days(&case.subscription_id, days, &idempotency)
        .await
    {
        Ok(_) => Ok(days),
        Err(e @ StoreError::Refused { status, .. }) if status < 500 => Err(
            crate::jobs::Permanent::error(format!("Whop refused the free days: {e}")),
        ),
        Err(e) => Err(anyhow::anyhow!("adding free days at Whop: {e}")),
    }
}

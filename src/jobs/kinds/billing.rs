//! `billing.process_webhook`: turns one stored store event into its effects — the user's
//! subscription and plan, the period's credits, a top-up's credits, a refund's clawback, a
//! payment outcome for recovery. Every effect is idempotent by the store's ids, so a re-run (a
//! retry, a replay, a redelivery) changes nothing twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::billing::Change;
use crate::billing::deliveries::{self, Done};
use crate::jobs::{Job, JobContext, Permanent, WhenEnqueueOff};
use crate::store::billing::{self as store, Processed, WebhookRow};
use crate::store::identity;

/// Processes the stored delivery `webhook`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessWebhook {
    pub webhook: i64,
}

impl ProcessWebhook {
    pub const KIND_NAME: &'static str = "billing.process_webhook";
}

impl Job for ProcessWebhook {
    const KIND: &'static str = ProcessWebhook::KIND_NAME;
    const PRIORITY: i64 = 0;
    const MAX_ATTEMPTS: i64 = 12;
    const TIMEOUT: Duration = Duration::from_secs(60);
    // A stored event must be processed some day, even if enqueueing is switched off now.
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Park;

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let Some(row) = store::webhook(&ctx.db, self.webhook).await? else {
            return Err(Permanent::error(format!(
                "webhook {} does not exist",
                self.webhook
            )));
        };
        if matches!(row.status.as_str(), "processed" | "ignored") {
            return Ok(());
        }
        let last_attempt = ctx.job.attempt >= ctx.job.max_attempts;
        let result = process(&ctx, &row).await;
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let attempt = match &result {
            Ok(done) => Processed {
                status: if done.change.is_some() {
                    "processed"
                } else {
                    "ignored"
                },
                user_id: done.user_id,
                change: done.change.map(Change::as_str),
                outcome: Some(&done.outcome),
                error: None,
            },
            Err(e) => Processed {
                status: if e.downcast_ref::<Permanent>().is_some() || last_attempt {
                    "failed"
                } else {
                    "pending"
                },
                user_id: None,
                change: None,
                outcome: None,
                error: error.as_deref(),
            },
        };
        store::finish(&ctx.db, row.app_id, row.id, &attempt).await?;
        if attempt.status != "pending" {
            metrics::counter!("tollgate_billing_webhooks_processed_total",
                "provider" => row.provider.clone(), "status" => attempt.status.to_string())
            .increment(1);
        }
        if attempt.status == "failed" {
            tracing::warn!(webhook = row.id, provider = %row.provider, event_id = %row.event_id,
                error = error.as_deref().unwrap_or_default(), "webhook processing failed");
        }
        result.map(|_| ())
    }
}

async fn process(ctx: &JobContext, row: &WebhookRow) -> anyhow::Result<Done> {
    let app = identity::app_by_id(&ctx.db, row.app_id)
        .await?
        .ok_or_else(|| Permanent::error("the app no longer exists"))?;
    let app_config = ctx.config.app(&app.slug).ok_or_else(|| {
        Permanent::error(format!("app {:?} is no longer in the config", app.slug))
    })?;
    deliveries::process(&ctx.db, &app, app_config, row).await
}

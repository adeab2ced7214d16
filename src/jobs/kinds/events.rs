//! `events.fan_out` (one stored event → a delivery per endpoint) and `events.deliver` (one
//! signed POST, retried on Svix's schedule; a 2xx ends it, a 410 disables the endpoint, an
//! endpoint failing for longer than `events.disable_after_hours` is disabled); and the app's
//! own HTTP jobs (`app.<slug>.<kind>`, docs/jobs.md).

use std::time::Duration;

use crate::domain::events::{DELIVERY_ATTEMPTS, retry_delay};
use crate::events::app_jobs::{self, AppJob};
use crate::events::email::{self, SendEmail};
use crate::events::endpoints::signing_secrets;
use crate::events::fan_out::{self, Deliver};
use crate::events::metrics;
use crate::events::send::Message;
use crate::jobs::kind::APP_KINDS;
use crate::jobs::{Job, JobContext, Permanent, WhenEnqueueOff};
use crate::store::events::{
    self as store, AttemptEnd, AttemptRow, FAN_OUT_KIND, FanOutArgs, QUEUE,
};

impl Job for FanOutArgs {
    const KIND: &'static str = FAN_OUT_KIND;
    const QUEUE: &'static str = QUEUE;
    const PRIORITY: i64 = 0;
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Park;

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let d = fan_out::Deliveries {
            app_id: self.app,
            event: self.event,
            round: Some(0),
            only: None,
            // Due by this worker's clock (a test's worker may run ahead of the real one).
            run_at: Some(ctx.now_ms()),
        };
        fan_out::deliver(&ctx.db, &ctx.jobs, d).await?;
        Ok(())
    }
}

impl Job for Deliver {
    const KIND: &'static str = "events.deliver";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i64 = DELIVERY_ATTEMPTS;
    // Longer than any attempt's own timeout (at most two minutes by config).
    const TIMEOUT: Duration = Duration::from_secs(150);
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Park;

    fn backoff(attempt: i64) -> Duration {
        retry_delay(attempt)
    }

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let Some(work) = store::work(&ctx.db, self.app, self.delivery).await? else {
            return Err(Permanent::error(format!(
                "delivery {} no longer exists (its endpoint was deleted)",
                self.delivery
            )));
        };
        if work.state != "pending" {
            return Ok(()); // finished by an earlier run that died before completing its job
        }
        let endpoint = &work.endpoint;
        if !endpoint.enabled {
            store::skip_delivery(&ctx.db, self.app, self.delivery).await?;
            metrics::finished("skipped");
            return Ok(());
        }
        let now = ctx.now_ms();
        let secrets = signing_secrets(&ctx.config, endpoint, now)?;
        let sent = ctx
            .sender
            .send(&Message {
                url: &endpoint.url,
                msg_id: &work.msg_id,
                timestamp: now / 1000,
                body: &work.payload,
                secrets: &secrets,
            })
            .await;
        metrics::attempted(sent.outcome(), sent.took);
        let last = ctx.job.attempt >= ctx.job.max_attempts;
        let end = match sent.status {
            Some(200..=299) => AttemptEnd::Succeeded,
            Some(410) => AttemptEnd::Failed,
            _ if last => AttemptEnd::Failed,
            _ => AttemptEnd::Retry,
        };
        let attempt = AttemptRow {
            delivery_id: self.delivery,
            attempt: ctx.job.attempt,
            at: now,
            status: sent.status.map(i64::from),
            latency_ms: sent.took.as_millis() as i64,
            response: sent.response.clone(),
            error: sent.error.clone(),
        };
        let failing_since =
            store::record_attempt(&ctx.db, self.app, endpoint.id, &attempt, end).await?;
        match end {
            AttemptEnd::Succeeded => metrics::finished("succeeded"),
            AttemptEnd::Failed => metrics::finished("failed"),
            AttemptEnd::Retry => {}
        }
        if sent.status == Some(410) {
            if store::disable_endpoint(&ctx.db, self.app, endpoint.id, "gone").await? {
                metrics::disabled("gone");
                tracing::warn!(
                    endpoint = endpoint.id,
                    "endpoint answered 410 Gone; disabled"
                );
            }
            return Err(Permanent::error(
                "the endpoint answered 410 Gone and is disabled",
            ));
        }
        let limit = ctx.config.events.disable_after_hours as i64 * 3_600_000;
        if let Some(since) = failing_since
            && limit > 0
            && now - since >= limit
            && store::disable_endpoint(&ctx.db, self.app, endpoint.id, "failing").await?
        {
            metrics::disabled("failing");
            tracing::warn!(
                endpoint = endpoint.id,
                failing_since = since,
                "endpoint failing for too long; disabled"
            );
        }
        let why = || match (&sent.status, &sent.error) {
            (Some(s), _) => format!("the endpoint answered {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".to_string(),
        };
        match end {
            AttemptEnd::Succeeded => Ok(()),
            AttemptEnd::Retry => Err(anyhow::anyhow!(why())),
            AttemptEnd::Failed => Err(Permanent::error(why())),
        }
    }
}

/// An app's own job (`app.<slug>.<kind>`): one signed POST to the app's jobs endpoint per
/// attempt, under one `webhook-id` for every attempt of the job (the app dedupes by it). A 2xx
/// completes it; anything else is retried with the queue's backoff, then discarded.
impl Job for AppJob {
    const KIND: &'static str = APP_KINDS;
    const QUEUE: &'static str = app_jobs::QUEUE;
    const TIMEOUT: Duration = Duration::from_secs(150);
    // The app asked for it and was answered 2xx: it must run some day.
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Park;

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let app = crate::store::identity::app_by_slug(&ctx.db, &self.app)
            .await?
            .ok_or_else(|| Permanent::error(format!("app {:?} no longer exists", self.app)))?;
        let Some(endpoint) = store::jobs_endpoint(&ctx.db, app.id).await? else {
            // Retried: the app may be registering it right now.
            anyhow::bail!(
                "app {:?} has no jobs endpoint (tollgate endpoints add --jobs)",
                self.app
            );
        };
        if !endpoint.enabled {
            anyhow::bail!("the jobs endpoint of app {:?} is disabled", self.app);
        }
        let now = ctx.now_ms();
        let body = serde_json::json!({
            "type": "job.run",
            "timestamp": store::rfc3339(now),
            "data": {
                "job_id": ctx.job.id,
                "kind": self.kind,
                "args": self.args,
                "attempt": ctx.job.attempt,
                "max_attempts": ctx.job.max_attempts,
            },
        })
        .to_string();
        let secrets = signing_secrets(&ctx.config, &endpoint, now)?;
        let msg_id = format!("job_{}", ctx.job.id);
        let sent = ctx
            .sender
            .send(&Message {
                url: &endpoint.url,
                msg_id: &msg_id,
                timestamp: now / 1000,
                body: &body,
                secrets: &secrets,
            })
            .await;
        metrics::attempted(sent.outcome(), sent.took);
        match (sent.status, sent.error) {
            (Some(200..=299), _) => Ok(()),
            (Some(status), _) => {
                let answer = sent.response.unwrap_or_default();
                anyhow::bail!(
                    "the jobs endpoint answered {status}: {}",
                    answer.chars().take(200).collect::<String>()
                )
            }
            (None, error) => anyhow::bail!("{}", error.unwrap_or_else(|| "no answer".into())),
        }
    }
}

/// `email.send`: one stored message through the SMTP transport. A 5xx refusal is a bounce
/// (recorded, counted, not retried); anything else is retried with backoff, then failed.
impl Job for SendEmail {
    const KIND: &'static str = crate::store::nudges::EMAIL_KIND;
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i64 = 10;
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Park;

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        use crate::store::email::{self as mail, Attempted};
        let Some(m) = mail::message(&ctx.db, self.app, self.message).await? else {
            return Err(Permanent::error(format!(
                "email message {} does not exist",
                self.message
            )));
        };
        if m.state != "pending" {
            return Ok(()); // sent by a run that died before completing its job
        }
        let Some(mailer) = ctx.sender.mailer() else {
            anyhow::bail!("SMTP_URL is not set: the message waits until it is");
        };
        let app_from = match crate::store::identity::app_by_id(&ctx.db, self.app).await? {
            Some(a) => ctx
                .config
                .app(&a.slug)
                .and_then(|c| c.email.as_ref())
                .and_then(|e| e.from.clone()),
            None => None,
        };
        let message_id = format!("<tollgate.{}.{}@{}>", self.app, m.id, "tollgate");
        let sent = mailer
            .send(&email::Outgoing {
                from: app_from.as_deref(),
                to: &m.recipient,
                subject: &m.subject,
                text: &m.text,
                html: m.html.as_deref(),
                message_id: &message_id,
            })
            .await;
        let attempts = ctx.job.attempt;
        let last = attempts >= ctx.job.max_attempts;
        let to = email::mask(&m.recipient);
        match sent {
            Ok(()) => {
                let done = Attempted {
                    state: "sent",
                    attempts,
                    smtp_code: None,
                    error: None,
                };
                mail::record(&ctx.db, self.app, m.id, &done).await?;
                email::metrics::finished("sent");
                tracing::info!(message = m.id, template = %m.template, to = %to, "email sent");
                Ok(())
            }
            Err(e) => {
                let (state, code) = match &e {
                    email::SendError::Rejected { code, .. } => ("bounced", Some(i64::from(*code))),
                    email::SendError::Transient { code, .. } if last => {
                        ("failed", code.map(i64::from))
                    }
                    email::SendError::Transient { code, .. } => ("pending", code.map(i64::from)),
                };
                let error = e.to_string();
                let done = Attempted {
                    state,
                    attempts,
                    smtp_code: code,
                    error: Some(&error),
                };
                mail::record(&ctx.db, self.app, m.id, &done).await?;
                tracing::warn!(message = m.id, template = %m.template, to = %to, state, error = %error, "email not sent");
                match state {
                    "bounced" => {
                        email::metrics::finished("bounced");
                        Err(Permanent::error(error))
                    }
                    "failed" => {
                        email::metrics::finished("failed");
                        Err(Permanent::error(error))
                    }
                    _ => Err(anyhow::anyhow!(error)),
                }
            }
        }
    }
}

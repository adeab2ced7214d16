//! `[retention]`: how long records that may carry personal data are kept (docs/privacy.md).
//! The maintenance prune job (`jobs.prune_cron`) removes what is older.

use serde::Deserialize;

use super::Problem;

/// Days each kind of record is kept; 0 keeps it for ever.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Bodies of billing-store webhook deliveries (the rows stay, without their body).
    pub webhook_payload_days: u32,
    pub usage_record_days: u32,
    pub audit_days: u32,
    pub payment_event_days: u32,
    /// Outbound events with their deliveries and attempts (docs/events.md).
    pub event_days: u32,
    /// Email messages (docs/email.md).
    pub email_days: u32,
}

/// At most a century: a longer one is a typo, and 0 already means for ever.
const MAX_DAYS: u32 = 36_500;

impl RetentionConfig {
    /// Each kind with its retention in days (0: for ever).
    pub fn days(&self) -> [(crate::store::privacy::Kept, u32); 6] {
        use crate::store::privacy::Kept;
        [
            (Kept::WebhookPayloads, self.webhook_payload_days),
            (Kept::UsageRecords, self.usage_record_days),
            (Kept::AuditEntries, self.audit_days),
            (Kept::PaymentEvents, self.payment_event_days),
            (Kept::Events, self.event_days),
            (Kept::EmailMessages, self.email_days),
        ]
    }
}

pub fn validate(r: &RetentionConfig, p: &mut Vec<Problem>) {
    for (key, days) in [
        ("retention.webhook_payload_days", r.webhook_payload_days),
        ("retention.usage_record_days", r.usage_record_days),
        ("retention.audit_days", r.audit_days),
        ("retention.payment_event_days", r.payment_event_days),
        ("retention.event_days", r.event_days),
        ("retention.email_days", r.email_days),
    ] {
        if days > MAX_DAYS {
            p.push(Problem::new(
                key,
                format!("expected 0 (for ever) to {MAX_DAYS} days, got {days}"),
            ));
        }
    }
}

//! Personal data: erased with a deleted user, pruned after its retention (docs/privacy.md).

use crate::domain::privacy;
use crate::store::scope::Scope;
use crate::store::{Db, Tx};
use crate::{scoped_run, tx_run};

/// Erases what the stores and operators left about a user being deleted, in the deletion's
/// transaction: the personal fields of their stored webhook bodies, and their external id in
/// the audit log (replaced by their anonymous id).
pub async fn erase_user_tx(
    tx: &mut Tx,
    app_id: i64,
    user_id: i64,
    external_id: &str,
    anonymous_id: &str,
) -> Result<(), sqlx::Error> {
    let bodies: Vec<(i64, Vec<u8>)> = tx_run!(&mut *tx, c => sqlx::query_as(
        "SELECT id, body FROM webhook_events WHERE app_id = $1 AND user_id = $2")
        .bind(app_id).bind(user_id).fetch_all(&mut **c).await)?;
    for (id, body) in bodies {
        if body.is_empty() {
            continue; // pruned already
        }
        let erased = privacy::erase(&body, external_id, anonymous_id);
        tx_run!(&mut *tx, c => sqlx::query(
            "UPDATE webhook_events SET body = $1 WHERE app_id = $2 AND id = $3")
            .bind(&erased).bind(app_id).bind(id).execute(&mut **c).await.map(|_| ()))?;
    }
    // Events about them carry their id as `user_id`; from now on the anonymous id stands in.
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    tx_run!(&mut *tx, c => sqlx::query(
        "UPDATE events SET payload = REPLACE(payload, $1, $2) WHERE app_id = $3 AND user_id = $4")
        .bind(quoted(external_id)).bind(quoted(anonymous_id)).bind(app_id).bind(user_id)
        .execute(&mut **c).await.map(|_| ()))?;
    // Rows about this user name them as their target; their details may repeat the id.
    tx_run!(&mut *tx, c => sqlx::query(
        "UPDATE audit_log SET target = $1, details = REPLACE(details, $2, $1) \
         WHERE app_id = $3 AND target = $2")
        .bind(anonymous_id).bind(external_id).bind(app_id).execute(&mut **c).await.map(|_| ()))?;
    Ok(())
}

/// What a retention setting prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The bodies of processed, ignored or failed deliveries (the rows stay, so a late
    /// redelivery is still recognised).
    WebhookPayloads,
    UsageRecords,
    AuditEntries,
    PaymentEvents,
    /// Outbound events, with their deliveries and attempts.
    Events,
    /// Email messages: recipient and rendered bodies.
    EmailMessages,
}

impl Kept {
    pub const ALL: [Kept; 6] = [
        Kept::WebhookPayloads,
        Kept::UsageRecords,
        Kept::AuditEntries,
        Kept::PaymentEvents,
        Kept::Events,
        Kept::EmailMessages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kept::WebhookPayloads => "webhook_payloads",
            Kept::UsageRecords => "usage_records",
            Kept::AuditEntries => "audit_entries",
            Kept::PaymentEvents => "payment_events",
            Kept::Events => "events",
            Kept::EmailMessages => "email_messages",
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Kept::WebhookPayloads => {
                "UPDATE webhook_events SET body = $3 WHERE id IN (SELECT id FROM webhook_events \
                 WHERE received_at < $1 AND status <> 'pending' AND LENGTH(body) > 0 LIMIT $2)"
            }
            Kept::UsageRecords => {
                "DELETE FROM usage_records WHERE id IN \
                 (SELECT id FROM usage_records WHERE created_at < $1 LIMIT $2)"
            }
            Kept::AuditEntries => {
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)"
            }
            Kept::PaymentEvents => {
                "DELETE FROM payment_events WHERE id IN \
                 (SELECT id FROM payment_events WHERE created_at < $1 LIMIT $2)"
            }
            Kept::Events => {
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < $1 LIMIT $2)"
            }
            Kept::EmailMessages => {
                "DELETE FROM email_messages WHERE id IN \
                 (SELECT id FROM email_messages WHERE created_at < $1 AND state <> 'pending' LIMIT $2)"
            }
        }
    }
}

/// Prunes up to `limit` rows of `kept` older than `before` (ms); returns how many.
pub async fn prune(db: &Db, kept: Kept, before: i64, limit: i64) -> Result<u64, sqlx::Error> {
    let sql = kept.statement();
    let empty: &[u8] = &[];
    scoped_run!(db, Scope::AllApps, c => {
        let q = sqlx::query(sql).bind(before).bind(limit);
        let q = if kept == Kept::WebhookPayloads { q.bind(empty) } else { q };
        q.execute(c).await.map(|r| r.rows_affected())
    })
}

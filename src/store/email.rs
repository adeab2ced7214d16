//! Email messages: queued (rendered) with their sending job in one transaction, once per key;
//! finished by the job with what the SMTP server said.

use serde::Serialize;

use crate::store::scope::{self, Scope};
use crate::store::{Db, Tx, now_ms};
use crate::{scoped_run, tx_run};

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub key: &'a str,
    pub template: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
}

/// Inserts the message in the caller's transaction. `(id, true)` when new; `(id of the first,
/// false)` when the app queued one under this key before.
pub async fn insert(
    tx: &mut Tx,
    app_id: i64,
    m: &NewMessage<'_>,
) -> Result<(i64, bool), sqlx::Error> {
    scope::apply_tx(tx, Scope::App(app_id)).await?;
    let id: Option<i64> = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "INSERT INTO email_messages (app_id, key, template, recipient, subject, text_body, html_body, \
         state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) \
         ON CONFLICT (app_id, key) DO NOTHING RETURNING id")
        .bind(app_id).bind(m.key).bind(m.template).bind(m.recipient).bind(m.subject).bind(m.text)
        .bind(m.html).bind(now_ms()).fetch_optional(&mut **c).await)?;
    if let Some(id) = id {
        return Ok((id, true));
    }
    let first: i64 = tx_run!(&mut *tx, c => sqlx::query_scalar(
        "SELECT id FROM email_messages WHERE app_id = $1 AND key = $2")
        .bind(app_id).bind(m.key).fetch_one(&mut **c).await)?;
    Ok((first, false))
}

/// A stored message. Its `Debug` leaves the recipient and bodies out.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct MessageRow {
    pub id: i64,
    pub key: String,
    pub template: String,
    #[serde(skip)]
    pub recipient: String,
    pub subject: String,
    #[serde(skip)]
    pub text: String,
    #[serde(skip)]
    pub html: Option<String>,
    /// `pending`, `sent`, `failed` (retries ran out) or `bounced` (the server refused it).
    pub state: String,
    pub attempts: i64,
    pub smtp_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl std::fmt::Debug for MessageRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRow")
            .field("id", &self.id)
            .field("template", &self.template)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

type MessageTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

pub async fn message(db: &Db, app_id: i64, id: i64) -> Result<Option<MessageRow>, sqlx::Error> {
    let row: Option<MessageTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT id, key, template, recipient, subject, text_body, html_body, state, attempts, \
         smtp_code, last_error, created_at, sent_at FROM email_messages WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).fetch_optional(c).await)?;
    Ok(row.map(|t| MessageRow {
        id: t.0,
        key: t.1,
        template: t.2,
        recipient: t.3,
        subject: t.4,
        text: t.5,
        html: t.6,
        state: t.7,
        attempts: t.8,
        smtp_code: t.9,
        last_error: t.10,
        created_at: t.11,
        sent_at: t.12,
    }))
}

/// What an attempt left: the state, the attempt count, the SMTP code and error of a failure.
pub struct Attempted<'a> {
    pub state: &'a str,
    pub attempts: i64,
    pub smtp_code: Option<i64>,
    pub error: Option<&'a str>,
}

pub async fn record(db: &Db, app_id: i64, id: i64, a: &Attempted<'_>) -> Result<(), sqlx::Error> {
    let sent_at = (a.state == "sent").then(now_ms);
    scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE email_messages SET state = $3, attempts = $4, smtp_code = $5, last_error = $6, \
         sent_at = COALESCE($7, sent_at) WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).bind(a.state).bind(a.attempts).bind(a.smtp_code).bind(a.error)
        .bind(sent_at).execute(c).await.map(|_| ()))
}

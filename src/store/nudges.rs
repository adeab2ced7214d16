//! Recovery nudges (docs/recovery.md): the sweep makes each open case's due step (one row per
//! case and step, so a step is made once) and enqueues a job per row ready to go; the job sends
//! it — checking, in its transaction, that the case is still open and the hour not quiet — by
//! publishing `recovery.nudge` with a link whose clicks are counted here.

use serde::Serialize;

use crate::config::recovery::Cadence;
use crate::domain::events::{EventType, RecoveryNudge};
use crate::domain::identity::{hash_secret, random_base62};
use crate::domain::nudges::{due_at, due_step, pick_variant, send_after};
use crate::store::Db;
use crate::store::events::{Outgoing, publish};
use crate::store::scope::{self, Scope};
use crate::{scoped_run, tx_run};

/// Makes the due step of every open case (and marks the earlier steps it skips), `page` cases
/// at a time; returns how many rows it made. `cadence` gives an app's cadence by its slug.
pub async fn plan(
    db: &Db,
    now: i64,
    cadence: impl Fn(&str) -> Cadence,
    page: i64,
) -> Result<usize, sqlx::Error> {
    let mut made = 0;
    let mut after = 0;
    loop {
        // Each open case of the page with the steps it has (one row per step, or one NULL).
        // A case whose window has passed is the sweep's to lose, not to nudge.
        let rows: Vec<(i64, String, i64, i64, Option<i64>)> = scoped_run!(db, Scope::AllApps, c => sqlx::query_as(
            "SELECT c.app_id, a.slug, c.id, c.first_failure_at, n.step FROM recovery_cases c \
             JOIN apps a ON a.id = c.app_id LEFT JOIN recovery_nudges n ON n.case_id = c.id \
             WHERE c.id IN (SELECT id FROM recovery_cases WHERE state = 'open' AND id > $1 \
               AND first_failure_at + window_ms >= $3 ORDER BY id LIMIT $2) \
             ORDER BY c.id")
            .bind(after).bind(page).bind(now).fetch_all(c).await)?;
        let Some(last) = rows.last().map(|r| r.2) else {
            return Ok(made);
        };
        let mut i = 0;
        while i < rows.len() {
            let (app_id, slug, case_id, first_failure_at, _) = &rows[i];
            let mut have = Vec::new();
            while i < rows.len() && rows[i].2 == *case_id {
                have.extend(rows[i].4.map(|s| s as usize));
                i += 1;
            }
            made += plan_case(
                db,
                now,
                &cadence(slug),
                *app_id,
                *case_id,
                *first_failure_at,
                &have,
            )
            .await?;
        }
        after = last;
    }
}

async fn plan_case(
    db: &Db,
    now: i64,
    cad: &Cadence,
    app_id: i64,
    case_id: i64,
    first_failure_at: i64,
    have: &[usize],
) -> Result<usize, sqlx::Error> {
    let Some(due) = due_step(&cad.hours, first_failure_at, now, have) else {
        return Ok(0);
    };
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let rows = due
        .skipped
        .iter()
        .map(|s| (*s, "skipped"))
        .chain([(due.step, "pending")]);
    let mut made = 0;
    for (step, state) in rows {
        let weights: Vec<u32> = cad.variants[step].iter().map(|v| v.weight).collect();
        let variant = &cad.variants[step][pick_variant(&weights, case_id, step)].name;
        let at = due_at(&cad.hours, first_failure_at, step);
        let n = tx_run!(&mut tx, c => sqlx::query(
            "INSERT INTO recovery_nudges (app_id, case_id, step, variant, state, due_at, send_after, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (case_id, step) DO NOTHING")
            .bind(app_id).bind(case_id).bind(step as i64).bind(variant).bind(state).bind(at)
            .bind(send_after(now, cad.tz, cad.quiet)).bind(now)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        made += n as usize;
    }
    tx.commit().await?;
    Ok(made)
}

/// The pending nudges whose time has come: `(app_id, nudge_id)`, oldest first.
pub async fn ready(db: &Db, now: i64, limit: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    scoped_run!(db, Scope::AllApps, c => sqlx::query_as(
        "SELECT app_id, id FROM recovery_nudges WHERE state = 'pending' AND send_after <= $1 \
         ORDER BY send_after, id LIMIT $2")
        .bind(now).bind(limit).fetch_all(c).await)
}

/// What sending a nudge came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Published as `recovery.nudge`; `emailed` when an email went into the queue with it.
    Sent { emailed: bool },
    /// The case closed (recovered, lost, canceled) before the nudge went: nothing is sent.
    Canceled,
    /// The app's quiet hours: it waits until this time (ms).
    Deferred(i64),
    /// Sent or settled before (a retried job): nothing again.
    AlreadyDone,
}

/// A nudge's link: the token travels only in the event (and the email); the row keeps its hash.
pub struct Link<'a> {
    /// The public base URL tollgate is reached at (no trailing slash).
    pub base: &'a str,
}

/// A nudge by email too: the app's template, rendered with the nudge's variables.
pub struct EmailChannel<'a> {
    pub template: &'a str,
    /// Renders the template with the variables: (subject, text, html), or why not.
    #[allow(clippy::type_complexity)]
    pub render: &'a (
            dyn Fn(&serde_json::Value) -> Result<(String, String, Option<String>), String>
                + Send
                + Sync
        ),
}

/// The variables a nudge email's template is rendered with (validated at config load).
pub fn email_variables(
    link: &str,
    message: Option<&str>,
    step: i64,
    variant: &str,
    amount: Option<i64>,
    currency: Option<&str>,
    user: &str,
) -> serde_json::Value {
    let amount = match (amount, currency) {
        (Some(a), Some(c)) => crate::domain::money::format_minor_units(a, c),
        _ => String::new(),
    };
    serde_json::json!({ "link": link, "message": message.unwrap_or_default(), "step": step + 1,
        "variant": variant, "amount": amount, "user": user })
}

/// Sends one nudge, once: in one transaction, re-reads it and its case, then publishes
/// `recovery.nudge` with a fresh link and marks it sent (or cancels or defers it).
pub async fn send(
    db: &Db,
    app_id: i64,
    nudge_id: i64,
    now: i64,
    cadence: &Cadence,
    link: &Link<'_>,
    email: Option<&EmailChannel<'_>>,
) -> Result<Sent, sqlx::Error> {
    type Row = (
        String,
        i64,
        String,
        i64,
        String,
        i64,
        String,
        String,
        i64,
        i64,
        Option<i64>,
        Option<String>,
        i64,
    );
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let row: Option<Row> = tx_run!(&mut tx, c => sqlx::query_as(
        "SELECT n.state, n.step, n.variant, c.id, c.state, c.user_id, c.provider, c.subscription_id, \
         c.first_failure_at, c.window_ms, c.amount_minor, c.currency, c.attempts \
         FROM recovery_nudges n JOIN recovery_cases c ON c.id = n.case_id \
         WHERE n.app_id = $1 AND n.id = $2")
        .bind(app_id).bind(nudge_id).fetch_optional(&mut **c).await)?;
    let Some((
        state,
        step,
        variant,
        case_id,
        case_state,
        user_id,
        provider,
        sub,
        first,
        window,
        amount,
        currency,
        attempts,
    )) = row
    else {
        return Ok(Sent::AlreadyDone);
    };
    if state != "pending" {
        return Ok(Sent::AlreadyDone);
    }
    let outcome = if case_state != "open" {
        tx_run!(&mut tx, c => sqlx::query(
            "UPDATE recovery_nudges SET state = 'canceled', updated_at = $3 WHERE app_id = $1 AND id = $2")
            .bind(app_id).bind(nudge_id).bind(now).execute(&mut **c).await.map(|_| ()))?;
        Sent::Canceled
    } else if send_after(now, cadence.tz, cadence.quiet) > now {
        let after = send_after(now, cadence.tz, cadence.quiet);
        tx_run!(&mut tx, c => sqlx::query(
            "UPDATE recovery_nudges SET send_after = $3, updated_at = $4 WHERE app_id = $1 AND id = $2")
            .bind(app_id).bind(nudge_id).bind(after).bind(now).execute(&mut **c).await.map(|_| ()))?;
        Sent::Deferred(after)
    } else {
        let token = random_base62(32);
        let expires = first.saturating_add(window);
        tx_run!(&mut tx, c => sqlx::query(
            "UPDATE recovery_nudges SET state = 'sent', sent_at = $3, token_hash = $4, \
             link_expires_at = $5, updated_at = $3 WHERE app_id = $1 AND id = $2")
            .bind(app_id).bind(nudge_id).bind(now).bind(hash_secret(&token)).bind(expires)
            .execute(&mut **c).await.map(|_| ()))?;
        let message = cadence
            .variants
            .get(step as usize)
            .and_then(|vs| vs.iter().find(|v| v.name == variant))
            .and_then(|v| v.message.clone());
        let data = RecoveryNudge {
            user_id: String::new(),
            case_id,
            nudge_id,
            step,
            variant,
            message,
            link: format!("{}/r/{token}", link.base),
            link_expires_at: expires,
            provider,
            subscription_id: sub,
            amount_minor: amount,
            currency,
            first_failure_at: first,
            attempts,
        };
        let emailed = match email {
            Some(channel) => {
                queue_email(&mut tx, app_id, user_id, nudge_id, channel, &data).await?
            }
            None => false,
        };
        let key = format!("recovery.nudge:{nudge_id}");
        publish(
            &mut tx,
            app_id,
            &Outgoing::about(EventType::RecoveryNudge, user_id, key, data),
        )
        .await?;
        Sent::Sent { emailed }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Queues the nudge's email, with its sending job, in the nudge's transaction (so the link's
/// token, which only the event and the email carry, is never lost between them): when the user
/// has an email address. Once per nudge (keyed). A template that fails to render (validation
/// makes that a bug) sends no email and is logged; the nudge still goes as its event.
async fn queue_email(
    tx: &mut crate::store::Tx,
    app_id: i64,
    user_id: i64,
    nudge_id: i64,
    channel: &EmailChannel<'_>,
    n: &RecoveryNudge,
) -> Result<bool, sqlx::Error> {
    let who: Option<(Option<String>, Option<String>)> = tx_run!(&mut *tx, c => sqlx::query_as(
        "SELECT email, external_id FROM users WHERE app_id = $1 AND id = $2 AND deleted_at IS NULL")
        .bind(app_id).bind(user_id).fetch_optional(&mut **c).await)?;
    let Some((Some(address), user)) = who else {
        return Ok(false);
    };
    let vars = email_variables(
        &n.link,
        n.message.as_deref(),
        n.step,
        &n.variant,
        n.amount_minor,
        n.currency.as_deref(),
        user.as_deref().unwrap_or_default(),
    );
    let (subject, text, html) = match (channel.render)(&vars) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::error!(nudge = nudge_id, template = channel.template, error = %e,
                "a recovery nudge's email template did not render; the nudge goes without it");
            return Ok(false);
        }
    };
    let key = format!("recovery.nudge:{nudge_id}:email");
    let message = crate::store::email::NewMessage {
        key: &key,
        template: channel.template,
        recipient: &address,
        subject: &subject,
        text: &text,
        html: html.as_deref(),
    };
    let (id, inserted) = crate::store::email::insert(tx, app_id, &message).await?;
    if inserted {
        let args = serde_json::json!({ "app": app_id, "message": id });
        crate::store::jobs::queue::insert_follow_up(tx, EMAIL_KIND, &args, None).await?;
    }
    Ok(true)
}

/// The kind of the job that sends a stored email (`jobs::kinds::events::SendEmail`).
pub const EMAIL_KIND: &str = "email.send";

/// The case a clicked link belongs to, for the redirect.
#[derive(Debug, Clone)]
pub struct Clicked {
    pub app_id: i64,
    pub slug: String,
    pub user_id: i64,
    pub provider: String,
    /// The store's subscription of the case (a Whop membership id, a Stripe subscription).
    pub subscription_id: String,
    /// The user's id in the app (RevenueCat's app user id); none once erased.
    pub external_id: Option<String>,
}

/// Counts a click on a live link (by its token) and returns its case; `None` for an unknown or
/// expired token.
pub async fn click(db: &Db, token: &str, now: i64) -> Result<Option<Clicked>, sqlx::Error> {
    let hash = hash_secret(token);
    let found: Option<(i64, i64)> = scoped_run!(db, Scope::AllApps, c => sqlx::query_as(
        "SELECT app_id, id FROM recovery_nudges WHERE token_hash = $1 AND link_expires_at >= $2")
        .bind(&hash).bind(now).fetch_optional(c).await)?;
    let Some((app_id, id)) = found else {
        return Ok(None);
    };
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    tx_run!(&mut tx, c => sqlx::query(
        "UPDATE recovery_nudges SET clicks = clicks + 1, \
         first_click_at = COALESCE(first_click_at, $3), updated_at = $3 WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).bind(now).execute(&mut **c).await.map(|_| ()))?;
    let row: (String, i64, String, String, Option<String>) = tx_run!(&mut tx, c => sqlx::query_as(
        "SELECT a.slug, c.user_id, c.provider, c.subscription_id, u.external_id FROM recovery_nudges n \
         JOIN recovery_cases c ON c.id = n.case_id JOIN apps a ON a.id = n.app_id \
         JOIN users u ON u.id = c.user_id WHERE n.app_id = $1 AND n.id = $2")
        .bind(app_id).bind(id).fetch_one(&mut **c).await)?;
    tx.commit().await?;
    Ok(Some(Clicked {
        app_id,
        slug: row.0,
        user_id: row.1,
        provider: row.2,
        subscription_id: row.3,
        external_id: row.4,
    }))
}

/// One step and variant's results over cases whose first failure is in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VariantStats {
    pub step: i64,
    pub variant: String,
    pub sent: i64,
    /// Sent nudges whose link was opened at least once.
    pub clicked: i64,
    /// clicked / sent, in basis points (absent while none is sent).
    pub ctr_bps: Option<i64>,
    /// Sent nudges whose case was recovered.
    pub recovered: i64,
}

pub async fn variant_stats(
    db: &Db,
    app_id: i64,
    from: i64,
    to: i64,
) -> Result<Vec<VariantStats>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, i64, i64)> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT n.step, n.variant, COUNT(*), \
         CAST(SUM(CASE WHEN n.clicks > 0 THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN c.state = 'recovered' THEN 1 ELSE 0 END) AS BIGINT) \
         FROM recovery_nudges n JOIN recovery_cases c ON c.id = n.case_id \
         WHERE n.app_id = $1 AND n.state = 'sent' AND c.first_failure_at >= $2 AND c.first_failure_at < $3 \
         GROUP BY n.step, n.variant ORDER BY n.step, n.variant")
        .bind(app_id).bind(from).bind(to).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|(step, variant, sent, clicked, recovered)| VariantStats {
            step,
            variant,
            sent,
            clicked,
            ctr_bps: (sent > 0).then(|| clicked * 10_000 / sent),
            recovered,
        })
        .collect())
}

/// A case's nudges, by step (tests and the case timeline).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NudgeRow {
    pub id: i64,
    pub step: i64,
    pub variant: String,
    pub state: String,
    pub due_at: i64,
    pub send_after: i64,
    pub sent_at: Option<i64>,
    pub clicks: i64,
    pub first_click_at: Option<i64>,
}

type NudgeTuple = (
    i64,
    i64,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);

pub async fn of_case(db: &Db, app_id: i64, case_id: i64) -> Result<Vec<NudgeRow>, sqlx::Error> {
    let rows: Vec<NudgeTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT id, step, variant, state, due_at, send_after, sent_at, clicks, first_click_at FROM recovery_nudges \
         WHERE app_id = $1 AND case_id = $2 ORDER BY step")
        .bind(app_id).bind(case_id).fetch_all(c).await)?;
    Ok(rows
        .into_iter()
        .map(|r| NudgeRow {
            id: r.0,
            step: r.1,
            variant: r.2,
            state: r.3,
            due_at: r.4,
            send_after: r.5,
            sent_at: r.6,
            clicks: r.7,
            first_click_at: r.8,
        })
        .collect())
}

/// What "nudge now" came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudgeNow {
    /// This nudge goes at `send_after` (now, or the end of the app's quiet hours): the case's
    /// pending step, moved up, or its next step, made now.
    Ready {
        nudge: i64,
        step: i64,
        send_after: i64,
    },
    NotOpen,
    /// Every step of the cadence has been made.
    NoStepLeft,
    NotFound,
}

/// Moves the case's next nudge to now (its pending step, or the first step not made yet), with
/// its audit entry in the same transaction. The nudge is still sent once, by its job, and only
/// while the case is open; quiet hours still hold.
pub async fn nudge_now(
    db: &Db,
    app_id: i64,
    case_id: i64,
    cad: &Cadence,
    now: i64,
    audit: &crate::store::identity::NewAudit<'_>,
) -> Result<NudgeNow, sqlx::Error> {
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let state: Option<String> = tx_run!(&mut tx, c => sqlx::query_scalar(
        "SELECT state FROM recovery_cases WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(case_id).fetch_optional(&mut **c).await)?;
    match state.as_deref() {
        None => return Ok(NudgeNow::NotFound),
        Some("open") => {}
        Some(_) => return Ok(NudgeNow::NotOpen),
    }
    let steps: Vec<(i64, i64, String)> = tx_run!(&mut tx, c => sqlx::query_as(
        "SELECT id, step, state FROM recovery_nudges WHERE app_id = $1 AND case_id = $2 ORDER BY step")
        .bind(app_id).bind(case_id).fetch_all(&mut **c).await)?;
    let at = send_after(now, cad.tz, cad.quiet);
    let ready = if let Some((id, step, _)) = steps.iter().find(|s| s.2 == "pending") {
        tx_run!(&mut tx, c => sqlx::query(
            "UPDATE recovery_nudges SET send_after = $3, updated_at = $4 WHERE app_id = $1 AND id = $2")
            .bind(app_id).bind(id).bind(at).bind(now).execute(&mut **c).await.map(|_| ()))?;
        NudgeNow::Ready {
            nudge: *id,
            step: *step,
            send_after: at,
        }
    } else {
        let made: Vec<usize> = steps.iter().map(|s| s.1 as usize).collect();
        let Some(step) = (0..cad.hours.len()).find(|s| !made.contains(s)) else {
            return Ok(NudgeNow::NoStepLeft);
        };
        let weights: Vec<u32> = cad.variants[step].iter().map(|v| v.weight).collect();
        let variant = &cad.variants[step][pick_variant(&weights, case_id, step)].name;
        let id: i64 = tx_run!(&mut tx, c => sqlx::query_scalar(
            "INSERT INTO recovery_nudges (app_id, case_id, step, variant, state, due_at, send_after, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $5, $5) RETURNING id")
            .bind(app_id).bind(case_id).bind(step as i64).bind(variant).bind(now).bind(at)
            .fetch_one(&mut **c).await)?;
        NudgeNow::Ready {
            nudge: id,
            step: step as i64,
            send_after: at,
        }
    };
    crate::store::identity::record_audit_tx(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(ready)
}

//! A recovery case's timeline: what the store said (payment outcomes of its subscription since
//! the first failure), what tollgate did (nudges sent, links clicked), what people did
//! (actions, from the audit log), and how it ended — oldest first.

use serde::Serialize;
use serde_json::{Value, json};

use crate::scoped_run;
use crate::store::recovery::CaseRow;
use crate::store::scope::Scope;
use crate::store::{Db, identity, nudges};

/// One thing that happened to a case.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// ms since the epoch: the store's time for its events, tollgate's for the rest.
    pub at: i64,
    /// `opened`, `payment_failed`, `payment_succeeded`, `nudge_sent`, `nudge_clicked`,
    /// `recovered`, `lost`, `canceled`, `incentive`, or an action (`recovery.case.cancel_case`, …).
    pub kind: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The audit target naming case `id`.
pub fn audit_target(id: i64) -> String {
    format!("recovery_case:{id}")
}

pub async fn timeline(
    db: &Db,
    app_id: i64,
    case: &CaseRow,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let entry = |at: i64, kind: &str, details: Value| TimelineEntry {
        at,
        kind: kind.to_string(),
        details,
    };
    let mut out = vec![entry(
        case.first_failure_at,
        "opened",
        json!({ "amount_minor": case.amount_minor, "currency": case.currency }),
    )];
    let until = case.closed_at.unwrap_or(i64::MAX);
    let payments: Vec<(String, i64, Option<i64>, Option<String>)> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(
        "SELECT kind, event_time, amount_minor, currency FROM payment_events WHERE app_id = $1 \
         AND user_id = $2 AND provider = $3 AND subscription_id = $4 AND event_time >= $5 \
         AND event_time <= $6 ORDER BY event_time, id")
        .bind(app_id).bind(case.user_id).bind(&case.provider).bind(&case.subscription_id)
        .bind(case.first_failure_at).bind(until).fetch_all(c).await)?;
    for (kind, at, amount, currency) in payments {
        out.push(entry(
            at,
            &kind,
            json!({ "amount_minor": amount, "currency": currency }),
        ));
    }
    for n in nudges::of_case(db, app_id, case.id).await? {
        let about = json!({ "step": n.step, "variant": n.variant });
        if let Some(at) = n.sent_at {
            out.push(entry(at, "nudge_sent", about.clone()));
        }
        if let Some(at) = n.first_click_at {
            let mut clicked = about;
            clicked["clicks"] = json!(n.clicks);
            out.push(entry(at, "nudge_clicked", clicked));
        }
    }
    for a in identity::audit_of(db, app_id, &audit_target(case.id), 200).await? {
        let details = a
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null);
        out.push(entry(
            a.at,
            &a.action,
            json!({ "actor": a.actor, "details": details }),
        ));
    }
    let given = crate::store::recovery::incentive(db, app_id, case.id).await?;
    match (case.state.as_str(), case.recovered_at, case.closed_at) {
        ("recovered", Some(at), _) => out.push(entry(
            at,
            "recovered",
            json!({ "amount_minor": case.recovered_amount_minor }),
        )),
        (state @ ("lost" | "canceled"), _, Some(at)) => out.push(entry(at, state, Value::Null)),
        _ => {}
    }
    if let Some(g) = given {
        let details = json!({ "days": g.days, "credits_micros": g.credits_micros });
        out.push(entry(g.applied_at, "incentive", details));
    }
    // Stable: entries at the same time keep the order above (the store's, ours, people's).
    out.sort_by_key(|e| e.at);
    Ok(out)
}

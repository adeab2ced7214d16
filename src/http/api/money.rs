//! How credits look on the wire: every amount is an integer of micro-credits in a field ending
//! `_micros`, with its exact decimal text beside it (`"balance_micros": 2500000, "balance":
//! "2.5"`). Shared by the public and admin routes.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::money::Micros;
use crate::domain::plans::{Period, Plan, Quota};
use crate::error::{Error, Result};
use crate::store::ledger::{Balances, EntryRow, HoldRow, Snapshot, Target, UserPlan};
use crate::store::quotas::PlanQuota;
use crate::store::{Db, quotas};

fn text(m: i64) -> String {
    Micros(m).to_string()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesOut {
    /// Sum of the ledger: what the user owns.
    pub balance_micros: i64,
    pub balance: String,
    /// Reserved by open holds.
    pub held_micros: i64,
    pub held: String,
    /// What can be spent or reserved now: balance minus held.
    pub available_micros: i64,
    pub available: String,
    /// Where the balance sits, in the order it is spent (soonest-expiring first).
    pub buckets: Vec<BucketOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BucketOut {
    pub grant_id: i64,
    /// `monthly_free`, `subscription`, `top_up`, `promo`, `incentive`, `manual`, `refund` or
    /// `adjustment`.
    pub source: String,
    pub amount_micros: i64,
    pub amount: String,
    pub remaining_micros: i64,
    pub remaining: String,
    /// ms since the epoch; none: never expires.
    pub expires_at: Option<i64>,
}

impl From<Balances> for BalancesOut {
    fn from(b: Balances) -> Self {
        BalancesOut {
            balance_micros: b.balance,
            balance: text(b.balance),
            held_micros: b.held,
            held: text(b.held),
            available_micros: b.available(),
            available: text(b.available()),
            buckets: b
                .buckets
                .into_iter()
                .map(|k| BucketOut {
                    grant_id: k.grant_id,
                    source: k.source,
                    amount_micros: k.amount,
                    amount: text(k.amount),
                    remaining_micros: k.remaining,
                    remaining: text(k.remaining),
                    expires_at: k.expires_at,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryOut {
    pub id: i64,
    /// `grant`, `debit`, `hold`, `settle`, `release`, `expire`, `adjustment` or `refund`.
    pub kind: String,
    /// Change to the balance (negative for charges).
    pub amount_micros: i64,
    pub amount: String,
    /// Change to the held total (holds, and their settle or release).
    pub held_micros: i64,
    pub held: String,
    pub balance_after_micros: i64,
    pub balance_after: String,
    pub grant_id: Option<i64>,
    pub hold_id: Option<i64>,
    pub source: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub created_at: i64,
}

impl From<EntryRow> for EntryOut {
    fn from(e: EntryRow) -> Self {
        EntryOut {
            id: e.id,
            kind: e.kind,
            amount_micros: e.amount,
            amount: text(e.amount),
            held_micros: e.held,
            held: text(e.held),
            balance_after_micros: e.balance_after,
            balance_after: text(e.balance_after),
            grant_id: e.grant_id,
            hold_id: e.hold_id,
            source: e.source,
            reason: e.reason,
            reference: e.reference,
            created_at: e.created_at,
        }
    }
}

/// A page of entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntriesPage {
    pub data: Vec<EntryOut>,
    /// Pass as `cursor` for the next (older) page; none on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    pub limit: Option<i64>,
}

impl PageQuery {
    /// The page size (default 50) and the id the page starts below, checked.
    pub fn read(&self) -> Result<(i64, Option<i64>)> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(invalid("limit", "expected 1 to 200"));
        }
        let before = match &self.cursor {
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| invalid("cursor", "not a cursor from this API"))?,
            ),
            None => None,
        };
        Ok((limit, before))
    }
}

/// Reads a page of a user's ledger.
pub async fn entries_page(db: &Db, t: Target, q: &PageQuery) -> Result<EntriesPage> {
    let (limit, before) = q.read()?;
    let rows = crate::store::ledger::entries(db, t, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<EntryOut> = rows
        .into_iter()
        .take(limit as usize)
        .map(EntryOut::from)
        .collect();
    let next_cursor = more
        .then(|| data.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(EntriesPage { data, next_cursor })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldOut {
    pub id: i64,
    pub amount_micros: i64,
    pub amount: String,
    /// `open`, `settled`, `released` or `expired`.
    pub state: String,
    /// Usage recorded while the work ran.
    pub used_micros: Option<i64>,
    /// What the hold's closing charged.
    pub charged_micros: Option<i64>,
    pub charged: Option<String>,
    pub reference: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

impl From<HoldRow> for HoldOut {
    fn from(h: HoldRow) -> Self {
        HoldOut {
            id: h.id,
            amount_micros: h.amount,
            amount: text(h.amount),
            state: h.state.as_str().to_string(),
            used_micros: h.used,
            charged_micros: h.charged,
            charged: h.charged.map(text),
            reference: h.reference,
            expires_at: h.expires_at,
            created_at: h.created_at,
            resolved_at: h.resolved_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanOut {
    pub id: String,
    pub name: String,
    pub entitlements: Vec<String>,
    /// Model names or `*` patterns the plan may call.
    pub models: Vec<String>,
    /// Credits included per period.
    pub credits_micros: i64,
    pub credits: String,
    /// How far below zero the balance may go.
    pub overdraft_micros: i64,
    pub rate_limit_tier: Option<String>,
    /// The user's current billing period, when a subscription sets one.
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

impl PlanOut {
    pub fn new(plan: &Plan, user: &UserPlan) -> PlanOut {
        PlanOut {
            id: plan.id.clone(),
            name: plan.name.clone(),
            entitlements: plan.entitlements.clone(),
            models: plan.models.clone(),
            credits_micros: plan.credits.0,
            credits: plan.credits.to_string(),
            overdraft_micros: plan.overdraft.0,
            rate_limit_tier: plan.rate_limit_tier.clone(),
            period_start: user.billing.map(|b| b.start),
            period_end: user.billing.map(|b| b.end),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaOut {
    pub metric: String,
    pub limit: i64,
    pub used: i64,
    pub remaining: i64,
    /// `day`, `month` or `billing_period`.
    pub period: String,
    pub period_start: i64,
    /// When the counter starts again from zero.
    pub resets_at: i64,
}

impl QuotaOut {
    fn new(metric: &str, quota: &Quota, used: i64, period: Period) -> QuotaOut {
        QuotaOut {
            metric: metric.to_string(),
            limit: quota.limit,
            used,
            remaining: (quota.limit - used).max(0),
            period: quota.period.as_str().into(),
            period_start: period.start,
            resets_at: period.end,
        }
    }
}

/// The usage of every quota of the snapshot's plan, in the current periods.
pub fn quotas_in(snap: &Snapshot, now: i64) -> Vec<QuotaOut> {
    snap.plan
        .quotas
        .iter()
        .map(|(metric, quota)| {
            let period = Period::of(quota.period, now, snap.user_plan.billing);
            QuotaOut::new(metric, quota, snap.used(metric, period.start), period)
        })
        .collect()
}

/// The user's usage of every quota of their plan, in the current periods.
pub async fn quotas_of(
    db: &Db,
    t: Target,
    user: &UserPlan,
    plan: &Plan,
    now: i64,
) -> Result<Vec<QuotaOut>> {
    let mut out = Vec::with_capacity(plan.quotas.len());
    for (metric, quota) in &plan.quotas {
        let period = Period::of(quota.period, now, user.billing);
        let used = quotas::used(db, t, metric, period.start).await?;
        out.push(QuotaOut::new(metric, quota, used, period));
    }
    Ok(out)
}

/// Counts `quantity` of `metric` against the user's plan: the new usage, or 429 when the plan's
/// quota for the period is used up. A metric the plan has no quota for is unlimited (and not
/// counted).
pub async fn consume_quota(
    db: &Db,
    t: Target,
    user: &UserPlan,
    plan: &Plan,
    metric: &str,
    quantity: i64,
    now: i64,
) -> Result<Option<QuotaOut>> {
    match quotas::consume_on_plan(db, t, user, plan, metric, quantity, now).await? {
        PlanQuota::Unlimited => Ok(None),
        PlanQuota::Counted { used, period } => Ok(Some(QuotaOut::new(
            metric,
            &plan.quotas[metric],
            used,
            period,
        ))),
        PlanQuota::Refused {
            limit,
            retry_after_secs,
        } => Err(Error::QuotaExceeded {
            metric: metric.to_string(),
            limit,
            retry_after_secs,
        }),
    }
}

pub fn invalid(field: &str, message: &str) -> Error {
    Error::Validation(vec![crate::error::FieldError::new(field, message)])
}

/// The largest amount one request may move: 10^15 micro-credits (a billion credits). Far
/// above any real grant or charge, and far enough below `i64::MAX` (≈ 9.2 × 10^18) that sums of
/// such amounts stay exact. A balance that would pass `i64::MAX` is refused by the ledger.
pub const MAX_AMOUNT_MICROS: i64 = 1_000_000_000_000_000;

/// A positive `_micros` amount from a request body, at most [`MAX_AMOUNT_MICROS`].
pub fn positive(field: &str, micros: i64) -> Result<i64> {
    if micros > 0 {
        at_most_max(field, micros)
    } else {
        Err(invalid(
            field,
            "must be a positive integer of micro-credits",
        ))
    }
}

/// A non-negative `_micros` amount from a request body, at most [`MAX_AMOUNT_MICROS`].
pub fn non_negative(field: &str, micros: i64) -> Result<i64> {
    if micros < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    at_most_max(field, micros)
}

fn at_most_max(field: &str, micros: i64) -> Result<i64> {
    if micros > MAX_AMOUNT_MICROS {
        return Err(invalid(
            field,
            &format!("at most {MAX_AMOUNT_MICROS} micro-credits in one request"),
        ));
    }
    Ok(micros)
}

/// Longest `reason` or `reference` accepted.
pub const MAX_NOTE_LEN: usize = 500;

/// An optional free-text field of a ledger entry: at most [`MAX_NOTE_LEN`] characters, none of
/// them a control character (a reference is an id; a reason is one line).
pub fn note(field: &str, text: Option<&str>) -> Result<()> {
    match text {
        Some(t) if t.chars().count() > MAX_NOTE_LEN => Err(invalid(
            field,
            &format!("at most {MAX_NOTE_LEN} characters"),
        )),
        Some(t) if t.chars().any(char::is_control) => {
            Err(invalid(field, "must not contain control characters"))
        }
        _ => Ok(()),
    }
}

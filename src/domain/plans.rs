//! Plans and their periods: what a user may do (entitlements, models), how much (quotas, credits
//! included per period), and the calendar math of periods. Declared per app in the config file.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::money::Micros;
use super::pricing::Conversion;

/// An app's billing settings: plans, the default plan, and the USD → credit conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// USD value of one credit.
    #[serde(default = "default_credit_usd")]
    pub credit_usd: Micros,
    /// Multiplier on provider prices, e.g. 1.3.
    #[serde(default = "default_markup")]
    pub markup: Micros,
    /// The plan of users without a subscription.
    #[serde(default = "default_plan_id")]
    pub default_plan: String,
    #[serde(default)]
    pub plans: Vec<Plan>,
    /// How long a store subscription keeps its plan after its paid period ended with no
    /// renewal seen (a late or lost webhook): then it lapses by itself.
    #[serde(default = "default_grace_hours")]
    pub subscription_grace_hours: u32,
    /// A user whose balance falls to this or below is announced by a `credits.low` event
    /// (docs/events.md); unset: only `credits.exhausted`, at zero.
    #[serde(default)]
    pub credits_low: Option<Micros>,
    /// Days after a failed payment's first failure in which a payment counts as recovering it
    /// (docs/recovery.md).
    #[serde(default = "default_recovery_window_days")]
    pub recovery_window_days: u32,
}

fn default_recovery_window_days() -> u32 {
    crate::domain::recovery::DEFAULT_WINDOW_DAYS
}

/// Three days: longer than the stores' usual renewal delays, short enough that access never
/// outlives payment by much.
pub const DEFAULT_GRACE_HOURS: u32 = 72;

fn default_grace_hours() -> u32 {
    DEFAULT_GRACE_HOURS
}

impl BillingSettings {
    /// [`Self::subscription_grace_hours`] in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.subscription_grace_hours as i64 * 3_600_000
    }

    /// [`Self::recovery_window_days`] in milliseconds.
    pub fn recovery_window_ms(&self) -> i64 {
        self.recovery_window_days as i64 * crate::domain::recovery::DAY_MS
    }
}

fn default_credit_usd() -> Micros {
    Conversion::default().credit_usd
}
fn default_markup() -> Micros {
    Conversion::default().markup
}
fn default_plan_id() -> String {
    "free".into()
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            credit_usd: default_credit_usd(),
            markup: default_markup(),
            default_plan: default_plan_id(),
            plans: Vec::new(),
            subscription_grace_hours: DEFAULT_GRACE_HOURS,
            credits_low: None,
            recovery_window_days: default_recovery_window_days(),
        }
    }
}

impl BillingSettings {
    pub fn conversion(&self) -> Conversion {
        Conversion {
            credit_usd: self.credit_usd,
            markup: self.markup,
        }
    }

    /// The plan a user is on: `plan_id` when the app still declares it, else the default plan,
    /// else (an app with no plans) an empty plan that grants nothing.
    pub fn plan(&self, plan_id: Option<&str>) -> Plan {
        self.declared_plan(plan_id)
            .cloned()
            .unwrap_or_else(|| Plan::empty(&self.default_plan))
    }

    /// [`Self::plan`] without the copy, `None` for an app that declares no plans.
    pub fn declared_plan(&self, plan_id: Option<&str>) -> Option<&Plan> {
        let find = |id: &str| self.plans.iter().find(|p| p.id == id);
        plan_id.and_then(find).or_else(|| find(&self.default_plan))
    }
}

/// One plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Named feature flags, e.g. `premium`.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Model names or patterns with `*` (e.g. `gpt-4o*`) the plan may call.
    #[serde(default)]
    pub models: Vec<String>,
    /// Limits per metric (e.g. `requests`) and period.
    #[serde(default)]
    pub quotas: BTreeMap<String, Quota>,
    /// Credits included in each period (granted once per period, expiring at its end).
    #[serde(default)]
    pub credits: Micros,
    /// How far below zero a balance on this plan may go (0: never).
    #[serde(default)]
    pub overdraft: Micros,
    /// A named rate-limit tier, for the gateway's per-plan limits.
    #[serde(default)]
    pub rate_limit_tier: Option<String>,
    /// AI tokens (input, cached and output) a user may use per minute (per process).
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

impl Plan {
    fn empty(id: &str) -> Plan {
        Plan {
            id: id.to_string(),
            name: id.to_string(),
            entitlements: Vec::new(),
            models: Vec::new(),
            quotas: BTreeMap::new(),
            credits: Micros::ZERO,
            overdraft: Micros::ZERO,
            rate_limit_tier: None,
            tokens_per_minute: None,
        }
    }

    pub fn has_entitlement(&self, name: &str) -> bool {
        self.entitlements.iter().any(|e| e == name)
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|p| pattern_matches(p, model))
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// A limit on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub limit: i64,
    #[serde(default)]
    pub period: QuotaPeriod,
}

/// The window a quota counts in. Counters are keyed by the window's start, so a new window
/// starts from zero without any job having to reset it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    /// Calendar day, UTC.
    Day,
    /// Calendar month, UTC.
    #[default]
    Month,
    /// The subscription's billing period when the user has one, else the calendar month.
    BillingPeriod,
}

impl QuotaPeriod {
    /// The name the config file and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
            QuotaPeriod::BillingPeriod => "billing_period",
        }
    }
}

/// A half-open window `[start, end)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    /// `[start, end)` when both are known and `start` comes first (stores' periods are read
    /// from optional fields).
    pub fn between(start: Option<i64>, end: Option<i64>) -> Option<Period> {
        match (start, end) {
            (Some(start), Some(end)) if start < end => Some(Period { start, end }),
            _ => None,
        }
    }

    /// The calendar month (UTC) containing `at_ms`.
    pub fn month_of(at_ms: i64) -> Period {
        let at = utc(at_ms);
        let start = first_of_month(at.year(), at.month());
        let end = if at.month() == 12 {
            first_of_month(at.year() + 1, 1)
        } else {
            first_of_month(at.year(), at.month() + 1)
        };
        Period { start, end }
    }

    /// The calendar day (UTC) containing `at_ms`.
    pub fn day_of(at_ms: i64) -> Period {
        const DAY: i64 = 86_400_000;
        let start = at_ms.div_euclid(DAY) * DAY;
        Period {
            start,
            end: start + DAY,
        }
    }

    /// The period of `kind` containing `at_ms`; `billing` is the user's current billing period,
    /// if any (used only when it contains `at_ms`).
    pub fn of(kind: QuotaPeriod, at_ms: i64, billing: Option<Period>) -> Period {
        match kind {
            QuotaPeriod::Day => Period::day_of(at_ms),
            QuotaPeriod::Month => Period::month_of(at_ms),
            QuotaPeriod::BillingPeriod => billing
                .filter(|b| b.start <= at_ms && at_ms < b.end)
                .unwrap_or_else(|| Period::month_of(at_ms)),
        }
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn first_of_month(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default()
}

/// ISO-8601 text of a period start, as used in idempotency keys (`2026-11-01T00:00:00Z`).
pub fn iso(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_22: i64 = 1_795_334_400_000; // 2026-11-22T08:00:00Z

    #[test]
    fn calendar_months_are_utc_and_wrap_the_year() {
        let p = Period::month_of(NOV_22);
        assert_eq!(iso(p.start), "2026-11-01T00:00:00Z");
        assert_eq!(iso(p.end), "2026-12-01T00:00:00Z");
        let dec = Period::month_of(p.end);
        assert_eq!(iso(dec.end), "2027-01-01T00:00:00Z");
        assert_eq!(Period::month_of(p.end - 1), p);
    }

    #[test]
    fn days_and_billing_periods() {
        let d = Period::day_of(NOV_22);
        assert_eq!(iso(d.start), "2026-11-22T00:00:00Z");
        let billing = Period {
            start: NOV_22 - 1_000,
            end: NOV_22 + 1_000,
        };
        assert_eq!(
            Period::of(QuotaPeriod::BillingPeriod, NOV_22, Some(billing)),
            billing
        );
        // A stale billing period (the subscription lapsed) falls back to the calendar month.
        assert_eq!(
            Period::of(QuotaPeriod::BillingPeriod, NOV_22 + 5_000, Some(billing)),
            Period::month_of(NOV_22)
        );
    }

    #[test]
    fn model_patterns() {
        assert!(pattern_matches("gpt-4o*", "gpt-4o-mini"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("mock", "mock"));
        assert!(!pattern_matches("mock", "mock-2"));
        assert!(pattern_matches(
            "claude-*-sonnet*",
            "claude-3-5-sonnet-latest"
        ));
        assert!(!pattern_matches("claude-*-opus", "claude-3-sonnet"));
        assert!(!pattern_matches("gpt-4o*", "gpt-4"));
    }

    #[test]
    fn unknown_plans_fall_back_to_the_default_and_no_plans_grant_nothing() {
        let mut b = BillingSettings::default();
        assert!(b.plan(None).entitlements.is_empty());
        assert_eq!(b.plan(Some("gone")).id, "free");
        b.plans.push(Plan {
            entitlements: vec!["premium".into()],
            ..Plan::empty("pro")
        });
        assert!(b.plan(Some("pro")).has_entitlement("premium"));
        assert!(!b.plan(Some("other")).has_entitlement("premium"));
    }
}

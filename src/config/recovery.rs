//! `[apps.recovery]`: how an app's payment-recovery nudges go out (docs/recovery.md) — the
//! cadence, the copy variants per step, quiet hours in the app's time zone, and where a nudge's
//! link leads.

use serde::Deserialize;

use super::Problem;
use crate::domain::nudges::{DEFAULT_STEPS_HOURS, QuietHours};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// IANA time zone quiet hours are read in (default `UTC`).
    pub time_zone: Option<String>,
    /// `[start, end]` local hours in which nothing is sent, e.g. `[21, 8]` (the night).
    pub quiet_hours: Option<[u32; 2]>,
    /// The cadence; default after 0, 24, 72 and 168 hours, one variant each.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// Where a nudge's link leads when the store cannot make a page for the user (https).
    pub manage_url: Option<String>,
    /// Where Stripe's billing portal returns the user (needed for a Stripe portal link).
    pub return_url: Option<String>,
    /// Free days given once when a case is recovered (Whop: added to the membership through
    /// its API, which needs `[apps.whop] api_key`); 0: none.
    #[serde(default)]
    pub incentive_days: u32,
    /// Credits granted once when a case is recovered (through the ledger, source `incentive`);
    /// 0: none.
    #[serde(default)]
    pub incentive_credits: crate::domain::money::Micros,
    /// Also send each nudge by email, with this template of `[apps.email.templates]`, to users
    /// whose email address the app has set (`PUT /v1/users/{external_id}/email`).
    pub email_template: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Hours after the first failure (store time).
    pub after_hours: u32,
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
}

/// One copy of a step, sent to a share of cases by weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// The text the app shows (push, in-app, DM), passed in the `recovery.nudge` event.
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

/// The effective cadence of an app: its steps, or the default ones, each with variants.
#[derive(Debug, Clone)]
pub struct Cadence {
    pub hours: Vec<u32>,
    pub variants: Vec<Vec<VariantConfig>>,
    pub tz: chrono_tz::Tz,
    pub quiet: Option<QuietHours>,
}

impl Cadence {
    pub fn of(c: Option<&RecoveryConfig>) -> Cadence {
        let default_variant = || VariantConfig {
            name: "default".into(),
            weight: 1,
            message: None,
        };
        let steps: Vec<(u32, Vec<VariantConfig>)> = match c {
            Some(c) if !c.steps.is_empty() => c
                .steps
                .iter()
                .map(|s| {
                    let v = if s.variants.is_empty() {
                        vec![default_variant()]
                    } else {
                        s.variants.clone()
                    };
                    (s.after_hours, v)
                })
                .collect(),
            _ => DEFAULT_STEPS_HOURS
                .iter()
                .map(|h| (*h, vec![default_variant()]))
                .collect(),
        };
        Cadence {
            hours: steps.iter().map(|s| s.0).collect(),
            variants: steps.into_iter().map(|s| s.1).collect(),
            tz: c
                .and_then(|c| c.time_zone.as_deref())
                .and_then(|z| z.parse().ok())
                .unwrap_or(chrono_tz::UTC),
            quiet: c
                .and_then(|c| c.quiet_hours)
                .map(|[start, end]| QuietHours { start, end }),
        }
    }
}

/// Every problem of an app's `[apps.recovery]`, each under its key.
pub fn validate(key: &str, c: &RecoveryConfig, prod: bool, p: &mut Vec<Problem>) {
    if let Some(z) = &c.time_zone
        && z.parse::<chrono_tz::Tz>().is_err()
    {
        p.push(Problem::new(
            format!("{key}.time_zone"),
            format!("{z:?} is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")"),
        ));
    }
    if let Some([start, end]) = c.quiet_hours
        && (start > 23 || end > 23)
    {
        p.push(Problem::new(
            format!("{key}.quiet_hours"),
            "two hours of the day, 0-23: [start, end]",
        ));
    }
    if c.incentive_days > 1095 {
        p.push(Problem::new(
            format!("{key}.incentive_days"),
            "at most 1095 (three years; Whop's own limit)",
        ));
    }
    if c.incentive_credits.0 < 0 {
        p.push(Problem::new(
            format!("{key}.incentive_credits"),
            "not negative (0: none)",
        ));
    }
    let mut last = None;
    for (i, s) in c.steps.iter().enumerate() {
        let at = format!("{key}.steps.{i}");
        if s.after_hours > 90 * 24 {
            p.push(Problem::new(
                format!("{at}.after_hours"),
                "at most 2160 (90 days)",
            ));
        }
        if last.is_some_and(|l| s.after_hours <= l) {
            p.push(Problem::new(
                format!("{at}.after_hours"),
                "steps go in increasing order of after_hours",
            ));
        }
        last = Some(s.after_hours);
        let mut names = std::collections::HashSet::new();
        for (j, v) in s.variants.iter().enumerate() {
            let vk = format!("{at}.variants.{j}");
            if v.name.is_empty()
                || v.name.len() > 40
                || !v
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                p.push(Problem::new(
                    format!("{vk}.name"),
                    "1-40 letters, digits, '-' or '_'",
                ));
            } else if !names.insert(v.name.as_str()) {
                p.push(Problem::new(
                    format!("{vk}.name"),
                    format!("{:?} is declared twice in this step", v.name),
                ));
            }
            if v.message.as_ref().is_some_and(|m| m.len() > 2000) {
                p.push(Problem::new(format!("{vk}.message"), "at most 2000 bytes"));
            }
        }
        if !s.variants.is_empty() && s.variants.iter().all(|v| v.weight == 0) {
            p.push(Problem::new(
                format!("{at}.variants"),
                "at least one variant needs a weight above 0",
            ));
        }
    }
    for (name, url) in [("manage_url", &c.manage_url), ("return_url", &c.return_url)] {
        if let Some(u) = url {
            let ok = url::Url::parse(u)
                .is_ok_and(|u| u.scheme() == "https" || (!prod && u.scheme() == "http"));
            if !ok {
                p.push(Problem::new(
                    format!("{key}.{name}"),
                    "an https URL (http is accepted outside production)",
                ));
            }
        }
    }
}

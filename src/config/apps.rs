//! `[[apps]]`: apps declared in the config file, created or updated at startup.

use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

use super::Problem;
use super::billing::{ProductConfig, RevenueCatConfig, SignedWebhooks, StripeConfig};
use crate::domain::compat::{CompatRules, Version};
use crate::domain::identity::{AppSettings, AppSlug, InviteSettings, JwtSettings};
use crate::domain::money::Micros;
use crate::domain::plans::{BillingSettings, Plan};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub slug: String,
    pub name: Option<String>,
    #[serde(default)]
    pub compat: CompatRules,
    pub jwt: Option<JwtSettings>,
    #[serde(default)]
    pub invites: InviteSettings,
    /// USD value of one credit (default 0.01).
    pub credit_usd: Option<Micros>,
    /// Multiplier on provider prices (default 1).
    pub markup: Option<Micros>,
    /// The plan of users without a subscription (default `free`).
    pub default_plan: Option<String>,
    #[serde(default)]
    pub plans: Vec<Plan>,
    /// Hours a store subscription keeps its plan past its paid period with no renewal seen
    /// (default 72); then it lapses by itself.
    pub subscription_grace_hours: Option<u32>,
    /// Credits at or below which a user's balance is announced by a `credits.low` event.
    pub credits_low: Option<Micros>,
    /// Days after a failed payment in which a payment recovers it (default 14; docs/recovery.md).
    pub recovery_window_days: Option<u32>,
    /// How recovery nudges go out: cadence, variants, quiet hours, links (docs/recovery.md).
    pub recovery: Option<super::recovery::RecoveryConfig>,
    /// Billing stores the app sells through (docs/billing.md); each optional.
    pub stripe: Option<StripeConfig>,
    pub revenuecat: Option<RevenueCatConfig>,
    pub paddle: Option<SignedWebhooks>,
    pub whop: Option<SignedWebhooks>,
    /// What each store's products give: a plan, or credits.
    #[serde(default)]
    pub products: Vec<ProductConfig>,
    /// The app's own jobs on a schedule, each run delivered to its jobs endpoint (docs/jobs.md).
    #[serde(default)]
    pub schedules: Vec<AppScheduleConfig>,
    /// The app's email sender and templates (docs/email.md).
    pub email: Option<super::AppEmailConfig>,
}

/// `[[apps.schedules]]`: one of the app's own kinds at every slot of `cron` (UTC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppScheduleConfig {
    pub name: String,
    pub cron: crate::jobs::cron::CronExpr,
    pub kind: String,
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    /// Default `app`.
    pub queue: Option<String>,
    #[serde(default)]
    pub catch_up: super::CatchUp,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// An app's schedules: valid names and kinds, object arguments, declared queues that are not
/// tollgate's own, each name once.
pub fn validate_schedules(apps: &[AppConfig], queues: &[&str], p: &mut Vec<Problem>) {
    for (i, a) in apps.iter().enumerate() {
        let mut names = HashSet::new();
        for (j, s) in a.schedules.iter().enumerate() {
            let key = format!("apps.{i}.schedules.{j}");
            let found = crate::events::app_jobs::schedule_problems(
                &s.name,
                &s.kind,
                &s.args,
                s.queue.as_deref(),
                queues,
            );
            for (field, message) in found {
                p.push(Problem::new(format!("{key}.{field}"), message));
            }
            if !names.insert(s.name.as_str()) {
                p.push(Problem::new(
                    format!("{key}.name"),
                    format!("{:?} is declared twice", s.name),
                ));
            }
        }
    }
}

impl AppConfig {
    pub fn settings(&self) -> AppSettings {
        AppSettings {
            compat: self.compat.clone(),
            jwt: self.jwt.clone(),
            invites: self.invites.clone(),
            billing: std::sync::Arc::new(self.billing()),
        }
    }

    pub fn billing(&self) -> BillingSettings {
        let d = BillingSettings::default();
        BillingSettings {
            credit_usd: self.credit_usd.unwrap_or(d.credit_usd),
            markup: self.markup.unwrap_or(d.markup),
            default_plan: self.default_plan.clone().unwrap_or(d.default_plan),
            plans: self.plans.clone(),
            subscription_grace_hours: self
                .subscription_grace_hours
                .unwrap_or(d.subscription_grace_hours),
            credits_low: self.credits_low,
            recovery_window_days: self.recovery_window_days.unwrap_or(d.recovery_window_days),
        }
    }
}

pub fn validate(apps: &[AppConfig], prod: bool, p: &mut Vec<Problem>) {
    let mut slugs = HashSet::new();
    let mut issuers = HashSet::new();
    let mut companies = HashSet::new();
    for (i, a) in apps.iter().enumerate() {
        let key = format!("apps.{i}");
        if let Err(m) = AppSlug::parse(&a.slug) {
            p.push(Problem::new(format!("{key}.slug"), m));
        } else if !slugs.insert(a.slug.as_str()) {
            p.push(Problem::new(
                format!("{key}.slug"),
                format!("{:?} is declared twice", a.slug),
            ));
        }
        for (platform, rule) in &a.compat {
            for (field, v) in [
                ("min_version", &rule.min_version),
                ("latest_version", &rule.latest_version),
            ] {
                if let Some(v) = v
                    && let Err(m) = Version::parse(v)
                {
                    p.push(Problem::new(format!("{key}.compat.{platform}.{field}"), m));
                }
            }
            if let Some(u) = &rule.update_url
                && !Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                p.push(Problem::new(
                    format!("{key}.compat.{platform}.update_url"),
                    "expected an http(s) URL",
                ));
            }
        }
        billing(&key, &a.billing(), p);
        super::billing::validate(&key, a, prod, p);
        if let Some(c) = a.whop.as_ref().and_then(|w| w.company_id.as_deref())
            && !companies.insert(c)
        {
            p.push(Problem::new(
                format!("{key}.whop.company_id"),
                format!("{c:?} is another app's company: one app per Whop company"),
            ));
        }
        if let Some(r) = &a.recovery {
            super::recovery::validate(&format!("{key}.recovery"), r, prod, p);
            if let Some(name) = &r.email_template {
                nudge_template(&key, a, name, p);
            }
            if r.incentive_days > 0
                && let Some(w) = &a.whop
                && w.api_key.is_none()
            {
                p.push(Problem::new(
                    format!("{key}.whop.api_key"),
                    "recovery.incentive_days adds free days through Whop's API: set an API key \
                     with the member:manage permission",
                ));
            }
        }
        if let Some(jwt) = &a.jwt {
            if !issuers.insert(jwt.issuer.as_str()) {
                p.push(Problem::new(
                    format!("{key}.jwt.issuer"),
                    "two apps cannot share an issuer",
                ));
            }
            match Url::parse(&jwt.jwks_url) {
                Ok(u) if u.scheme() == "https" || (!prod && u.scheme() == "http") => {}
                _ => p.push(Problem::new(
                    format!("{key}.jwt.jwks_url"),
                    "expected an https URL (http is accepted outside production)",
                )),
            }
            if jwt.audience.as_deref() == Some("") {
                p.push(Problem::new(
                    format!("{key}.jwt.audience"),
                    "must not be empty when set",
                ));
            }
            if jwt.leeway_secs > 300 {
                p.push(Problem::new(
                    format!("{key}.jwt.leeway_secs"),
                    "at most 300",
                ));
            }
        }
    }
}

/// Plans and conversion: positive conversion, unique plan ids, a default plan that exists (when
/// any plan is declared), sane names and limits.
pub(super) fn billing(key: &str, b: &BillingSettings, p: &mut Vec<Problem>) {
    if !b.credit_usd.is_positive() {
        p.push(Problem::new(
            format!("{key}.credit_usd"),
            "must be greater than 0",
        ));
    }
    if !b.markup.is_positive() {
        p.push(Problem::new(
            format!("{key}.markup"),
            "must be greater than 0",
        ));
    }
    if b.credits_low.is_some_and(|c| !c.is_positive()) {
        p.push(Problem::new(
            format!("{key}.credits_low"),
            "must be greater than 0 (leave it unset for no credits.low event)",
        ));
    }
    if !(1..=90).contains(&b.recovery_window_days) {
        p.push(Problem::new(
            format!("{key}.recovery_window_days"),
            "expected 1 to 90",
        ));
    }
    if b.subscription_grace_hours > 24 * 90 {
        p.push(Problem::new(
            format!("{key}.subscription_grace_hours"),
            "expected 0 to 2160 (90 days)",
        ));
    }
    if !b.plans.is_empty() && !b.plans.iter().any(|plan| plan.id == b.default_plan) {
        p.push(Problem::new(
            format!("{key}.default_plan"),
            format!("{:?} is not one of the app's plans", b.default_plan),
        ));
    }
    let valid_name = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    let mut ids = HashSet::new();
    for (j, plan) in b.plans.iter().enumerate() {
        let at = format!("{key}.plans.{j}");
        if !valid_name(&plan.id) {
            p.push(Problem::new(
                format!("{at}.id"),
                "1-64 characters of a-z, 0-9, '-', '_', '.'",
            ));
        } else if !ids.insert(plan.id.as_str()) {
            p.push(Problem::new(
                format!("{at}.id"),
                format!("{:?} is declared twice", plan.id),
            ));
        }
        for e in &plan.entitlements {
            if !valid_name(e) {
                p.push(Problem::new(
                    format!("{at}.entitlements"),
                    format!("{e:?}: 1-64 characters of a-z, 0-9, '-', '_', '.'"),
                ));
            }
        }
        if plan.models.iter().any(|m| m.is_empty()) {
            p.push(Problem::new(
                format!("{at}.models"),
                "a pattern must not be empty",
            ));
        }
        for (metric, quota) in &plan.quotas {
            if !valid_name(metric) {
                p.push(Problem::new(
                    format!("{at}.quotas.{metric}"),
                    "invalid metric name",
                ));
            }
            if quota.limit < 0 {
                p.push(Problem::new(
                    format!("{at}.quotas.{metric}.limit"),
                    "must not be negative",
                ));
            }
        }
        if plan.credits < Micros::ZERO {
            p.push(Problem::new(
                format!("{at}.credits"),
                "must not be negative",
            ));
        }
        if plan.tokens_per_minute == Some(0) {
            p.push(Problem::new(
                format!("{at}.tokens_per_minute"),
                "at least 1 (leave it out for no limit)",
            ));
        }
        if plan.overdraft < Micros::ZERO {
            p.push(Problem::new(
                format!("{at}.overdraft"),
                "must not be negative",
            ));
        }
    }
}

/// A nudge email template must exist and render with the nudge's variables alone.
fn nudge_template(key: &str, a: &AppConfig, name: &str, p: &mut Vec<Problem>) {
    let field = format!("{key}.recovery.email_template");
    let Some(t) = a.email.as_ref().and_then(|e| e.templates.get(name)) else {
        p.push(Problem::new(
            field,
            format!("{name:?} is not a template of [apps.email.templates]"),
        ));
        return;
    };
    let sample = crate::store::nudges::email_variables(
        "https://example.com/r/token",
        Some("Your card was declined."),
        0,
        "default",
        Some(1999),
        Some("usd"),
        "user_1",
    );
    if let Err(e) = crate::events::email::render(t, &sample) {
        p.push(Problem::new(
            field,
            format!(
                "{name:?} must render with the nudge's variables (link, message, step, variant, \
                 amount, user): {}",
                e.one_line()
            ),
        ));
    }
}

//! An app's billing stores (`[apps.stripe]`, `[apps.revenuecat]`, `[apps.paddle]`,
//! `[apps.whop]`) and the products they sell (`[[apps.products]]`). An app enables only the
//! stores it uses; nothing is required of the others.

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::Problem;
use crate::billing::Provider;
use crate::domain::money::Micros;

/// Stripe: webhook signing secrets (several during a rotation) and the API key for checkout and
/// the customer portal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// `whsec_…`, one per endpoint secret in use; a signature by any of them is accepted.
    #[serde(default)]
    pub webhook_secrets: Vec<SecretString>,
    /// `sk_…` or a restricted `rk_…` key, for checkout sessions, the portal and customers.
    #[serde(default, deserialize_with = "super::env::secret")]
    pub secret_key: Option<SecretString>,
    /// The API root (tests point it at a local fake).
    #[serde(default = "stripe_api")]
    pub api_base: String,
    /// Oldest accepted signature timestamp, in seconds (Stripe's libraries use 300).
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

/// RevenueCat: the exact `Authorization` header value set in the dashboard's webhook settings,
/// and a secret API key for the REST API (the "sync now" after a purchase).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevenueCatConfig {
    /// One value, or several while the dashboard's value is being changed (a rotation).
    #[serde(default, deserialize_with = "one_or_many")]
    pub webhook_authorization: Vec<SecretString>,
    #[serde(default, deserialize_with = "super::env::secret")]
    pub api_key: Option<SecretString>,
    #[serde(default = "revenuecat_api")]
    pub api_base: String,
}

/// Paddle Billing or Whop: signing secrets (several during a rotation) and, optionally, an API
/// key for the store's API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedWebhooks {
    #[serde(default)]
    pub webhook_secrets: Vec<SecretString>,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// A secret API key (Whop: an app or company API key with `member:manage`, for a recovery
    /// incentive's free days).
    #[serde(default, deserialize_with = "super::env::secret")]
    pub api_key: Option<SecretString>,
    /// The API root (tests point it at a local fake); default the store's own.
    pub api_base: Option<String>,
    /// Whop only: the company (`biz_…`) this app is. Deliveries to the shared endpoint
    /// `POST /webhooks/whop` (one Whop app installed by many sellers) go to the app whose
    /// company they name.
    pub company_id: Option<String>,
}

/// What a store's product (Stripe price, RevenueCat product, Paddle price, Whop plan) gives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    pub provider: Provider,
    /// The store's id for it, e.g. `price_1Q…` or `com.example.pro.monthly`.
    pub id: String,
    /// A subscription to it puts the user on this plan.
    pub plan: Option<String>,
    /// A one-time purchase of it grants these credits (a top-up pack).
    pub credits: Option<Micros>,
}

/// A secret written as one string or as a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let values = match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    Ok(values
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .collect())
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            webhook_secrets: Vec::new(),
            secret_key: None,
            api_base: stripe_api(),
            tolerance_secs: default_tolerance(),
        }
    }
}

impl Default for RevenueCatConfig {
    fn default() -> Self {
        RevenueCatConfig {
            webhook_authorization: Vec::new(),
            api_key: None,
            api_base: revenuecat_api(),
        }
    }
}

impl Default for SignedWebhooks {
    fn default() -> Self {
        SignedWebhooks {
            webhook_secrets: Vec::new(),
            tolerance_secs: default_tolerance(),
            api_key: None,
            api_base: None,
            company_id: None,
        }
    }
}

fn stripe_api() -> String {
    "https://api.stripe.com".into()
}
fn revenuecat_api() -> String {
    "https://api.revenuecat.com".into()
}
fn default_tolerance() -> u64 {
    300
}

impl super::AppConfig {
    /// The product a store's id names, if the app maps it.
    pub fn product(&self, provider: Provider, id: &str) -> Option<&ProductConfig> {
        self.products
            .iter()
            .find(|p| p.provider == provider && p.id == id)
    }

    /// Every store secret of the app, by its key under the app, to open sealed values.
    pub fn secrets_mut(&mut self) -> impl Iterator<Item = (String, &mut SecretString)> {
        let mut out: Vec<(String, &mut SecretString)> = Vec::new();
        if let Some(s) = self.stripe.as_mut() {
            for (i, w) in s.webhook_secrets.iter_mut().enumerate() {
                out.push((format!("stripe.webhook_secrets.{i}"), w));
            }
            if let Some(k) = s.secret_key.as_mut() {
                out.push(("stripe.secret_key".into(), k));
            }
        }
        if let Some(r) = self.revenuecat.as_mut() {
            for (i, a) in r.webhook_authorization.iter_mut().enumerate() {
                out.push((format!("revenuecat.webhook_authorization.{i}"), a));
            }
            if let Some(k) = r.api_key.as_mut() {
                out.push(("revenuecat.api_key".into(), k));
            }
        }
        for (name, store) in [
            ("paddle", self.paddle.as_mut()),
            ("whop", self.whop.as_mut()),
        ] {
            if let Some(st) = store {
                for (i, w) in st.webhook_secrets.iter_mut().enumerate() {
                    out.push((format!("{name}.webhook_secrets.{i}"), w));
                }
                if let Some(k) = st.api_key.as_mut() {
                    out.push((format!("{name}.api_key"), k));
                }
            }
        }
        out.into_iter()
    }

    /// Whether webhooks of this store are accepted for the app.
    pub fn store_enabled(&self, provider: Provider) -> bool {
        match provider {
            Provider::Stripe => self.stripe.is_some(),
            Provider::RevenueCat => self.revenuecat.is_some(),
            Provider::Paddle => self.paddle.is_some(),
            Provider::Whop => self.whop.is_some(),
        }
    }
}

/// Every malformed or missing store setting of app `key`, and products that name unknown plans.
pub fn validate(key: &str, b: &super::AppConfig, prod: bool, p: &mut Vec<Problem>) {
    if prod {
        // Every store secret, as for tollgate's own: a short one is a typo or a placeholder.
        let min = super::validate::MIN_SECRET_LEN;
        for (field, secret) in b.clone().secrets_mut() {
            let text = secret.expose_secret();
            let len = text.chars().count();
            if !text.starts_with(crate::crypto::SEALED_PREFIX) && len < min {
                p.push(Problem::new(
                    format!("{key}.{field}"),
                    format!("must be at least {min} characters in production, got {len}"),
                ));
            }
        }
    }
    let plan_ids: Vec<&str> = b.plans.iter().map(|p| p.id.as_str()).collect();
    let mut need = |ok: bool, field: String, message: &str| {
        if !ok {
            p.push(Problem::new(field, message));
        }
    };
    // A value still sealed here could not be opened; that problem is already reported.
    let sealed = |s: &SecretString| s.expose_secret().starts_with(crate::crypto::SEALED_PREFIX);
    let api = |url: &str| {
        Url::parse(url).is_ok_and(|u| u.scheme() == "https" || (!prod && u.scheme() == "http"))
    };
    if let Some(s) = &b.stripe {
        need(
            !s.webhook_secrets.is_empty(),
            format!("{key}.stripe.webhook_secrets"),
            "at least one signing secret (whsec_…) from the webhook endpoint's page",
        );
        for (i, w) in s.webhook_secrets.iter().enumerate() {
            need(
                w.expose_secret().starts_with("whsec_") || sealed(w),
                format!("{key}.stripe.webhook_secrets.{i}"),
                "a Stripe signing secret starts with whsec_",
            );
        }
        if let Some(k) = &s.secret_key {
            let still_sealed = sealed(k);
            let k = k.expose_secret();
            need(
                k.starts_with("sk_") || k.starts_with("rk_") || still_sealed,
                format!("{key}.stripe.secret_key"),
                "a Stripe secret key starts with sk_ (or rk_ for a restricted key)",
            );
            need(
                !(prod && (k.starts_with("sk_test_") || k.starts_with("rk_test_"))),
                format!("{key}.stripe.secret_key"),
                "a test-mode key in production",
            );
        }
        need(
            api(&s.api_base),
            format!("{key}.stripe.api_base"),
            "expected an https URL (http is accepted outside production)",
        );
    }
    if let Some(r) = &b.revenuecat {
        need(
            !r.webhook_authorization.is_empty(),
            format!("{key}.revenuecat.webhook_authorization"),
            "the Authorization header value set on the RevenueCat webhook",
        );
        for (i, a) in r.webhook_authorization.iter().enumerate() {
            need(
                a.expose_secret().len() >= 16 || sealed(a),
                format!("{key}.revenuecat.webhook_authorization.{i}"),
                "at least 16 characters",
            );
        }
        need(
            api(&r.api_base),
            format!("{key}.revenuecat.api_base"),
            "expected an https URL (http is accepted outside production)",
        );
    }
    for (name, s) in [("paddle", &b.paddle), ("whop", &b.whop)] {
        if let Some(s) = s {
            need(
                !s.webhook_secrets.is_empty(),
                format!("{key}.{name}.webhook_secrets"),
                "at least one signing secret",
            );
            for (i, w) in s.webhook_secrets.iter().enumerate() {
                let still_sealed = sealed(w);
                let w = w.expose_secret();
                let ok = match name {
                    "paddle" => w.starts_with("pdl_ntfset_") || w.len() >= 16,
                    _ => crate::billing::whop::key_of(w).is_some(),
                };
                need(
                    ok || still_sealed,
                    format!("{key}.{name}.webhook_secrets.{i}"),
                    "not a signing secret (Paddle: pdl_ntfset_…; Whop: at least 16 characters, or whsec_<base64>)",
                );
            }
            let company_ok = match (&s.company_id, name) {
                (None, _) => true,
                (Some(c), "whop") => c.starts_with("biz_") && c.len() <= 64,
                (Some(_), _) => false,
            };
            need(
                company_ok,
                format!("{key}.{name}.company_id"),
                "Whop only: the company's id, biz_…",
            );
            need(
                s.api_base.as_deref().is_none_or(api),
                format!("{key}.{name}.api_base"),
                "expected an https URL (http is accepted outside production)",
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, product) in b.products.iter().enumerate() {
        let at = format!("{key}.products.{i}");
        need(
            !product.id.is_empty(),
            format!("{at}.id"),
            "must not be empty",
        );
        need(
            seen.insert((product.provider, product.id.as_str())),
            format!("{at}.id"),
            "this store's product is mapped twice",
        );
        need(
            b.store_enabled(product.provider),
            format!("{at}.provider"),
            "the app does not enable this store",
        );
        match (&product.plan, product.credits) {
            (None, None) => need(
                false,
                at.clone(),
                "needs a plan (subscriptions) or credits (a top-up pack)",
            ),
            (Some(plan), _) => need(
                plan_ids.contains(&plan.as_str()),
                format!("{at}.plan"),
                "not one of the app's plans",
            ),
            (None, Some(c)) => need(
                c.is_positive(),
                format!("{at}.credits"),
                "must be greater than 0",
            ),
        }
    }
}

/// What each enabled store of an app is set up for, for `tollgate check`.
pub fn describe_stores(app: &super::AppConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &app.stripe {
        let api = if s.secret_key.is_some() {
            "checkout and portal"
        } else {
            "no secret_key: no checkout"
        };
        out.push(format!(
            "stripe ({} webhook secret(s); {api})",
            s.webhook_secrets.len()
        ));
    }
    if let Some(r) = &app.revenuecat {
        let api = if r.api_key.is_some() {
            "sync"
        } else {
            "no api_key: no sync"
        };
        out.push(format!("revenuecat (webhooks; {api})"));
    }
    for (name, s) in [("paddle", &app.paddle), ("whop", &app.whop)] {
        if let Some(s) = s {
            let api = if s.api_key.is_some() { "; api_key" } else { "" };
            out.push(format!(
                "{name} ({} webhook secret(s){api})",
                s.webhook_secrets.len()
            ));
        }
    }
    let products = app.products.len();
    if products > 0 {
        out.push(format!("{products} product(s) mapped"));
    }
    out
}

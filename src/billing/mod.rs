//! Billing-store adapters, one file per provider (Stripe, RevenueCat, Paddle, Whop): each checks
//! a delivery's signature exactly as its provider documents, reads the envelope (event id, type,
//! time) and normalises the event into tollgate's vocabulary ([`Normalized`]). No I/O here; the
//! `billing.process_webhook` job applies the effects through [`apply`], the one module here
//! that writes.

pub mod apply;
pub mod deliveries;
pub mod paddle;
pub mod paddle_api;
pub mod revenuecat;
pub mod revenuecat_api;
pub mod signing;
pub mod store_http;
pub mod stripe;
pub mod stripe_api;
pub mod whop;
pub mod whop_api;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;
use crate::domain::plans::Period;
use crate::domain::subscriptions::Status;

/// A billing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Stripe,
    #[serde(rename = "revenuecat")]
    RevenueCat,
    Paddle,
    Whop,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Stripe,
        Provider::RevenueCat,
        Provider::Paddle,
        Provider::Whop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::RevenueCat => "revenuecat",
            Provider::Paddle => "paddle",
            Provider::Whop => "whop",
        }
    }

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Why a delivery was refused before it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    #[error("the signature timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("no signature matches a configured secret")]
    BadSignature,
    #[error("the body is not an event of this provider: {0}")]
    BadBody(String),
}

impl Rejection {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::MalformedHeader(_) => "malformed_header",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::BadSignature => "bad_signature",
            Rejection::BadBody(_) => "bad_body",
        }
    }
}

/// What every stored event has: the provider's id for it, its type and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub kind: String,
    /// The provider's event time (ms since the epoch), kept apart from the received time.
    pub time_ms: i64,
}

/// Checks the delivery's signature against the app's secrets, then reads its envelope.
pub fn verify(
    provider: Provider,
    app: &AppConfig,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<Envelope, Rejection> {
    match provider {
        Provider::Stripe => {
            let c = app.stripe.as_ref().ok_or(Rejection::BadSignature)?;
            stripe::verify(
                &c.webhook_secrets,
                c.tolerance_secs,
                headers,
                body,
                now_secs,
            )?;
            stripe::envelope(body)
        }
        Provider::RevenueCat => {
            let c = app.revenuecat.as_ref().ok_or(Rejection::BadSignature)?;
            revenuecat::verify(&c.webhook_authorization, headers)?;
            revenuecat::envelope(body)
        }
        Provider::Paddle => {
            let c = app.paddle.as_ref().ok_or(Rejection::BadSignature)?;
            paddle::verify(
                &c.webhook_secrets,
                c.tolerance_secs,
                headers,
                body,
                now_secs,
            )?;
            paddle::envelope(body)
        }
        Provider::Whop => {
            let c = app.whop.as_ref().ok_or(Rejection::BadSignature)?;
            let id = whop::verify(
                &c.webhook_secrets,
                c.tolerance_secs,
                headers,
                body,
                now_secs,
            )?;
            whop::envelope(&id, body)
        }
    }
}

/// Reads a stored event in tollgate's vocabulary. `Ok(None)`: a type tollgate does not act on.
pub fn normalize(provider: Provider, body: &[u8]) -> Result<Option<Normalized>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match provider {
        Provider::Stripe => stripe::normalize(&value),
        Provider::RevenueCat => revenuecat::normalize(&value),
        Provider::Paddle => paddle::normalize(&value),
        Provider::Whop => whop::normalize(&value),
    }
}

/// What happened, in one vocabulary for every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    SubscriptionStarted,
    SubscriptionRenewed,
    PlanChanged,
    /// Canceled; at the period's end when the subscription says so, else now.
    SubscriptionCanceled,
    /// A scheduled cancellation withdrawn.
    SubscriptionUncanceled,
    /// Other changes to a subscription's state (status, period).
    SubscriptionUpdated,
    SubscriptionExpired,
    PaymentFailed,
    PaymentSucceeded,
    Refunded,
    /// A one-time purchase: a top-up pack.
    OneTimePurchase,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::SubscriptionStarted => "subscription_started",
            Change::SubscriptionRenewed => "subscription_renewed",
            Change::PlanChanged => "plan_changed",
            Change::SubscriptionCanceled => "subscription_canceled",
            Change::SubscriptionUncanceled => "subscription_uncanceled",
            Change::SubscriptionUpdated => "subscription_updated",
            Change::SubscriptionExpired => "subscription_expired",
            Change::PaymentFailed => "payment_failed",
            Change::PaymentSucceeded => "payment_succeeded",
            Change::Refunded => "refunded",
            Change::OneTimePurchase => "one_time_purchase",
        }
    }
}

/// A subscription as the event describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFacts {
    /// The store's id for the subscription.
    pub id: String,
    pub status: Status,
    /// The product (price, store product, plan id) it is for.
    pub product: Option<String>,
    pub period: Option<Period>,
    pub cancel_at_period_end: bool,
}

/// One event, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    pub change: Option<Change>,
    /// The app's own id for the user, when the event carries it (metadata, app_user_id).
    pub user: Option<String>,
    /// The store's customer id, remembered so later events naming only it find the user.
    pub customer: Option<String>,
    pub subscription: Option<SubscriptionFacts>,
    /// The subscription a payment is for, when the event names it without describing it.
    pub subscription_id: Option<String>,
    /// The product of a one-time purchase or payment.
    pub product: Option<String>,
    /// The purchase, invoice or transaction: keys a top-up's credits, finds what a refund undoes.
    pub reference: Option<String>,
    /// Other ids of the same purchase a refund may name (payment intent, invoice).
    pub also_known_as: Vec<String>,
    /// The period a payment paid for.
    pub paid_period: Option<Period>,
    /// A partial refund: (refunded, total) in the payment's minor units; `None`: all of it.
    pub refunded_part: Option<(i64, i64)>,
    /// Minor units and ISO currency of a payment or refund, for the recovery feature.
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// `production` or `sandbox`.
    pub environment: Option<String>,
    /// The storefront (RevenueCat: APP_STORE, PLAY_STORE, STRIPE, …).
    pub store: Option<String>,
    /// A Stripe Checkout Session whose product must be read from its line items (a Payment
    /// Link, or a session the app created without `tollgate_product` metadata).
    pub unresolved_checkout: Option<String>,
}

/// A header's value as text, if present.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::MissingHeader(name))?
        .to_str()
        .map_err(|_| Rejection::MalformedHeader(name))
}

/// A JSON body's object, or why not.
pub(crate) fn json_object(body: &[u8]) -> Result<serde_json::Value, Rejection> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(Rejection::BadBody("expected a JSON object".into())),
        Err(e) => Err(Rejection::BadBody(format!("not JSON: {e}"))),
    }
}

/// A string field at a JSON pointer.
pub(crate) fn text(v: &serde_json::Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// An integer field at a JSON pointer.
pub(crate) fn int(v: &serde_json::Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(|x| x.as_i64())
}

/// An RFC 3339 time as ms since the epoch.
pub(crate) fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests;

//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`, each `h1` an HMAC-SHA256
//! of `{ts}:{raw body}` with the notification destination's secret key. Events:
//! `{event_id, event_type, occurred_at, data}`.

use axum::http::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;

use super::signing::TimestampedHex;
use super::{
    Change, Envelope, Normalized, Rejection, SubscriptionFacts, json_object, rfc3339_ms, text,
};
use crate::domain::plans::Period;
use crate::domain::subscriptions::Status;

pub const SIGNATURE: &str = "paddle-signature";

/// The scheme: `ts=<unix>` and `h1=<hex>` items.
pub const SCHEME: TimestampedHex = TimestampedHex {
    header: SIGNATURE,
    separator: ';',
    ts_key: "ts",
    sig_key: "h1",
    joiner: b":",
};

/// The signature header for `body` signed at `ts` with `secret`, as the store sends it.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    SCHEME.sign(secret, ts, body)
}

pub fn verify(
    secrets: &[SecretString],
    tolerance_secs: u64,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), Rejection> {
    SCHEME.verify(secrets, tolerance_secs, headers, body, now_secs)
}

pub fn envelope(body: &[u8]) -> Result<Envelope, Rejection> {
    let v = json_object(body)?;
    let time = text(&v, "/occurred_at").and_then(|t| rfc3339_ms(&t));
    match (text(&v, "/event_id"), text(&v, "/event_type"), time) {
        (Some(id), Some(kind), Some(time_ms)) => Ok(Envelope { id, kind, time_ms }),
        _ => Err(Rejection::BadBody(
            "expected event_id, event_type and occurred_at".into(),
        )),
    }
}

fn period(v: &Value, pointer: &str) -> Option<Period> {
    let p = v.pointer(pointer)?;
    let at = |k: &str| p.get(k)?.as_str().and_then(rfc3339_ms);
    Period::between(at("starts_at"), at("ends_at"))
}

fn status(s: &str) -> Status {
    match s {
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" => Status::PastDue,
        "canceled" => Status::Canceled,
        _ => Status::Expired, // paused
    }
}

pub fn normalize(v: &Value) -> Result<Option<Normalized>, String> {
    let kind = text(v, "/event_type").ok_or("no event_type")?;
    let d = v.get("data").ok_or("no data")?;
    let mut n = Normalized {
        user: text(d, "/custom_data/tollgate_user"),
        customer: text(d, "/customer_id"),
        product: text(d, "/items/0/price/id"),
        store: Some("PADDLE".into()),
        ..Normalized::default()
    };
    match kind.as_str() {
        "subscription.created"
        | "subscription.activated"
        | "subscription.trialing"
        | "subscription.updated"
        | "subscription.past_due"
        | "subscription.paused"
        | "subscription.resumed"
        | "subscription.canceled" => {
            let facts = SubscriptionFacts {
                id: text(d, "/id").ok_or("a subscription without an id")?,
                status: status(&text(d, "/status").unwrap_or_default()),
                product: n.product.clone(),
                period: period(d, "/current_billing_period"),
                cancel_at_period_end: text(d, "/scheduled_change/action").as_deref()
                    == Some("cancel"),
            };
            n.change = Some(match kind.as_str() {
                "subscription.created" | "subscription.activated" => Change::SubscriptionStarted,
                "subscription.canceled" => Change::SubscriptionExpired,
                _ if facts.cancel_at_period_end => Change::SubscriptionCanceled,
                _ => Change::SubscriptionUpdated,
            });
            n.subscription = Some(facts);
        }
        "transaction.completed" | "transaction.payment_failed" => {
            n.reference = text(d, "/id");
            n.subscription_id = text(d, "/subscription_id");
            n.currency = text(d, "/currency_code");
            n.amount_minor = text(d, "/details/totals/grand_total").and_then(|t| t.parse().ok());
            n.change = Some(match (kind.as_str(), &n.subscription_id) {
                ("transaction.payment_failed", _) => Change::PaymentFailed,
                (_, Some(_)) => {
                    n.paid_period = period(d, "/billing_period");
                    if text(d, "/origin").as_deref() == Some("subscription_recurring") {
                        Change::SubscriptionRenewed
                    } else {
                        Change::PaymentSucceeded
                    }
                }
                (_, None) => Change::OneTimePurchase,
            });
        }
        "adjustment.created" | "adjustment.updated" => {
            let action = text(d, "/action").unwrap_or_default();
            if text(d, "/status").as_deref() != Some("approved")
                || !matches!(action.as_str(), "refund" | "chargeback")
            {
                return Ok(None);
            }
            n.change = Some(Change::Refunded);
            n.reference = text(d, "/transaction_id");
            n.currency = text(d, "/currency_code");
            n.amount_minor = text(d, "/totals/total").and_then(|t| t.parse().ok());
        }
        _ => return Ok(None),
    }
    Ok(Some(n))
}

//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, each `v1` an HMAC-SHA256 of
//! `{t}.{raw body}` with an endpoint secret (`whsec_…`, used as text); several `v1` during a
//! secret rotation. Events: `{id, type, created, data.object}`.

use axum::http::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;

use super::signing::TimestampedHex;
use super::{Change, Envelope, Normalized, Rejection, SubscriptionFacts, int, json_object, text};
use crate::domain::plans::Period;
use crate::domain::subscriptions::Status;

pub const SIGNATURE: &str = "stripe-signature";

/// The scheme: `t=<unix>` and `v1=<hex>` items.
pub const SCHEME: TimestampedHex = TimestampedHex {
    header: SIGNATURE,
    separator: ',',
    ts_key: "t",
    sig_key: "v1",
    joiner: b".",
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
    match (text(&v, "/id"), text(&v, "/type"), int(&v, "/created")) {
        (Some(id), Some(kind), Some(created)) => Ok(Envelope {
            id,
            kind,
            time_ms: created * 1000,
        }),
        _ => Err(Rejection::BadBody("expected id, type and created".into())),
    }
}

fn status(s: &str) -> Status {
    match s {
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" | "unpaid" => Status::PastDue,
        "canceled" => Status::Canceled,
        "incomplete" => Status::Incomplete,
        // incomplete_expired, paused: no access.
        _ => Status::Expired,
    }
}

/// A period from Stripe's unix seconds.
fn period(start: Option<i64>, end: Option<i64>) -> Option<Period> {
    Period::between(start.map(|s| s * 1000), end.map(|e| e * 1000))
}

/// A subscription object (`customer.subscription.*`). The period sits on the object in older
/// API versions and on its items since 2025-03-31.
fn subscription(o: &Value) -> Option<SubscriptionFacts> {
    let item = o.pointer("/items/data/0").unwrap_or(&Value::Null);
    Some(SubscriptionFacts {
        id: text(o, "/id")?,
        status: status(&text(o, "/status").unwrap_or_default()),
        product: text(item, "/price/id"),
        period: period(
            int(o, "/current_period_start"),
            int(o, "/current_period_end"),
        )
        .or_else(|| {
            period(
                int(item, "/current_period_start"),
                int(item, "/current_period_end"),
            )
        }),
        cancel_at_period_end: o
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

pub fn normalize(v: &Value) -> Result<Option<Normalized>, String> {
    let kind = text(v, "/type").ok_or("no type")?;
    let o = v.pointer("/data/object").ok_or("no data.object")?;
    let mut n = Normalized {
        customer: text(o, "/customer"),
        user: text(o, "/metadata/tollgate_user"),
        environment: Some(
            if v.get("livemode").and_then(Value::as_bool) == Some(true) {
                "production"
            } else {
                "sandbox"
            }
            .into(),
        ),
        store: Some("STRIPE".into()),
        ..Normalized::default()
    };
    match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            n.user = text(o, "/client_reference_id").or(n.user);
            if text(o, "/mode").as_deref() == Some("payment") {
                if text(o, "/payment_status").as_deref() != Some("paid") {
                    return Ok(None); // an async payment: its own event follows
                }
                n.change = Some(Change::OneTimePurchase);
                n.product = text(o, "/metadata/tollgate_product");
                if n.product.is_none() {
                    n.unresolved_checkout = text(o, "/id");
                }
                n.reference = text(o, "/payment_intent").or_else(|| text(o, "/id"));
                n.also_known_as = text(o, "/id").into_iter().collect();
                n.amount_minor = int(o, "/amount_total");
                n.currency = text(o, "/currency");
            } else {
                // Links the user to the customer; the subscription's own events carry its state.
                n.change = Some(Change::SubscriptionStarted);
            }
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.resumed"
        | "customer.subscription.paused" => {
            let facts = subscription(o).ok_or("a subscription without an id")?;
            n.change = Some(match kind.as_str() {
                "customer.subscription.created" => Change::SubscriptionStarted,
                "customer.subscription.deleted" => Change::SubscriptionExpired,
                _ if facts.cancel_at_period_end => Change::SubscriptionCanceled,
                _ => Change::SubscriptionUpdated,
            });
            n.subscription = Some(facts);
        }
        "invoice.paid" | "invoice.payment_failed" => {
            let sub = text(o, "/subscription")
                .or_else(|| text(o, "/parent/subscription_details/subscription"));
            let line = o.pointer("/lines/data/0").unwrap_or(&Value::Null);
            n.user = n
                .user
                .or_else(|| text(o, "/subscription_details/metadata/tollgate_user"))
                .or_else(|| text(o, "/parent/subscription_details/metadata/tollgate_user"));
            n.product =
                text(line, "/price/id").or_else(|| text(line, "/pricing/price_details/price"));
            n.paid_period = period(int(line, "/period/start"), int(line, "/period/end"));
            n.reference = text(o, "/id");
            n.also_known_as = ["/payment_intent", "/charge"]
                .iter()
                .filter_map(|p| text(o, p))
                .collect();
            n.currency = text(o, "/currency");
            if kind == "invoice.paid" {
                n.amount_minor = int(o, "/amount_paid");
                n.change = Some(
                    if text(o, "/billing_reason").as_deref() == Some("subscription_cycle") {
                        Change::SubscriptionRenewed
                    } else {
                        Change::PaymentSucceeded
                    },
                );
            } else {
                n.amount_minor = int(o, "/amount_due");
                n.change = Some(Change::PaymentFailed);
            }
            n.subscription_id = sub;
        }
        "charge.refunded" | "charge.dispute.created" => {
            n.change = Some(Change::Refunded);
            n.reference = text(o, "/payment_intent");
            n.also_known_as = ["/id", "/invoice", "/charge"]
                .iter()
                .filter_map(|p| text(o, p))
                .collect();
            n.amount_minor = int(o, "/amount_refunded").or_else(|| int(o, "/amount"));
            // Stripe's amount_refunded is cumulative over the charge's refunds.
            if kind == "charge.refunded"
                && let (Some(refunded), Some(total)) =
                    (int(o, "/amount_refunded"), int(o, "/amount"))
                && refunded < total
            {
                n.refunded_part = Some((refunded, total));
            }
            n.currency = text(o, "/currency");
        }
        _ => return Ok(None),
    }
    Ok(Some(n))
}

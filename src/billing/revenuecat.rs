//! RevenueCat: the webhook carries the `Authorization` header value set in the dashboard (no
//! body signature). Body: `{api_version, event: {id, type, app_user_id, product_id,
//! event_timestamp_ms, purchased_at_ms, expiration_at_ms, environment, store, …}}`.

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    Change, Envelope, Normalized, Rejection, SubscriptionFacts, header, int, json_object, text,
};
use crate::domain::plans::Period;
use crate::domain::subscriptions::Status;

pub const AUTHORIZATION: &str = "authorization";

/// The header must equal one of the configured values (several during a rotation); each is
/// compared in constant time.
pub fn verify(expected: &[SecretString], headers: &HeaderMap) -> Result<(), Rejection> {
    let given = header(headers, AUTHORIZATION)?;
    let mut found = false;
    for e in expected {
        found |= crate::crypto::constant_time_eq(given.as_bytes(), e.expose_secret().as_bytes());
    }
    if found {
        Ok(())
    } else {
        Err(Rejection::BadSignature)
    }
}

pub fn envelope(body: &[u8]) -> Result<Envelope, Rejection> {
    let v = json_object(body)?;
    match (
        text(&v, "/event/id"),
        text(&v, "/event/type"),
        int(&v, "/event/event_timestamp_ms"),
    ) {
        (Some(id), Some(kind), Some(time_ms)) => Ok(Envelope { id, kind, time_ms }),
        _ => Err(Rejection::BadBody(
            "expected event.id, event.type and event.event_timestamp_ms".into(),
        )),
    }
}

pub fn normalize(v: &Value) -> Result<Option<Normalized>, String> {
    let e = v.get("event").ok_or("no event")?;
    let kind = text(e, "/type").ok_or("no event.type")?;
    let period = Period::between(int(e, "/purchased_at_ms"), int(e, "/expiration_at_ms"));
    let mut n = Normalized {
        user: text(e, "/app_user_id").or_else(|| text(e, "/original_app_user_id")),
        product: text(e, "/product_id"),
        reference: text(e, "/transaction_id"),
        environment: text(e, "/environment").map(|s| s.to_ascii_lowercase()),
        store: text(e, "/store"),
        currency: text(e, "/currency"),
        ..Normalized::default()
    };
    // A subscription is its original transaction: the id every renewal shares.
    let facts = |status: Status, cancel: bool, product: Option<String>| {
        text(e, "/original_transaction_id").map(|id| SubscriptionFacts {
            id,
            status,
            product,
            period,
            cancel_at_period_end: cancel,
        })
    };
    let trial = text(e, "/period_type").as_deref() == Some("TRIAL");
    let live = if trial {
        Status::Trialing
    } else {
        Status::Active
    };
    let product = n.product.clone();
    let (change, sub) = match kind.as_str() {
        "INITIAL_PURCHASE" => (Change::SubscriptionStarted, facts(live, false, product)),
        "RENEWAL" => (Change::SubscriptionRenewed, facts(live, false, product)),
        "UNCANCELLATION" => (Change::SubscriptionUncanceled, facts(live, false, product)),
        "SUBSCRIPTION_EXTENDED" => (Change::SubscriptionUpdated, facts(live, false, product)),
        // The new product takes over at the next renewal on the stores; the facts say which.
        "PRODUCT_CHANGE" => {
            let new = text(e, "/new_product_id").or(product);
            (Change::PlanChanged, facts(live, false, new))
        }
        // Auto-renew off: access until expiration_at_ms. A refund through support comes as a
        // cancellation with reason CUSTOMER_SUPPORT.
        "CANCELLATION" => {
            let refund = text(e, "/cancel_reason").as_deref() == Some("CUSTOMER_SUPPORT");
            let change = if refund {
                Change::Refunded
            } else {
                Change::SubscriptionCanceled
            };
            (change, facts(live, true, product))
        }
        "BILLING_ISSUE" => (
            Change::PaymentFailed,
            facts(Status::PastDue, false, product),
        ),
        "EXPIRATION" => (
            Change::SubscriptionExpired,
            facts(Status::Expired, false, product),
        ),
        "NON_RENEWING_PURCHASE" => (Change::OneTimePurchase, None),
        _ => return Ok(None),
    };
    n.change = Some(change);
    if matches!(
        change,
        Change::SubscriptionStarted | Change::SubscriptionRenewed
    ) {
        n.paid_period = period;
    }
    n.subscription = sub;
    Ok(Some(n))
}

//! Whop: Standard Webhooks. Headers `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,<base64> [v1,<base64>…]`, each an HMAC-SHA256 of
//! `{id}.{timestamp}.{raw body}`. A `whsec_…` secret is base64 after its prefix; any other is
//! used as its bytes. Events: `{id, type, timestamp, data}`.

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::signing::{any_matches, base64_decode, fresh, mac};
use super::{
    Change, Envelope, Normalized, Rejection, SubscriptionFacts, header, json_object, rfc3339_ms,
    text,
};
use crate::domain::plans::Period;
use crate::domain::subscriptions::Status;

pub use crate::events::signing::{ID, SIGNATURE, TIMESTAMP, key_of, sign};

/// Returns the delivery's `webhook-id`.
pub fn verify(
    secrets: &[SecretString],
    tolerance_secs: u64,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<String, Rejection> {
    let id = header(headers, ID)?;
    let ts: i64 = header(headers, TIMESTAMP)?
        .parse()
        .map_err(|_| Rejection::MalformedHeader(TIMESTAMP))?;
    let sigs: Vec<&str> = header(headers, SIGNATURE)?
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .collect();
    if sigs.is_empty() || id.is_empty() {
        return Err(Rejection::MalformedHeader(SIGNATURE));
    }
    let signed = ts.to_string();
    let ok = secrets.iter().any(|s| {
        key_of(s.expose_secret()).is_some_and(|key| {
            let expected = mac(&key, &[id.as_bytes(), b".", signed.as_bytes(), b".", body]);
            any_matches(&expected, &sigs, base64_decode)
        })
    });
    if !ok {
        return Err(Rejection::BadSignature);
    }
    fresh(ts, now_secs, tolerance_secs)?;
    Ok(id.to_string())
}

pub fn envelope(id: &str, body: &[u8]) -> Result<Envelope, Rejection> {
    let v = json_object(body)?;
    let time = text(&v, "/timestamp").and_then(|t| rfc3339_ms(&t));
    match (text(&v, "/type"), time) {
        (Some(kind), Some(time_ms)) => Ok(Envelope {
            id: text(&v, "/id").unwrap_or_else(|| id.to_string()),
            kind,
            time_ms,
        }),
        _ => Err(Rejection::BadBody("expected type and timestamp".into())),
    }
}

/// A time Whop writes either as RFC 3339 text or as unix seconds.
fn time_ms(v: &Value, pointer: &str) -> Option<i64> {
    match v.pointer(pointer)? {
        Value::String(s) => rfc3339_ms(s),
        Value::Number(n) => n.as_i64().map(|s| s * 1000),
        _ => None,
    }
}

/// Whop's membership statuses: trialing, active, canceling (active until the period's end),
/// past_due, completed, canceled, expired, unresolved, drafted.
fn membership_status(s: &str) -> Status {
    match s {
        "trialing" => Status::Trialing,
        "active" | "canceling" => Status::Active,
        "past_due" => Status::PastDue,
        "canceled" => Status::Canceled,
        "drafted" => Status::Incomplete,
        _ => Status::Expired,
    }
}

fn first_text(v: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| text(v, p))
}

pub fn normalize(v: &Value) -> Result<Option<Normalized>, String> {
    let kind = text(v, "/type").ok_or("no type")?;
    let d = v.get("data").ok_or("no data")?;
    let mut n = Normalized {
        user: text(d, "/metadata/tollgate_user"),
        customer: first_text(d, &["/user/id", "/user_id"]),
        product: first_text(d, &["/plan/id", "/plan_id"]),
        store: Some("WHOP".into()),
        ..Normalized::default()
    };
    match kind.as_str() {
        "membership.activated"
        | "membership.went_valid"
        | "membership.deactivated"
        | "membership.went_invalid"
        | "membership.updated"
        | "membership.cancel_at_period_end_changed" => {
            let stated = membership_status(text(d, "/status").as_deref().unwrap_or(""));
            // The event's own verdict wins over the status it carries: an activation gives
            // access, a deactivation removes it.
            let status = match kind.as_str() {
                "membership.activated" | "membership.went_valid" if !stated.gives_access() => {
                    Status::Active
                }
                "membership.deactivated" | "membership.went_invalid" if stated.gives_access() => {
                    Status::Expired
                }
                _ => stated,
            };
            let period = Period::between(
                time_ms(d, "/renewal_period_start"),
                time_ms(d, "/renewal_period_end"),
            );
            let cancel = d.get("cancel_at_period_end").and_then(Value::as_bool) == Some(true)
                || text(d, "/status").as_deref() == Some("canceling");
            n.subscription = Some(SubscriptionFacts {
                id: text(d, "/id").ok_or("a membership without an id")?,
                status,
                product: n.product.clone(),
                period,
                cancel_at_period_end: cancel,
            });
            n.change = Some(match kind.as_str() {
                _ if !status.gives_access() => Change::SubscriptionExpired,
                "membership.activated" | "membership.went_valid" => Change::SubscriptionStarted,
                _ if cancel => Change::SubscriptionCanceled,
                "membership.cancel_at_period_end_changed" => Change::SubscriptionUncanceled,
                _ => Change::SubscriptionUpdated,
            });
        }
        "payment.succeeded" | "payment.failed" => {
            n.reference = text(d, "/id");
            n.subscription_id = first_text(d, &["/membership/id", "/membership_id"]);
            n.currency = text(d, "/currency");
            // Whop's `total` is in major units (a JSON number, `19.99`): read as its decimal
            // text, exactly, into the currency's minor units.
            n.amount_minor = match (d.get("total"), &n.currency) {
                (Some(serde_json::Value::Number(t)), Some(c)) => {
                    crate::domain::money::to_minor_units(&t.to_string(), c)
                }
                (Some(serde_json::Value::String(t)), Some(c)) => {
                    crate::domain::money::to_minor_units(t, c)
                }
                _ => None,
            };
            n.change = Some(match (kind.as_str(), &n.subscription_id) {
                ("payment.failed", _) => Change::PaymentFailed,
                (_, Some(_)) => Change::PaymentSucceeded,
                (_, None) => Change::OneTimePurchase,
            });
        }
        "refund.created" | "dispute.created" => {
            n.change = Some(Change::Refunded);
            n.reference = first_text(d, &["/payment/id", "/payment_id"]);
            n.currency = text(d, "/currency");
        }
        _ => return Ok(None),
    }
    Ok(Some(n))
}

//! RevenueCat's REST API (v1): `GET /v1/subscribers/{app_user_id}` with a secret API key, read
//! into the same normalised events as the webhooks — the "sync now" after a purchase, which
//! does not wait for the webhook.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::store_http::{StoreError, read_json};
use super::{Change, Normalized, SubscriptionFacts, rfc3339_ms, text};
use crate::domain::plans::Period;
use crate::domain::subscriptions::Status;

/// The subscriber as RevenueCat knows it now.
pub async fn subscriber(
    http: &reqwest::Client,
    base: &str,
    key: &SecretString,
    app_user_id: &str,
) -> Result<Value, StoreError> {
    let id: String = url::form_urlencoded::byte_serialize(app_user_id.as_bytes()).collect();
    let url = format!("{}/v1/subscribers/{id}", base.trim_end_matches('/'));
    let sent = http.get(url).bearer_auth(key.expose_secret()).send().await;
    let (status, body) = read_json("RevenueCat", sent).await?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    // RevenueCat's error body: {"code": 7225, "message": "…"}.
    Err(StoreError::Refused {
        store: "RevenueCat",
        status,
        kind: body["code"].to_string(),
        message: body["message"].as_str().unwrap_or("no message").to_string(),
    })
}

/// The subscriber's subscriptions (as state) and one-time purchases, at `now`.
pub fn normalize(v: &Value, app_user_id: &str, now: i64) -> Vec<Normalized> {
    let mut out = Vec::new();
    let s = &v["subscriber"];
    let time = |o: &Value, k: &str| text(o, &format!("/{k}")).and_then(|t| rfc3339_ms(&t));
    let base = |o: &Value| Normalized {
        user: Some(app_user_id.to_string()),
        environment: Some(
            if o["is_sandbox"].as_bool() == Some(true) {
                "sandbox"
            } else {
                "production"
            }
            .into(),
        ),
        store: text(o, "/store").map(|st| st.to_ascii_uppercase()),
        ..Normalized::default()
    };
    if let Some(subs) = s["subscriptions"].as_object() {
        for (product, o) in subs {
            let expires = time(o, "expires_date");
            let live = expires.is_none_or(|e| e > now) && o["refunded_at"].is_null();
            let status = match (live, text(o, "/period_type").as_deref()) {
                (false, _) => Status::Expired,
                _ if !o["billing_issues_detected_at"].is_null() => Status::PastDue,
                (true, Some("trial")) => Status::Trialing,
                (true, _) => Status::Active,
            };
            let period = Period::between(time(o, "purchase_date"), expires);
            let mut n = base(o);
            n.change = Some(Change::SubscriptionUpdated);
            n.product = Some(product.clone());
            n.subscription = Some(SubscriptionFacts {
                // Matched to a subscription the webhooks stored, by product, before writing.
                id: text(o, "/original_transaction_id")
                    .unwrap_or_else(|| format!("product:{product}")),
                status,
                product: Some(product.clone()),
                period,
                cancel_at_period_end: !o["unsubscribe_detected_at"].is_null(),
            });
            out.push(n);
        }
    }
    if let Some(purchases) = s["non_subscriptions"].as_object() {
        for (product, list) in purchases {
            for o in list.as_array().into_iter().flatten() {
                let mut n = base(o);
                n.change = Some(Change::OneTimePurchase);
                n.product = Some(product.clone());
                // The store's transaction id: the webhook's transaction_id, so one grant.
                n.reference = text(o, "/store_transaction_id").or_else(|| text(o, "/id"));
                out.push(n);
            }
        }
    }
    out
}

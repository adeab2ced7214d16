//! Outbound calls to Stripe's API (form-encoded, `Authorization: Bearer sk_…`): customers,
//! Checkout Sessions, Customer Portal sessions, subscription cancellation. Every write carries
//! an `Idempotency-Key`, and a call that fails in transit or with a 5xx is retried once with
//! the same key, so a retry never creates a second object.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::store_http::{StoreError, answer, retried_once};

const STORE: &str = "Stripe";

/// A Stripe account's API, as one app's config names it.
pub struct StripeApi<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub key: &'a SecretString,
}

impl StripeApi<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// `POST path` with a form body; `key` makes the call idempotent at Stripe.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        key: &str,
    ) -> Result<Value, StoreError> {
        self.write(reqwest::Method::POST, path, form, key).await
    }

    /// A write (`POST`, `DELETE`) with a form body, retried once in transit or on a 5xx with
    /// the same `Idempotency-Key`.
    async fn write(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
        key: &str,
    ) -> Result<Value, StoreError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        retried_once(STORE, || async {
            let sent = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(self.key.expose_secret())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("idempotency-key", key)
                .body(body.clone())
                .send()
                .await;
            answer(STORE, sent).await
        })
        .await
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, StoreError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let sent = self
            .http
            .get(format!("{}?{query}", self.url(path)))
            .bearer_auth(self.key.expose_secret())
            .send()
            .await;
        answer(STORE, sent).await
    }
}

impl StripeApi<'_> {
    /// The price of a Checkout Session's first line item
    /// (`GET /v1/checkout/sessions/{id}/line_items`): what a Payment Link or a session the app
    /// created itself sold, when it carries no `tollgate_product` metadata.
    pub async fn session_price(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        let id: String = url::form_urlencoded::byte_serialize(session_id.as_bytes()).collect();
        let items = self
            .get(
                &format!("/v1/checkout/sessions/{id}/line_items"),
                &[("limit", "1")],
            )
            .await?;
        Ok(items
            .pointer("/data/0/price/id")
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

impl StripeApi<'_> {
    /// Ends a subscription at the end of its paid period (`POST /v1/subscriptions/{id}` with
    /// `cancel_at_period_end=true`), or now (`DELETE /v1/subscriptions/{id}`). Stripe then sends
    /// the subscription's webhook, which is what changes the user's plan.
    pub async fn cancel_subscription(
        &self,
        id: &str,
        at_period_end: bool,
        key: &str,
    ) -> Result<Value, StoreError> {
        let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let path = format!("/v1/subscriptions/{id}");
        if at_period_end {
            self.post(&path, &[("cancel_at_period_end", "true")], key)
                .await
        } else {
            self.write(reqwest::Method::DELETE, &path, &[], key).await
        }
    }
}

//! Outbound calls to Paddle Billing's API (`https://api.paddle.com`, JSON, `Authorization:
//! Bearer` with an API key): the checkout where a subscriber updates their payment method, and
//! a subscription's cancellation. Paddle documents no idempotency keys; both calls are safe to
//! repeat (the same transaction is returned while the subscription is past due; a cancellation
//! already scheduled stays scheduled), so a failure in transit or a 5xx is retried once.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::store_http::{StoreError, answer, retried_once};

const STORE: &str = "Paddle";
/// Paddle's API root when `[apps.paddle] api_base` is not set (sandbox:
/// `https://sandbox-api.paddle.com`).
pub const DEFAULT_BASE: &str = "https://api.paddle.com";

pub struct PaddleApi<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub key: &'a SecretString,
}

impl<'a> PaddleApi<'a> {
    /// The app's Paddle API, when `[apps.paddle] api_key` is set.
    pub fn of_app(app: &'a crate::config::AppConfig, http: &'a reqwest::Client) -> Option<Self> {
        let paddle = app.paddle.as_ref()?;
        Some(PaddleApi {
            http,
            base: paddle.api_base.as_deref().unwrap_or(DEFAULT_BASE),
            key: paddle.api_key.as_ref()?,
        })
    }
}

impl PaddleApi<'_> {
    fn url(&self, subscription: &str, action: &str) -> String {
        let id: String = url::form_urlencoded::byte_serialize(subscription.as_bytes()).collect();
        format!(
            "{}/subscriptions/{id}/{action}",
            self.base.trim_end_matches('/')
        )
    }

    /// `GET /subscriptions/{id}/update-payment-method-transaction`: the checkout URL
    /// (`data.checkout.url`) where the subscriber updates their payment details.
    pub async fn update_payment_url(
        &self,
        subscription: &str,
    ) -> Result<Option<String>, StoreError> {
        let url = self.url(subscription, "update-payment-method-transaction");
        let answer = retried_once(STORE, || async {
            let sent = self
                .http
                .get(&url)
                .bearer_auth(self.key.expose_secret())
                .send()
                .await;
            answer(STORE, sent).await
        })
        .await?;
        Ok(answer
            .pointer("/data/checkout/url")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// `POST /subscriptions/{id}/cancel` with `{"effective_from": "next_billing_period"}` or
    /// `"immediately"`. Paddle then sends the subscription's webhook, which is what changes the
    /// user's plan.
    pub async fn cancel(
        &self,
        subscription: &str,
        at_period_end: bool,
    ) -> Result<Value, StoreError> {
        let url = self.url(subscription, "cancel");
        let when = if at_period_end {
            "next_billing_period"
        } else {
            "immediately"
        };
        let body = json!({ "effective_from": when });
        retried_once(STORE, || async {
            let sent = self
                .http
                .post(&url)
                .bearer_auth(self.key.expose_secret())
                .json(&body)
                .send()
                .await;
            answer(STORE, sent).await
        })
        .await
    }
}

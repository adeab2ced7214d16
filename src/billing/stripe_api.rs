//! Outbound calls to Stripe's API (form-encoded, `Authorization: Bearer sk_…`): customers,
//! Checkout Sessions and Customer Portal sessions. Every write carries an `Idempotency-Key`, and
//! a call that fails in transit or with a 5xx is retried once with the same key, so a retry
//! never creates a second object.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// A failed Stripe call: Stripe's own error (type and message), or no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Stripe refused the request ({status}, {kind}): {message}")]
    Refused {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("Stripe did not answer: {0}")]
    Unreachable(String),
}

/// A Stripe account's API, as one app's config names it.
pub struct StripeApi<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub key: &'a SecretString,
}

/// An HTTP client for store APIs: short timeouts, they answer fast or not at all.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("the HTTP client builds")
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
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut last = None;
        for _ in 0..2 {
            let sent = self
                .http
                .post(self.url(path))
                .bearer_auth(self.key.expose_secret())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("idempotency-key", key)
                .body(body.clone())
                .send()
                .await;
            match answer(sent).await {
                Err(e @ StoreError::Unreachable(_)) => last = Some(e),
                Err(StoreError::Refused { status, .. }) if status >= 500 => {
                    last = Some(StoreError::Unreachable(format!("status {status}")))
                }
                other => return other,
            }
        }
        Err(last.expect("at least one attempt"))
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
        answer(sent).await
    }
}

async fn answer(sent: reqwest::Result<reqwest::Response>) -> Result<Value, StoreError> {
    let (status, body) = read_json(sent).await?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    // Stripe's error body: {"error": {"type", "message", "code", "param"}}.
    let text = |k: &str| body.pointer(&format!("/error/{k}")).and_then(Value::as_str);
    Err(StoreError::Refused {
        status,
        kind: text("type").unwrap_or("api_error").to_string(),
        message: text("message").unwrap_or("no message").to_string(),
    })
}

/// A store API's answer: its status and JSON body (no answer, or not JSON: unreachable).
pub async fn read_json(
    sent: reqwest::Result<reqwest::Response>,
) -> Result<(u16, Value), StoreError> {
    let response = sent.map_err(|e| StoreError::Unreachable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| StoreError::Unreachable(e.without_url().to_string()))?;
    let body = serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::Unreachable(format!("an answer that is not JSON ({status}): {e}"))
    })?;
    Ok((status, body))
}

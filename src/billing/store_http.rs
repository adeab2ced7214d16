//! What every billing store's API client shares: the HTTP client (short timeouts), the error
//! of a failed call, and reading a JSON answer.

use std::time::Duration;

use serde_json::Value;

/// A failed call to a store's API: the store's own error (status, kind, message), or no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store} refused the request ({status}, {kind}): {message}")]
    Refused {
        store: &'static str,
        status: u16,
        kind: String,
        message: String,
    },
    #[error("{store} did not answer: {detail}")]
    Unreachable { store: &'static str, detail: String },
}

/// An HTTP client for store APIs: short timeouts, they answer fast or not at all.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("the HTTP client builds")
}

/// A store API's answer: its status and JSON body (no answer, or not JSON: unreachable).
pub async fn read_json(
    store: &'static str,
    sent: reqwest::Result<reqwest::Response>,
) -> Result<(u16, Value), StoreError> {
    let unreachable = |detail: String| StoreError::Unreachable { store, detail };
    let response = sent.map_err(|e| unreachable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| unreachable(e.without_url().to_string()))?;
    let body = serde_json::from_slice(&bytes)
        .map_err(|e| unreachable(format!("an answer that is not JSON ({status}): {e}")))?;
    Ok((status, body))
}

/// Runs a write and, when it fails in transit or with a 5xx, once more: the write carries an
/// `Idempotency-Key`, so the second attempt cannot make a second object.
pub async fn retried_once<F, Fut>(store: &'static str, mut call: F) -> Result<Value, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, StoreError>>,
{
    let mut last = None;
    for _ in 0..2 {
        match call().await {
            Err(e @ StoreError::Unreachable { .. }) => last = Some(e),
            Err(StoreError::Refused { status, .. }) if status >= 500 => {
                last = Some(StoreError::Unreachable {
                    store,
                    detail: format!("status {status}"),
                })
            }
            other => return other,
        }
    }
    Err(last.expect("at least one attempt"))
}

/// A store's JSON answer: the body on a 2xx, else the refusal with the store's
/// `{"error": {"type", "message"}}` (Stripe's and Whop's shape; Paddle's says `detail`).
pub async fn answer(
    store: &'static str,
    sent: reqwest::Result<reqwest::Response>,
) -> Result<Value, StoreError> {
    let (status, body) = read_json(store, sent).await?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let text = |k: &str| body.pointer(&format!("/error/{k}")).and_then(Value::as_str);
    Err(StoreError::Refused {
        store,
        status,
        kind: text("type").unwrap_or("api_error").to_string(),
        message: text("message")
            .or_else(|| text("detail"))
            .unwrap_or("no message")
            .to_string(),
    })
}

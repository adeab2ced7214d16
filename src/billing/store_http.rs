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

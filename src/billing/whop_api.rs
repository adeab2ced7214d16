//! Outbound calls to Whop's API (`https://api.whop.com/api/v1`, JSON, `Authorization: Bearer`
//! with an app or company API key): a membership's manage URL, free days added to it (a
//! recovery incentive), its cancellation.
//! Every write carries an `Idempotency-Key`, and a call that fails in transit or with a 5xx is
//! retried once with the same key.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::store_http::{StoreError, answer, retried_once};

const STORE: &str = "Whop";
/// Whop's API root when `[apps.whop] api_base` is not set.
pub const DEFAULT_BASE: &str = "https://api.whop.com/api/v1";

pub struct WhopApi<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub key: &'a SecretString,
}

impl<'a> WhopApi<'a> {
    /// The app's Whop API, when `[apps.whop] api_key` is set.
    pub fn of_app(app: &'a crate::config::AppConfig, http: &'a reqwest::Client) -> Option<Self> {
        let whop = app.whop.as_ref()?;
        Some(WhopApi {
            http,
            base: whop.api_base.as_deref().unwrap_or(DEFAULT_BASE),
            key: whop.api_key.as_ref()?,
        })
    }
}

impl WhopApi<'_> {
    /// `GET /memberships/{id}`: the membership, with the `manage_url` where its user updates
    /// their payment method.
    pub async fn membership(&self, membership: &str) -> Result<Value, StoreError> {
        let id: String = url::form_urlencoded::byte_serialize(membership.as_bytes()).collect();
        let url = format!("{}/memberships/{id}", self.base.trim_end_matches('/'));
        let sent = self
            .http
            .get(url)
            .bearer_auth(self.key.expose_secret())
            .send()
            .await;
        answer(STORE, sent).await
    }

    /// `POST /memberships/{id}/cancel` with `{"cancellation_mode": "at_period_end"}` or
    /// `"immediate"`; answers the membership. Whop then sends the membership's webhook, which is
    /// what changes the user's plan.
    pub async fn cancel(
        &self,
        membership: &str,
        at_period_end: bool,
        key: &str,
    ) -> Result<Value, StoreError> {
        let mode = if at_period_end {
            "at_period_end"
        } else {
            "immediate"
        };
        self.post(
            membership,
            "cancel",
            &json!({ "cancellation_mode": mode }),
            key,
        )
        .await
    }

    /// `POST /memberships/{id}/{action}` with a JSON body and an `Idempotency-Key`.
    async fn post(
        &self,
        membership: &str,
        action: &str,
        body: &Value,
        key: &str,
    ) -> Result<Value, StoreError> {
        let id: String = url::form_urlencoded::byte_serialize(membership.as_bytes()).collect();
        let url = format!(
            "{}/memberships/{id}/{action}",
            self.base.trim_end_matches('/')
        );
        retried_once(STORE, || async {
            let sent = self
                .http
                .post(&url)
                .bearer_auth(self.key.expose_secret())
                .header("idempotency-key", key)
                .json(body)
                .send()
                .await;
            answer(STORE, sent).await
        })
        .await
    }

    /// `POST /memberships/{id}/add_free_days` with `{"free_days": days}`: extends the
    /// membership's billing period, expiration or trial; answers the membership.
    pub async fn add_free_days(
        &self,
        membership: &str,
        days: u32,
        key: &str,
    ) -> Result<Value, StoreError> {
        self.post(
            membership,
            "add_free_days",
            &json!({ "free_days": days }),
            key,
        )
        .await
    }
}

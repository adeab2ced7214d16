//! `POST /webhooks/{app}/{provider}`: billing stores' deliveries (and `POST /webhooks/whop`, one
//! Whop endpoint for many sellers, routed by company). The raw body is verified as
//! the store specifies, stored with its processing job in one transaction, then answered 200;
//! a redelivery is answered 200 and not processed again. Refusals are counted by store and
//! reason and logged without the body.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::billing::{self, Provider, Rejection};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::jobs::kinds::billing::ProcessWebhook;
use crate::store::billing::{self as store, Ingested};
use crate::store::identity;

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivedOut {
    pub received: bool,
    /// The store's event id.
    pub event_id: String,
    /// True when this event was delivered before (it is not processed again).
    pub duplicate: bool,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive_webhook))
        .routes(routes!(receive_whop_webhook))
}

/// Receives a billing store's webhook for an app. Stripe: `Stripe-Signature`; RevenueCat: the
/// configured `Authorization` value; Paddle: `Paddle-Signature`; Whop: Standard Webhooks
/// headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
#[utoipa::path(post, path = "/webhooks/{app}/{provider}", tag = "billing",
    params(
        ("app" = String, Path, description = "The app's slug"),
        ("provider" = String, Path, description = "stripe, revenuecat, paddle or whop"),
    ),
    request_body(content = String, description = "The store's event, byte for byte as sent", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (or stored before); processed by a job", body = ReceivedOut),
        (status = 400, description = "Missing or malformed signature header, stale timestamp, or not an event", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No signature matches a configured secret", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such app, or the app does not enable this store", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive_webhook(
    State(state): State<AppState>,
    Path((slug, provider_name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReceivedOut>> {
    let not_found = || {
        Error::NotFound(format!(
            "no {provider_name} webhook endpoint for app {slug:?}"
        ))
    };
    let provider = Provider::parse(&provider_name).ok_or_else(not_found)?;
    let app_config = state
        .config
        .app(&slug)
        .filter(|a| a.store_enabled(provider))
        .ok_or_else(not_found)?;
    receive(&state, app_config, provider, &headers, &body).await
}

/// Receives a Whop delivery for whichever app is the company it names (`company_id`): one Whop
/// app installed by many sellers sends all their events to one URL. A company no app is
/// (`[apps.whop] company_id`) is refused and nothing is stored.
#[utoipa::path(post, path = "/webhooks/whop", tag = "billing",
    request_body(content = String, description = "Whop's event, byte for byte as sent", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored for the company's app (or stored before)", body = ReceivedOut),
        (status = 400, description = "Missing or malformed signature headers, stale timestamp, or not an event", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No signature matches the company's app's secrets", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No app is the company the event names", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive_whop_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReceivedOut>> {
    let provider = Provider::Whop;
    let company = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            ["/company_id", "/data/company_id", "/data/company/id"]
                .iter()
                .find_map(|p| v.pointer(p).and_then(|c| c.as_str()).map(str::to_string))
        })
        .ok_or_else(|| {
            refuse(
                provider,
                "(shared)",
                Rejection::BadBody("it names no company_id".into()),
            )
        })?;
    let Some(app_config) =
        state.config.apps.iter().find(|a| {
            a.whop.as_ref().and_then(|w| w.company_id.as_deref()) == Some(company.as_str())
        })
    else {
        metrics::counter!("tollgate_billing_webhooks_rejected_total",
            "provider" => provider.as_str(), "reason" => "unknown_company")
        .increment(1);
        tracing::warn!(provider = provider.as_str(), company = %company,
            "webhook refused: no app is this Whop company");
        return Err(Error::NotFound(format!(
            "no app serves Whop company {company:?} ([apps.whop] company_id)"
        )));
    };
    receive(&state, app_config, provider, &headers, &body).await
}

/// Verifies a delivery for `app_config`, stores it with its processing job, answers it.
async fn receive(
    state: &AppState,
    app_config: &crate::config::AppConfig,
    provider: Provider,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Json<ReceivedOut>> {
    let slug = app_config.slug.as_str();
    let now_secs = crate::store::now_ms() / 1000;
    let envelope = billing::verify(provider, app_config, headers, body, now_secs)
        .map_err(|r| refuse(provider, slug, r))?;
    let app = identity::app_by_slug(&state.db, slug)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no app {slug:?}")))?;
    let ingested = store::ingest(
        &state.db,
        &state.jobs,
        app.id,
        provider,
        &envelope,
        body,
        |id| ProcessWebhook { webhook: id },
    )
    .await?;
    let duplicate = matches!(ingested, Ingested::Duplicate(_));
    metrics::counter!("tollgate_billing_webhooks_received_total",
        "provider" => provider.as_str(), "outcome" => if duplicate { "duplicate" } else { "stored" })
    .increment(1);
    tracing::info!(provider = provider.as_str(), app = %slug, event_id = %envelope.id,
        event_type = %envelope.kind, duplicate, "webhook received");
    Ok(Json(ReceivedOut {
        received: true,
        event_id: envelope.id,
        duplicate,
    }))
}

/// Counts and logs a refusal (never the body), and answers it: 401 for a signature that does
/// not match, 400 for everything else.
fn refuse(provider: Provider, slug: &str, r: Rejection) -> Error {
    metrics::counter!("tollgate_billing_webhooks_rejected_total",
        "provider" => provider.as_str(), "reason" => r.reason())
    .increment(1);
    tracing::warn!(provider = provider.as_str(), app = %slug, reason = r.reason(),
        detail = %r, "webhook refused");
    match r {
        Rejection::BadSignature => {
            Error::Unauthorized(format!("{} webhook: {r}", provider.as_str()))
        }
        _ => Error::BadRequest(format!("{} webhook: {r}", provider.as_str())),
    }
}

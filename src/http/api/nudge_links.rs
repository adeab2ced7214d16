//! `GET /r/{token}`: a recovery nudge's link. Counts the click (for the app's CTR per variant),
//! then redirects to where the user fixes the payment: the store's own page ([`store_page`]:
//! Stripe's billing portal, Whop's manage URL, Paddle's payment-method checkout, RevenueCat's
//! management URL), else the app's
//! `recovery.manage_url`. The token is unguessable (190 bits) and expires with the case's window.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::http::AppState;
use crate::store::ledger::Target;
use crate::store::{now_ms, nudges};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(follow_nudge_link))
}

/// Follows a recovery nudge's link: counts the click, then redirects (302) to the page where
/// the user updates their payment method.
#[utoipa::path(get, path = "/r/{token}", tag = "billing",
    params(("token" = String, Path, description = "The token of a `recovery.nudge` link")),
    responses(
        (status = 302, description = "To the page where the payment is fixed (Location)"),
        (status = 404, description = "Unknown or expired link, or no page configured", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "The store failed to give its page (Stripe, Whop, Paddle, RevenueCat)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn follow_nudge_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response> {
    let gone = || Error::NotFound("this link is unknown or has expired".into());
    if token.len() != 32 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(gone());
    }
    let clicked = nudges::click(&state.db, &token, now_ms())
        .await?
        .ok_or_else(gone)?;
    let app = state.config.app(&clicked.slug);
    let recovery = app.and_then(|a| a.recovery.as_ref());
    let store_page = match app {
        Some(app) => store_page(&state, app, &clicked).await?,
        None => None,
    };
    let url = store_page
        .or_else(|| recovery.and_then(|r| r.manage_url.clone()))
        .ok_or_else(|| {
            Error::NotFound(
                "the app has configured no page for this ([apps.recovery] manage_url)".into(),
            )
        })?;
    let location = HeaderValue::from_str(&url)
        .map_err(|_| Error::Internal(anyhow::anyhow!("a manage URL that is not a header value")))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response())
}

/// The store's own page where this user fixes their payment: a Stripe billing-portal session
/// made now (with `recovery.return_url`), the Whop membership's `manage_url`, Paddle's checkout
/// for updating the payment method, or RevenueCat's
/// `management_url` for the subscriber (the App Store's or Google Play's page) — each when the
/// app has the store's API key. `None` falls back to the app's `manage_url`; so does a store
/// that cannot say (no customer yet, an unknown membership).
async fn store_page(
    state: &AppState,
    app: &crate::config::AppConfig,
    clicked: &nudges::Clicked,
) -> Result<Option<String>> {
    use crate::billing::store_http::StoreError;
    let fallback = |e: StoreError| match e {
        StoreError::Refused { status, .. } if status < 500 => Ok(None),
        e => Err(super::billing::store_failed(e)),
    };
    let url_at = |v: &serde_json::Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(|u| u.as_str())
            .filter(|u| u.starts_with("https://"))
            .map(str::to_string)
    };
    match clicked.provider.as_str() {
        "stripe" => {
            let Some(back) = app.recovery.as_ref().and_then(|r| r.return_url.as_deref()) else {
                return Ok(None);
            };
            let target = Target {
                app_id: clicked.app_id,
                user_id: clicked.user_id,
            };
            match super::billing::portal_session(state, app, target, back).await {
                Ok(url) => Ok(Some(url)),
                // No Stripe customer or key: the configured page.
                Err(Error::Conflict(_) | Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
        "whop" => {
            let Some(api) = crate::billing::whop_api::WhopApi::of_app(app, &state.stores) else {
                return Ok(None);
            };
            match api.membership(&clicked.subscription_id).await {
                Ok(m) => Ok(url_at(&m, "/manage_url")),
                Err(e) => fallback(e),
            }
        }
        "paddle" => {
            let Some(api) = crate::billing::paddle_api::PaddleApi::of_app(app, &state.stores)
            else {
                return Ok(None);
            };
            match api.update_payment_url(&clicked.subscription_id).await {
                Ok(url) => Ok(url.filter(|u| u.starts_with("https://"))),
                Err(e) => fallback(e),
            }
        }
        "revenuecat" => {
            let (Some(rc), Some(user)) = (app.revenuecat.as_ref(), clicked.external_id.as_deref())
            else {
                return Ok(None);
            };
            let Some(key) = rc.api_key.as_ref() else {
                return Ok(None);
            };
            match crate::billing::revenuecat_api::subscriber(&state.stores, &rc.api_base, key, user)
                .await
            {
                Ok(s) => Ok(url_at(&s, "/subscriber/management_url")),
                Err(e) => fallback(e),
            }
        }
        _ => Ok(None),
    }
}

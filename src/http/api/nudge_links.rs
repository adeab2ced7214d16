//! `GET /r/{token}`: a recovery nudge's link. Counts the click (for the app's CTR per variant),
//! then redirects to where the user fixes the payment: a Stripe billing-portal session made now
//! for a Stripe subscriber (the app's `recovery.return_url` set), else the app's
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
        (status = 502, description = "Stripe failed to make a portal session", body = crate::error::Problem, content_type = "application/problem+json"),
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
    let target = Target {
        app_id: clicked.app_id,
        user_id: clicked.user_id,
    };
    let portal = match (app, recovery.and_then(|r| r.return_url.as_deref())) {
        (Some(app), Some(back)) if clicked.provider == "stripe" => {
            match super::billing::portal_session(&state, app, target, back).await {
                Ok(url) => Some(url),
                // No Stripe customer or key: fall back to the configured page.
                Err(Error::Conflict(_) | Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    let url = portal
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

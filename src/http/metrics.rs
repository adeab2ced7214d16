//! `GET /metrics`: Prometheus text, behind a bearer token when one is configured.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::AppState;
use crate::crypto::constant_time_eq;
use crate::error::{Error, Result};
use crate::ops;

/// Whether the request carries the configured metrics token (compared in constant time); false
/// when none is configured.
pub fn has_token(config: &crate::config::Config, headers: &HeaderMap) -> bool {
    let Some(token) = &config.metrics_token else {
        return false;
    };
    let given = super::auth::bearer_token(headers).unwrap_or_default();
    constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes())
}

/// Prometheus exposition text. Requires `Authorization: Bearer <metrics_token>` when set.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text format", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "Missing or wrong metrics token", body = crate::error::Problem,
            content_type = "application/problem+json")))]
pub async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    if state.config.metrics_token.is_some() && !has_token(&state.config, &headers) {
        return Err(Error::Unauthorized(
            "/metrics requires Authorization: Bearer <metrics_token>".into(),
        ));
    }
    let body = ops::metrics::render(&state.metrics, &state.db);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

//! Email for the app's server (app secret key): queue a message from one of the app's
//! templates (`POST /v1/emails`), sent once per key by a job (docs/email.md).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Result;
use crate::events::email::{self, Queued, Request};
use crate::http::auth::AppAuth;
use crate::http::idempotency::EffectKey;
use crate::http::{AppState, extract};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(send_email))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailIn {
    /// One of the app's `[apps.email.templates]`.
    pub template: String,
    #[schema(max_length = 320)]
    pub to: String,
    /// The template's variables (every one it uses must be given).
    #[schema(value_type = Object)]
    pub variables: Option<serde_json::Value>,
    /// The message is sent once per app and key; default: this request's Idempotency-Key.
    #[schema(max_length = 200)]
    pub key: Option<String>,
}

/// Queues a message: 202 when new, 200 when a message under the same key was queued before.
#[utoipa::path(post, path = "/v1/emails", tag = "identity", security(("api_key" = [])),
    request_body = EmailIn,
    responses((status = 202, description = "Queued", body = Queued),
        (status = 200, description = "Queued before under this key", body = Queued)))]
pub async fn send_email(
    State(state): State<AppState>,
    auth: AppAuth,
    effect: Option<Extension<EffectKey>>,
    extract::Json(body): extract::Json<EmailIn>,
) -> Result<(StatusCode, Json<Queued>)> {
    let key = body
        .key
        .or_else(|| EffectKey::of(&effect).map(str::to_string))
        .unwrap_or_else(|| format!("once:{}", uuid::Uuid::now_v7().simple()));
    let request = Request {
        template: body.template,
        to: body.to,
        variables: body.variables.unwrap_or_else(|| serde_json::json!({})),
        key,
    };
    let app = (auth.app_id, auth.app_slug.as_str());
    let queued = email::queue(&state.config, &state.db, &state.jobs, app, request).await?;
    let status = if queued.inserted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(queued)))
}

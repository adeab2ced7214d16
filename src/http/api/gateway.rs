//! The OpenAI-compatible AI API: `POST /v1/chat/completions`, `GET /v1/models`, and the
//! caller's usage records (`GET /v1/me/usage`), and the Anthropic and Gemini native routes.
//! Each route parses its request into a [`Call`], which does the rest (plan, limits, hold,
//! provider, settle: [`crate::gateway::call`]); see docs/gateway.md.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::money::{PageQuery, invalid};
use crate::error::{Error, Result};
use crate::gateway::format::Format;
use crate::gateway::{Call, CallContext, CallError, Gateway, anthropic, gemini, models, openai};
use crate::http::AppState;
use crate::http::auth::{InvitedUser, UserAuth};
use crate::http::idempotency::EffectKey;
use crate::store::ledger;
use crate::store::usage::{self, UsageRecord};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat_completions))
        .routes(routes!(embeddings))
        .routes(routes!(anthropic_messages))
        .routes(routes!(gemini_generate))
        .routes(routes!(list_models))
        .routes(routes!(my_usage))
}

/// An OpenAI chat completion through the gateway. The body is OpenAI's (forwarded as is, with
/// the provider's model name); streaming answers are `text/event-stream`. The call is charged
/// exactly what the provider reports once it ends; `Idempotency-Key` makes a retry replay a
/// non-streamed answer instead of calling again.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway",
    security(("api_key" = [])),
    request_body(content = Object, description = "An OpenAI chat completion request"),
    responses(
        (status = 200, description = "The provider's answer (JSON, or SSE when `stream` is true)", body = Object),
        (status = 400, description = "Not a JSON object", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "The user's credits do not cover the call's maximum cost", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The plan does not include the model", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such model", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit or the plan's request quota", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Every model tried failed", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn chat_completions(
    State(state): State<AppState>,
    InvitedUser(auth): InvitedUser,
    effect: Option<Extension<EffectKey>>,
    body: Bytes,
) -> Result<Response> {
    let map = json_object(&body)?;
    let request = openai::parse_request(&map).map_err(Error::Validation)?;
    let call = Call::new(
        Format::OpenAiChat,
        map,
        request,
        body.len(),
        effect_key(&effect),
    );
    serve_call(&state, &auth, call).await
}

/// OpenAI embeddings through the gateway (OpenAI and the mock), charged on the provider's
/// `usage.prompt_tokens` at the model's input price.
#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway",
    security(("api_key" = [])),
    request_body(content = Object, description = "An OpenAI embeddings request"),
    responses(
        (status = 200, description = "The provider's embeddings", body = Object),
        (status = 402, description = "The user's credits do not cover the call", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn embeddings(
    State(state): State<AppState>,
    InvitedUser(auth): InvitedUser,
    effect: Option<Extension<EffectKey>>,
    body: Bytes,
) -> Result<Response> {
    let map = json_object(&body)?;
    let request = openai::parse_embeddings(&map).map_err(Error::Validation)?;
    let call = Call::new(
        Format::OpenAiEmbeddings,
        map,
        request,
        body.len(),
        effect_key(&effect),
    );
    serve_call(&state, &auth, call).await
}

/// Anthropic's Messages API, passed through: the body and the answer are Anthropic's (the
/// model name mapped), usage is read from the provider's own events. The Anthropic SDKs work
/// with `base_url` = `…/anthropic` and a tollgate user key as the API key.
#[utoipa::path(post, path = "/anthropic/v1/messages", tag = "gateway",
    security(("api_key" = [])),
    request_body(content = Object, description = "An Anthropic Messages request"),
    responses(
        (status = 200, description = "The provider's answer (JSON, or SSE when `stream` is true)", body = Object),
        (status = 402, description = "The user's credits do not cover the call's maximum cost", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a model of another provider", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn anthropic_messages(
    State(state): State<AppState>,
    InvitedUser(auth): InvitedUser,
    effect: Option<Extension<EffectKey>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let map = json_object(&body)?;
    let request = anthropic::parse_request(&map).map_err(Error::Validation)?;
    let passed: Vec<(HeaderName, HeaderValue)> = ["anthropic-version", "anthropic-beta"]
        .into_iter()
        .filter_map(|n| {
            headers
                .get(n)
                .map(|v| (HeaderName::from_static(n), v.clone()))
        })
        .collect();
    let mut call = Call::new(
        Format::Anthropic,
        map,
        request,
        body.len(),
        effect_key(&effect),
    );
    call.anthropic_headers = passed;
    serve_call(&state, &auth, call).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GeminiQuery {
    /// `sse` (required for `streamGenerateContent`).
    pub alt: Option<String>,
}

/// Gemini's `generateContent` and `streamGenerateContent` (with `alt=sse`), passed through:
/// the path names the API version and the model and method
/// (`v1beta/models/gemini-2.5-flash:generateContent`). The Google GenAI SDKs work with the base
/// URL `…/gemini` and a tollgate user key as the API key; newer ones call `v1`, which is served
/// by the provider's `v1beta` (it takes every `v1` request).
#[utoipa::path(post, path = "/gemini/{version}/models/{target}", tag = "gateway",
    security(("api_key" = [])),
    params(("version" = String, Path, description = "`v1beta` or `v1`"),
        ("target" = String, Path, description = "`{model}:generateContent` or `{model}:streamGenerateContent`"), GeminiQuery),
    request_body(content = Object, description = "A Gemini GenerateContentRequest"),
    responses(
        (status = 200, description = "The provider's answer (JSON, or SSE when streaming)", body = Object),
        (status = 404, description = "No such API version or method", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 402, description = "The user's credits do not cover the call's maximum cost", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a model of another provider", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn gemini_generate(
    State(state): State<AppState>,
    InvitedUser(auth): InvitedUser,
    effect: Option<Extension<EffectKey>>,
    Path((version, target)): Path<(String, String)>,
    Query(q): Query<GeminiQuery>,
    body: Bytes,
) -> Result<Response> {
    if version != "v1beta" && version != "v1" {
        return Err(Error::NotFound(format!(
            "no Gemini API version {version:?}: v1beta or v1"
        )));
    }
    let (model, stream) = match target.rsplit_once(':') {
        Some((m, "generateContent")) => (m, false),
        Some((m, "streamGenerateContent")) => {
            if q.alt.as_deref() != Some("sse") {
                return Err(invalid(
                    "alt",
                    "streamGenerateContent is served as Server-Sent Events: add ?alt=sse",
                ));
            }
            (m, true)
        }
        _ => {
            return Err(Error::NotFound(format!(
                "no method {target:?}: expected {{model}}:generateContent or {{model}}:streamGenerateContent"
            )));
        }
    };
    let map = json_object(&body)?;
    let request = gemini::parse_request(model, stream, &map).map_err(Error::Validation)?;
    let call = Call::new(
        Format::Gemini,
        map,
        request,
        body.len(),
        effect_key(&effect),
    );
    serve_call(&state, &auth, call).await
}

fn effect_key(effect: &Option<Extension<EffectKey>>) -> Option<String> {
    EffectKey::of(effect).map(str::to_string)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body is not a JSON object: {e}")))
}

/// Runs a parsed call for the caller and maps its failure to a problem.
///
/// The call runs in its own task: a client that hangs up does not cancel it half-way, so its
/// hold is always settled or released when the call ends (a non-streamed answer is read and
/// charged to its end; a stream's pump settles by itself).
async fn serve_call(state: &AppState, auth: &UserAuth, call: Call) -> Result<Response> {
    let state = state.clone();
    let cx = CallContext {
        t: auth.target(),
        app_slug: auth.app_slug.clone(),
        billing: auth.billing.clone(),
        request_id: crate::http::request_id::current().unwrap_or_default(),
    };
    crate::http::request_id::spawn(async move {
        let gw = Gateway {
            config: &state.config,
            db: &state.db,
            ledger: &state.ledger,
            upstream: &state.upstream,
        };
        call.run(gw, &cx).await.map_err(CallError::into_problem)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("the AI call's task failed: {e}")))?
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ModelOut>,
}

/// A model in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    pub created: i64,
    /// The provider that serves it.
    pub owned_by: String,
}

/// The models the caller's plan includes and this deployment can call (OpenAI's list shape).
#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    security(("api_key" = [])),
    responses((status = 200, description = "The models", body = ModelList)))]
pub async fn list_models(State(state): State<AppState>, auth: UserAuth) -> Result<Json<ModelList>> {
    let t = auth.target();
    let user = ledger::user_plan(&state.db, t).await?;
    let plan = auth.billing.plan(user.plan_id.as_deref());
    let data = models::available(&state.config, &plan)
        .into_iter()
        .map(|id| ModelOut {
            owned_by: state.config.models[&id].provider.clone(),
            id,
            object: "model",
            created: 0,
        })
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePage {
    pub data: Vec<UsageRecord>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's AI calls, newest first: tokens by kind, cost, model, timings, and whether the
/// tokens were estimated.
#[utoipa::path(get, path = "/v1/me/usage", tag = "gateway",
    security(("api_key" = [])), params(PageQuery),
    responses((status = 200, description = "A page of usage records", body = UsagePage)))]
pub async fn my_usage(
    State(state): State<AppState>,
    auth: UserAuth,
    Query(q): Query<PageQuery>,
) -> Result<Json<UsagePage>> {
    let (limit, before) = q.read()?;
    let t = auth.target();
    let mut data = usage::list(&state.db, t, before, limit + 1).await?;
    let more = data.len() as i64 > limit;
    data.truncate(limit as usize);
    let next_cursor = more
        .then(|| data.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(UsagePage { data, next_cursor }))
}

//! The OpenAI-compatible AI API: `POST /v1/chat/completions`, `GET /v1/models`, and the
//! caller's usage records (`GET /v1/me/usage`). The billing around each call is in
//! [`crate::gateway::call`]; see docs/gateway.md.

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

use super::money::{PageQuery, consume_quota, invalid};
use crate::error::{Error, Result};
use crate::gateway::format::Format;
use crate::gateway::openai::ChatRequest;
use crate::gateway::upstream::Outgoing;
use crate::gateway::{anthropic, call, gemini, models, openai};
use crate::http::AppState;
use crate::http::auth::{InvitedUser, UserAuth};
use crate::store::ledger;
use crate::store::now_ms;
use crate::store::usage::{self, UsageRecord};

/// The quota metric every AI call counts against, when the plan declares it.
pub const REQUESTS_METRIC: &str = "requests";

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
    body: Bytes,
) -> Result<Response> {
    let map = json_object(&body)?;
    let request = openai::parse_request(&map).map_err(Error::Validation)?;
    serve_call(
        &state,
        &auth,
        Format::OpenAiChat,
        &map,
        &request,
        body.len(),
        &[],
    )
    .await
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
    body: Bytes,
) -> Result<Response> {
    let map = json_object(&body)?;
    let request = openai::parse_embeddings(&map).map_err(Error::Validation)?;
    let format = Format::OpenAiEmbeddings;
    serve_call(&state, &auth, format, &map, &request, body.len(), &[]).await
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
    serve_call(
        &state,
        &auth,
        Format::Anthropic,
        &map,
        &request,
        body.len(),
        &passed,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
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
    serve_call(
        &state,
        &auth,
        Format::Gemini,
        &map,
        &request,
        body.len(),
        &[],
    )
    .await
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body is not a JSON object: {e}")))
}

/// One metered call in any format: plan → quota → hold → provider (with fallbacks) → settle.
async fn serve_call(
    state: &AppState,
    auth: &UserAuth,
    format: Format,
    map: &Map<String, Value>,
    request: &ChatRequest,
    body_len: usize,
    anthropic_headers: &[(HeaderName, HeaderValue)],
) -> Result<Response> {
    let call = Incoming {
        format,
        map,
        request,
        body_len,
        anthropic_headers,
    };
    // Priced on this process's last reading of the user's plan; the hold checks it against the
    // database, and a call priced on a plan the user has left is priced again, once, on a
    // fresh reading.
    match serve_priced(state, auth, &call, false).await {
        Err(Error::PlanChanged) => serve_priced(state, auth, &call, true).await,
        other => other,
    }
}

/// A call as the client sent it.
struct Incoming<'a> {
    format: Format,
    map: &'a Map<String, Value>,
    request: &'a ChatRequest,
    body_len: usize,
    anthropic_headers: &'a [(HeaderName, HeaderValue)],
}

async fn serve_priced(
    state: &AppState,
    auth: &UserAuth,
    call: &Incoming<'_>,
    fresh_plan: bool,
) -> Result<Response> {
    let Incoming {
        format,
        map,
        request,
        ..
    } = *call;
    let t = auth.target();
    let config = &state.config;
    let priced = state
        .upstream
        .ledger
        .plan(t, &auth.billing, fresh_plan)
        .await?;
    let (user, plan) = (&priced.user, &priced.plan);
    let resolved = models::resolve(config, plan, &request.model, format)?;
    // Each route's body, translated where needed, before anything is charged. The first
    // model's untranslatable fields are the client's to fix; a fallback that cannot take the
    // request is skipped.
    let default_max = config.gateway.default_max_output_tokens as u64;
    let mut routes = Vec::new();
    let mut bodies = Vec::new();
    for (i, route) in resolved.into_iter().enumerate() {
        match format.upstream_body(&route, map, request.stream, default_max) {
            Ok(body) => {
                routes.push(route);
                bodies.push(body);
            }
            Err(fields) if i == 0 => return Err(Error::Unsupported(fields)),
            Err(_) => {
                tracing::debug!(model = %route.model, "fallback skipped: the request cannot be translated for it")
            }
        }
    }
    let counted = consume_quota(&state.db, t, user, plan, REQUESTS_METRIC, 1, now_ms()).await?;
    let started = start_call(state, auth, &priced, call, &routes, &bodies).await;
    let (meter, reply) = match started {
        Ok(started) => started,
        Err(e) => {
            // Refused or failed before any answer: the request does not count against the quota.
            if let Some(q) = counted
                && let Err(err) = crate::store::quotas::give_back(
                    &state.db,
                    t,
                    REQUESTS_METRIC,
                    q.period_start,
                    1,
                )
                .await
            {
                tracing::warn!(error = %err, "could not give back a quota count");
            }
            return Err(e);
        }
    };
    let idle = config.gateway.idle_timeout();
    if request.stream {
        Ok(call::stream(meter, reply, request.client_wants_usage, idle))
    } else {
        call::complete(meter, reply, idle).await
    }
}

/// The call's limits, hold and provider call: the open meter and the provider's reply, or why
/// not (nothing is charged then).
async fn start_call(
    state: &AppState,
    auth: &UserAuth,
    priced: &ledger::CallPlan,
    call: &Incoming<'_>,
    routes: &[crate::gateway::models::Route],
    bodies: &[Vec<u8>],
) -> Result<(call::Meter, crate::gateway::upstream::Reply)> {
    let config = &state.config;
    let (t, plan, request, format) = (auth.target(), &priced.plan, call.request, call.format);
    let slot = state
        .upstream
        .slots
        .take(auth.user_id, config.gateway.max_concurrent_calls_per_user)
        .ok_or_else(|| {
            metrics::counter!(crate::gateway::metrics::CONCURRENCY_REFUSED, "app" => auth.app_slug.clone())
                .increment(1);
            Error::RateLimited {
                retry_after_secs: 1,
            }
        })?;
    if let Some(limit) = plan.tokens_per_minute
        && let Err(retry_after_secs) = state.upstream.tokens.admit(auth.user_id, limit, now_ms())
    {
        metrics::counter!(crate::gateway::metrics::TOKENS_REFUSED, "app" => auth.app_slug.clone())
            .increment(1);
        return Err(Error::RateLimited { retry_after_secs });
    }
    let conversion = auth.billing.conversion();
    let amount = call::hold_amount(routes, request, call.body_len, config, &conversion)?;
    let meter = call::Meter::open(
        &state.db,
        &state.upstream.ledger,
        config,
        t,
        &auth.app_slug,
        plan,
        conversion,
        request,
        format,
        amount,
        slot,
        state.upstream.tokens.clone(),
        priced.columns.clone(),
    )
    .await?;
    let outgoing = Outgoing {
        format,
        bodies,
        request,
        anthropic_headers: call.anthropic_headers,
    };
    match state.upstream.send(config, routes, &outgoing).await {
        Ok(reply) => Ok((meter, reply)),
        Err(e) => {
            meter.release("ai call: the provider failed").await;
            Err(e)
        }
    }
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

//! The OpenAI-compatible AI API: `POST /v1/chat/completions`, `GET /v1/models`, and the
//! caller's usage records (`GET /v1/me/usage`). The billing around each call is in
//! [`crate::gateway::call`]; see docs/gateway.md.

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

use super::money::{PageQuery, consume_quota, invalid};
use crate::domain::money::Micros;
use crate::error::{Error, Result};
use crate::gateway::cap::OutputCap;
use crate::gateway::format::Format;
use crate::gateway::models::Route;
use crate::gateway::openai::ChatRequest;
use crate::gateway::upstream::Outgoing;
use crate::gateway::{anthropic, call, gemini, models, openai};
use crate::http::AppState;
use crate::http::auth::{InvitedUser, UserAuth};
use crate::http::idempotency::EffectKey;
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
    effect: Option<Extension<EffectKey>>,
    body: Bytes,
) -> Result<Response> {
    let map = json_object(&body)?;
    let request = openai::parse_request(&map).map_err(Error::Validation)?;
    let call = Incoming::new(Format::OpenAiChat, map, request, body.len(), &effect);
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
    let call = Incoming::new(Format::OpenAiEmbeddings, map, request, body.len(), &effect);
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
    let mut call = Incoming::new(Format::Anthropic, map, request, body.len(), &effect);
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
    let call = Incoming::new(Format::Gemini, map, request, body.len(), &effect);
    serve_call(&state, &auth, call).await
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body is not a JSON object: {e}")))
}

/// A call as the client sent it, owned: it runs in a task of its own.
struct Incoming {
    format: Format,
    map: Map<String, Value>,
    request: ChatRequest,
    body_len: usize,
    anthropic_headers: Vec<(HeaderName, HeaderValue)>,
    /// The request's `Idempotency-Key` effect key, written on the call's hold.
    key: Option<String>,
}

impl Incoming {
    fn new(
        format: Format,
        map: Map<String, Value>,
        request: ChatRequest,
        body_len: usize,
        effect: &Option<Extension<EffectKey>>,
    ) -> Incoming {
        Incoming {
            format,
            map,
            request,
            body_len,
            anthropic_headers: Vec::new(),
            key: EffectKey::of(effect).map(str::to_string),
        }
    }
}

/// One metered call in any format: plan → quota → hold → provider (with fallbacks) → settle.
///
/// The call runs in its own task: a client that hangs up does not cancel it half-way, so its
/// hold is always settled or released when the call ends (a non-streamed answer is read and
/// charged to its end; a stream's pump settles by itself).
async fn serve_call(state: &AppState, auth: &UserAuth, call: Incoming) -> Result<Response> {
    let (state, auth) = (state.clone(), auth.clone());
    crate::http::request_id::spawn(async move { serve_on_fresh_plan(&state, &auth, &call).await })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("the AI call's task failed: {e}")))?
}

/// Priced on this process's last reading of the user's plan. A refusal that a plan change could
/// lift (model not in the plan, quota, tokens per minute, credits) or a hold that found the plan
/// changed is checked against a fresh reading, and the call priced again on it, once: a user
/// who just paid is let in on this call, whichever process applied the purchase.
async fn serve_on_fresh_plan(
    state: &AppState,
    auth: &UserAuth,
    call: &Incoming,
) -> Result<Response> {
    let ledger = &state.ledger;
    let t = auth.target();
    let cached = ledger.plan(t, &auth.billing, false).await?;
    match serve_priced(state, auth, call, &cached).await {
        Err(e) if may_follow_a_stale_plan(&e) => {
            let fresh = ledger.plan(t, &auth.billing, true).await?;
            if matches!(e, Error::PlanChanged) || fresh.columns != cached.columns {
                serve_priced(state, auth, call, &fresh).await
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// Refusals decided on the user's plan, which a purchase processed elsewhere may have changed.
fn may_follow_a_stale_plan(e: &Error) -> bool {
    matches!(
        e,
        Error::PlanChanged
            | Error::Forbidden(_)
            | Error::QuotaExceeded { .. }
            | Error::RateLimited { .. }
            | Error::InsufficientCredits { .. }
    )
}

/// Each route's body, translated where needed and carrying the output cap. The first model's
/// untranslatable fields are the client's to fix; a fallback that cannot take the request is
/// skipped.
fn upstream_bodies(
    call: &Incoming,
    resolved: Vec<Route>,
    cap: OutputCap,
) -> Result<(Vec<Route>, Vec<Vec<u8>>)> {
    let mut routes = Vec::new();
    let mut bodies = Vec::new();
    for (i, route) in resolved.into_iter().enumerate() {
        match call
            .format
            .upstream_body(&route, &call.map, call.request.stream, cap)
        {
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
    Ok((routes, bodies))
}

async fn serve_priced(
    state: &AppState,
    auth: &UserAuth,
    call: &Incoming,
    priced: &ledger::CallPlan,
) -> Result<Response> {
    let t = auth.target();
    let config = &state.config;
    let (user, plan) = (&priced.user, &priced.plan);
    let resolved = models::resolve(config, plan, &call.request.model, call.format)?;
    let cap = OutputCap::of(&call.request, &resolved);
    let (routes, bodies) = upstream_bodies(call, resolved, cap)?;
    let counted = consume_quota(&state.db, t, user, plan, REQUESTS_METRIC, 1, now_ms()).await?;
    let started = start_call(state, auth, priced, call, routes, bodies, cap).await;
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
    if call.request.stream {
        Ok(call::stream(
            meter,
            reply,
            call.request.client_wants_usage,
            idle,
        ))
    } else {
        call::complete(meter, reply, idle).await
    }
}

/// The call's limits, hold and provider call: the open meter and the provider's reply, or why
/// not (nothing is charged then). When the user's credits do not cover the hold of the cap
/// tollgate chose, the cap is lowered to what they do cover (the answer is cut there).
async fn start_call(
    state: &AppState,
    auth: &UserAuth,
    priced: &ledger::CallPlan,
    call: &Incoming,
    mut routes: Vec<Route>,
    mut bodies: Vec<Vec<u8>>,
    cap: OutputCap,
) -> Result<(call::Meter, crate::gateway::upstream::Reply)> {
    let config = &state.config;
    let (t, plan, request, format) = (auth.target(), &priced.plan, &call.request, call.format);
    let take_slot = || async {
        state
            .upstream
            .slots
            .take(auth.user_id, config.gateway.max_concurrent_calls_per_user)
            .await
            .ok_or_else(|| {
                metrics::counter!(crate::gateway::metrics::CONCURRENCY_REFUSED, "app" => auth.app_slug.clone())
                    .increment(1);
                Error::RateLimited {
                    retry_after_secs: 1,
                }
            })
    };
    let slot = take_slot().await?;
    if let Some(limit) = plan.tokens_per_minute
        && let Err(retry_after_secs) = state.upstream.tokens.admit(auth.user_id, limit).await
    {
        metrics::counter!(crate::gateway::metrics::TOKENS_REFUSED, "app" => auth.app_slug.clone())
            .increment(1);
        return Err(Error::RateLimited { retry_after_secs });
    }
    let conversion = auth.billing.conversion();
    let mut amount = call::hold_amount(&routes, call.body_len, cap.tokens, &conversion)?;
    let first_route = routes
        .first()
        .cloned()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a call resolved to no route")))?;
    let opening = |amount: i64| call::Opening {
        db: &state.db,
        batcher: &state.ledger,
        config,
        t,
        app_slug: &auth.app_slug,
        plan,
        conversion,
        request,
        format,
        amount,
        tokens: state.upstream.tokens.clone(),
        priced_on: priced.columns.clone(),
        key: call.key.clone(),
        request_id: crate::http::request_id::current().unwrap_or_default(),
        first_route: &first_route,
    };
    // A user this process last saw with credits enough: the provider request goes out while
    // the hold is written, and its answer is let through only once the hold is committed.
    let refused = if state.ledger.likely_covers(t, amount, plan.overdraft.0) {
        let outgoing = Outgoing {
            format,
            bodies: &bodies,
            request,
            anthropic_headers: &call.anthropic_headers,
        };
        let hold = call::Meter::open(opening(amount), slot);
        let send = state.upstream.send(config, &routes, &outgoing);
        match call::hold_while_sending(hold, send).await {
            Ok((meter, Ok(reply))) => return Ok((meter, reply)),
            Ok((meter, Err(e))) => {
                meter.release("ai call: the provider failed").await;
                return Err(e);
            }
            Err(refused) => {
                // Spent meanwhile (another replica, the app's own debits) or the plan changed:
                // the provider request is dropped unanswered and nothing is charged.
                metrics::counter!(crate::gateway::metrics::REFUSED_AFTER_SEND, "app" => auth.app_slug.clone())
                    .increment(1);
                refused
            }
        }
    } else {
        match call::Meter::open(opening(amount), slot).await {
            Ok(meter) => return send_after_hold(state, call, meter, &routes, &bodies).await,
            Err(refused) => refused,
        }
    };
    let Error::InsufficientCredits { available, needed } = refused else {
        return Err(refused);
    };
    let refusal = (available, needed);
    amount = lower_cap(
        call,
        &mut routes,
        &mut bodies,
        cap,
        plan,
        refusal,
        &conversion,
    )?;
    // The refused hold freed the user's slot; the call takes one again.
    let meter = call::Meter::open(opening(amount), take_slot().await?).await?;
    send_after_hold(state, call, meter, &routes, &bodies).await
}

/// When the user's credits do not cover the hold of the cap tollgate chose, the cap is lowered
/// to what they do cover (the answer is cut there): the new hold amount, with the routes and
/// bodies carrying the lowered cap. Refused (402) when even that is out of reach.
fn lower_cap(
    call: &Incoming,
    routes: &mut Vec<Route>,
    bodies: &mut Vec<Vec<u8>>,
    cap: OutputCap,
    plan: &crate::domain::plans::Plan,
    (available, needed): (Micros, Micros),
    conversion: &crate::domain::pricing::Conversion,
) -> Result<i64> {
    let budget = available.0.saturating_add(plan.overdraft.0);
    let hold_of = |tokens| call::hold_amount(routes, call.body_len, tokens, conversion).ok();
    let Some(lowered) = cap.lowered_to(budget, hold_of) else {
        return Err(Error::InsufficientCredits { available, needed });
    };
    let amount = hold_of(lowered.tokens).unwrap_or(needed.0);
    let resolved = std::mem::take(routes);
    (*routes, *bodies) = upstream_bodies(call, resolved, lowered)?;
    Ok(amount)
}

/// The provider call of a call whose hold is committed.
async fn send_after_hold(
    state: &AppState,
    call: &Incoming,
    meter: call::Meter,
    routes: &[Route],
    bodies: &[Vec<u8>],
) -> Result<(call::Meter, crate::gateway::upstream::Reply)> {
    let outgoing = Outgoing {
        format: call.format,
        bodies,
        request: &call.request,
        anthropic_headers: &call.anthropic_headers,
    };
    match state.upstream.send(&state.config, routes, &outgoing).await {
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

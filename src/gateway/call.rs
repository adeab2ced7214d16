//! One metered AI call, whoever makes it (an HTTP route, a job): the plan it is priced on, the
//! plan's request quota, the user's calls in flight and tokens per minute, the hold, the
//! provider call with its fallbacks, and the [`Meter`] that settles it. The HTTP routes parse a
//! request into a [`Call`], run it, and map a [`CallError`] to a problem; see docs/gateway.md.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use serde_json::{Map, Value};

use super::cap::OutputCap;
use super::format::Format;
use super::limits::Slot;
use super::meter::{self, Meter, Opening};
use super::models;
use super::openai::ChatRequest;
use super::route::Route;
use super::upstream::{Outgoing, Reply, Upstream};
use crate::config::Config;
use crate::domain::money::Micros;
use crate::domain::plans::{BillingSettings, Plan};
use crate::error::Error;
use crate::store::ledger::{self, CallPlan, LedgerError, Target};
use crate::store::quotas::{self, PlanQuota};
use crate::store::{Db, now_ms};

/// The quota metric every AI call counts against, when the plan declares it.
pub const REQUESTS_METRIC: &str = "requests";

/// What a call needs of the process: the config, the database, the ledger's batch writer and
/// the provider connections. Borrowed: a route borrows its state's, a job its worker's.
#[derive(Clone, Copy)]
pub struct Gateway<'a> {
    pub config: &'a Config,
    pub db: &'a Db,
    pub ledger: &'a ledger::Batcher,
    pub upstream: &'a Upstream,
}

/// Who pays for a call and what names it in the ledger and the logs.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub t: Target,
    pub app_slug: String,
    /// The app's plans and credit conversion.
    pub billing: Arc<BillingSettings>,
    /// Written on the call's hold and usage record.
    pub request_id: String,
}

/// A call as its caller made it, parsed: the body in the caller's format and what the gateway
/// read of it.
pub struct Call {
    pub format: Format,
    /// The body, forwarded as is but for the model name and the output cap.
    pub map: Map<String, Value>,
    pub request: ChatRequest,
    /// The body's size: each byte may be a prompt token (the hold's bound).
    pub body_len: usize,
    /// `anthropic-version` and `anthropic-beta`, passed on to Anthropic.
    pub anthropic_headers: Vec<(HeaderName, HeaderValue)>,
    /// The request's `Idempotency-Key` effect key, written on the call's hold: a retry after a
    /// crash finds it instead of calling again.
    pub key: Option<String>,
}

/// Why a call was not made or did not finish. Nothing is charged in any case.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call as asked cannot be made: no such model (404), fields a provider cannot take
    /// (400) or invalid (422), or it already ran under this Idempotency-Key (409). Asking
    /// again the same way fails the same way.
    #[error(transparent)]
    Request(Error),
    /// Refused on the user's plan or balance: a model outside the plan (403), the request
    /// quota, calls in flight or tokens per minute (429), credits (402), or a plan changed
    /// while the call was priced. A purchase may lift it.
    #[error(transparent)]
    Refused(Error),
    /// Every model tried failed, timed out or refused the request (502, 503, 504, or the
    /// provider's own 4xx).
    #[error(transparent)]
    Provider(Error),
    /// The database or a bug.
    #[error(transparent)]
    Internal(Error),
}

impl CallError {
    /// The problem the HTTP edge answers with.
    pub fn into_problem(self) -> Error {
        match self {
            CallError::Request(e)
            | CallError::Refused(e)
            | CallError::Provider(e)
            | CallError::Internal(e) => e,
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        e.into_problem()
    }
}

impl From<LedgerError> for CallError {
    fn from(e: LedgerError) -> CallError {
        match e {
            LedgerError::Insufficient { .. } | LedgerError::PlanChanged => {
                CallError::Refused(e.into())
            }
            LedgerError::Conflict(_) => CallError::Request(e.into()),
            LedgerError::NotFound(_) | LedgerError::Db(_) => CallError::Internal(e.into()),
        }
    }
}

impl From<sqlx::Error> for CallError {
    fn from(e: sqlx::Error) -> CallError {
        CallError::Internal(e.into())
    }
}

impl From<models::ResolveError> for CallError {
    fn from(e: models::ResolveError) -> CallError {
        match e {
            models::ResolveError::NotInPlan(_) => CallError::Refused(e.into()),
            _ => CallError::Request(e.into()),
        }
    }
}

type CallResult<T> = Result<T, CallError>;

impl Call {
    pub fn new(
        format: Format,
        map: Map<String, Value>,
        request: ChatRequest,
        body_len: usize,
        key: Option<String>,
    ) -> Call {
        Call {
            format,
            map,
            request,
            body_len,
            anthropic_headers: Vec::new(),
            key,
        }
    }

    /// Runs the call to its answer: JSON, or a stream that settles by itself when it ends.
    ///
    /// Priced on this process's last reading of the user's plan. A refusal that a plan change
    /// could lift is checked against a fresh reading, and the call priced again on it, once: a
    /// user who just paid is let in on this call, whichever process applied the purchase.
    pub async fn run(&self, gw: Gateway<'_>, cx: &CallContext) -> CallResult<Response> {
        let cached = gw.ledger.plan(cx.t, &cx.billing, false).await?;
        match self.run_priced(gw, cx, &cached).await {
            Err(CallError::Refused(e)) => {
                let fresh = gw.ledger.plan(cx.t, &cx.billing, true).await?;
                if matches!(e, Error::PlanChanged) || fresh.columns != cached.columns {
                    self.run_priced(gw, cx, &fresh).await
                } else {
                    Err(CallError::Refused(e))
                }
            }
            other => other,
        }
    }

    async fn run_priced(
        &self,
        gw: Gateway<'_>,
        cx: &CallContext,
        priced: &CallPlan,
    ) -> CallResult<Response> {
        let (user, plan) = (&priced.user, &priced.plan);
        let resolved = models::resolve(gw.config, plan, &self.request.model, self.format)?;
        let cap = OutputCap::of(&self.request, &resolved);
        let (routes, bodies) = self.upstream_bodies(resolved, cap)?;
        let counted =
            match quotas::consume_on_plan(gw.db, cx.t, user, plan, REQUESTS_METRIC, 1, now_ms())
                .await?
            {
                PlanQuota::Refused {
                    limit,
                    retry_after_secs,
                } => {
                    return Err(CallError::Refused(Error::QuotaExceeded {
                        metric: REQUESTS_METRIC.into(),
                        limit,
                        retry_after_secs,
                    }));
                }
                PlanQuota::Counted { period, .. } => Some(period.start),
                PlanQuota::Unlimited => None,
            };
        let (meter, reply) = match self.start(gw, cx, priced, routes, bodies, cap).await {
            Ok(started) => started,
            Err(e) => {
                // Refused or failed before any answer: the request does not count against the
                // quota.
                if let Some(period_start) = counted
                    && let Err(err) =
                        quotas::give_back(gw.db, cx.t, REQUESTS_METRIC, period_start, 1).await
                {
                    tracing::warn!(error = %err, "could not give back a quota count");
                }
                return Err(e);
            }
        };
        let idle = gw.config.gateway.idle_timeout();
        if self.request.stream {
            Ok(meter::stream(
                meter,
                reply,
                self.request.client_wants_usage,
                idle,
            ))
        } else {
            meter::complete(meter, reply, idle)
                .await
                .map_err(CallError::Provider)
        }
    }

    /// Each route's body, translated where needed and carrying the output cap. The first
    /// model's untranslatable fields are the caller's to fix; a fallback that cannot take the
    /// request is skipped.
    fn upstream_bodies(
        &self,
        resolved: Vec<Route>,
        cap: OutputCap,
    ) -> CallResult<(Vec<Route>, Vec<Vec<u8>>)> {
        let mut routes = Vec::new();
        let mut bodies = Vec::new();
        for (i, route) in resolved.into_iter().enumerate() {
            match self
                .format
                .upstream_body(&route, &self.map, self.request.stream, cap)
            {
                Ok(body) => {
                    routes.push(route);
                    bodies.push(body);
                }
                Err(fields) if i == 0 => {
                    return Err(CallError::Request(Error::Unsupported(fields)));
                }
                Err(_) => {
                    tracing::debug!(model = %route.model, "fallback skipped: the request cannot be translated for it")
                }
            }
        }
        Ok((routes, bodies))
    }

    /// The most the call can cost on any of its routes with output capped at `tokens`.
    fn hold_amount(
        &self,
        routes: &[Route],
        tokens: u64,
        billing: &BillingSettings,
    ) -> CallResult<i64> {
        meter::hold_amount(routes, self.body_len, tokens, &billing.conversion())
            .map_err(CallError::Request)
    }

    /// The call's limits, hold and provider call: the open meter and the provider's reply, or
    /// why not (nothing is charged then). When the user's credits do not cover the hold of the
    /// cap tollgate chose, the cap is lowered to what they do cover (the answer is cut there).
    async fn start(
        &self,
        gw: Gateway<'_>,
        cx: &CallContext,
        priced: &CallPlan,
        mut routes: Vec<Route>,
        mut bodies: Vec<Vec<u8>>,
        cap: OutputCap,
    ) -> CallResult<(Meter, Reply)> {
        let plan = &priced.plan;
        let slot = take_slot(gw, cx).await?;
        if let Some(limit) = plan.tokens_per_minute
            && let Err(retry_after_secs) = gw.upstream.tokens.admit(cx.t.user_id, limit).await
        {
            ::metrics::counter!(super::metrics::TOKENS_REFUSED, "app" => cx.app_slug.clone())
                .increment(1);
            return Err(CallError::Refused(Error::RateLimited { retry_after_secs }));
        }
        let mut amount = self.hold_amount(&routes, cap.tokens, &cx.billing)?;
        let first_route = routes.first().cloned().ok_or_else(|| {
            CallError::Internal(Error::Internal(anyhow::anyhow!(
                "a call resolved to no route"
            )))
        })?;
        let opening = |amount: i64| Opening {
            db: gw.db,
            batcher: gw.ledger,
            config: gw.config,
            t: cx.t,
            app_slug: &cx.app_slug,
            plan,
            conversion: cx.billing.conversion(),
            request: &self.request,
            format: self.format,
            amount,
            tokens: gw.upstream.tokens.clone(),
            priced_on: priced.columns.clone(),
            key: self.key.clone(),
            request_id: cx.request_id.clone(),
            credits_low: cx.billing.credits_low.map(|m| m.0),
            first_route: &first_route,
        };
        // A user this process last saw with credits enough: the provider request goes out
        // while the hold is written, and its answer is let through only once the hold is
        // committed.
        let refused = if gw.ledger.likely_covers(cx.t, amount, plan.overdraft.0) {
            let hold = Meter::open(opening(amount), slot);
            let outgoing = self.outgoing(&bodies);
            let send = gw.upstream.send(gw.config, &routes, &outgoing);
            match meter::hold_while_sending(hold, send).await {
                Ok((meter, Ok(reply))) => return Ok((meter, reply)),
                Ok((meter, Err(e))) => {
                    meter.release("ai call: the provider failed").await;
                    return Err(CallError::Provider(e));
                }
                Err(refused) => {
                    // Spent meanwhile (another replica, the app's own debits) or the plan
                    // changed: the provider request is dropped unanswered, nothing is charged.
                    ::metrics::counter!(super::metrics::REFUSED_AFTER_SEND, "app" => cx.app_slug.clone())
                        .increment(1);
                    refused
                }
            }
        } else {
            match Meter::open(opening(amount), slot).await {
                Ok(meter) => return self.send_after_hold(gw, meter, &routes, &bodies).await,
                Err(refused) => refused,
            }
        };
        let LedgerError::Insufficient { available, needed } = refused else {
            return Err(refused.into());
        };
        amount = self.lower_cap(
            &mut routes,
            &mut bodies,
            cap,
            plan,
            (Micros(available), Micros(needed)),
            &cx.billing,
        )?;
        // The refused hold freed the user's slot; the call takes one again.
        let meter = Meter::open(opening(amount), take_slot(gw, cx).await?).await?;
        self.send_after_hold(gw, meter, &routes, &bodies).await
    }

    /// When the user's credits do not cover the hold of the cap tollgate chose, the cap is
    /// lowered to what they do cover (the answer is cut there): the new hold amount, with the
    /// routes and bodies carrying the lowered cap. Refused (402) when even that is out of reach.
    fn lower_cap(
        &self,
        routes: &mut Vec<Route>,
        bodies: &mut Vec<Vec<u8>>,
        cap: OutputCap,
        plan: &Plan,
        (available, needed): (Micros, Micros),
        billing: &BillingSettings,
    ) -> CallResult<i64> {
        let budget = available.0.saturating_add(plan.overdraft.0);
        let hold_of = |tokens| self.hold_amount(routes, tokens, billing).ok();
        let Some(lowered) = cap.lowered_to(budget, hold_of) else {
            return Err(CallError::Refused(Error::InsufficientCredits {
                available,
                needed,
            }));
        };
        let amount = hold_of(lowered.tokens).unwrap_or(needed.0);
        let resolved = std::mem::take(routes);
        (*routes, *bodies) = self.upstream_bodies(resolved, lowered)?;
        Ok(amount)
    }

    fn outgoing<'a>(&'a self, bodies: &'a [Vec<u8>]) -> Outgoing<'a> {
        Outgoing {
            format: self.format,
            bodies,
            request: &self.request,
            anthropic_headers: &self.anthropic_headers,
        }
    }

    /// The provider call of a call whose hold is committed.
    async fn send_after_hold(
        &self,
        gw: Gateway<'_>,
        meter: Meter,
        routes: &[Route],
        bodies: &[Vec<u8>],
    ) -> CallResult<(Meter, Reply)> {
        match gw
            .upstream
            .send(gw.config, routes, &self.outgoing(bodies))
            .await
        {
            Ok(reply) => Ok((meter, reply)),
            Err(e) => {
                meter.release("ai call: the provider failed").await;
                Err(CallError::Provider(e))
            }
        }
    }
}

/// The user's place among their calls in flight (429 when all are taken).
async fn take_slot(gw: Gateway<'_>, cx: &CallContext) -> CallResult<Slot> {
    let limit = gw.config.gateway.max_concurrent_calls_per_user;
    gw.upstream
        .slots
        .take(cx.t.user_id, limit)
        .await
        .ok_or_else(|| {
            ::metrics::counter!(super::metrics::CONCURRENCY_REFUSED, "app" => cx.app_slug.clone())
                .increment(1);
            CallError::Refused(Error::RateLimited {
                retry_after_secs: 1,
            })
        })
}

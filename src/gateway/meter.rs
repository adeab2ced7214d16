//! The meter of one AI call: hold the most the call can cost, then settle the hold to the
//! exact cost once the provider's usage is known (or estimated when the stream broke or the
//! client left), write the usage record, count it. Every path through a call ends in exactly
//! one settle or release of its hold; a crash leaves the hold to the expiry job, which settles
//! it at the usage recorded while streaming.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::format::{Format, Tally, Translator, translate_response};
use super::limits::{Slot, TokenWindows};
use super::models::Route;
use super::openai::ChatRequest;
use super::upstream::Reply;
use super::usage::Usage;
use super::{metrics, sse};
use crate::config::Config;
use crate::domain::plans::Plan;
use crate::domain::pricing::{Conversion, Tokens};
use crate::error::{Error, Result};
use crate::store::ledger::{self, CallClose, CallHold, PlanColumns, Target};
use crate::store::usage::{CallDetails, NewUsage};
use crate::store::{Db, now_ms};

/// The most a call can cost on any of its routes: every byte of the request a prompt token
/// (tokenizers give at most one token per byte of text) plus `output` tokens, the call's cap.
pub fn hold_amount(
    routes: &[Route],
    body_bytes: usize,
    output: u64,
    conversion: &Conversion,
) -> Result<i64> {
    let tokens = Tokens {
        input: body_bytes as u64,
        cached_input: 0,
        output,
    };
    let mut most = 1;
    for r in routes {
        let cost = r.price.cost(tokens, conversion).map_err(|e| {
            Error::Validation(vec![crate::error::FieldError::new(
                "max_tokens",
                e.to_string(),
            )])
        })?;
        most = most.max(cost.0);
    }
    Ok(most)
}

/// Runs a call's hold and its provider request together: the reply waits until the hold is
/// committed. A refused hold drops the request (cancelling it if it is still in flight) and is
/// the answer; nothing of the reply reaches anyone.
pub async fn hold_while_sending<H, S, R, E>(hold: H, send: S) -> Result<(Meter, R), E>
where
    H: std::future::Future<Output = Result<Meter, E>>,
    S: std::future::Future<Output = R>,
{
    let mut hold = std::pin::pin!(hold);
    let mut send = std::pin::pin!(send);
    let mut reply = None;
    let meter = loop {
        tokio::select! {
            meter = &mut hold => break meter?,
            r = &mut send, if reply.is_none() => reply = Some(r),
        }
    };
    let reply = match reply {
        Some(r) => r,
        None => send.await,
    };
    Ok((meter, reply))
}

/// How a call ended, as its usage record, log line and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// The provider's answer arrived whole.
    Ok,
    /// The provider's stream broke off or closed before its end marker.
    UpstreamBroken,
    /// The client left before the end (charged what was generated).
    ClientDisconnected,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::UpstreamBroken => "upstream_broken",
            CallStatus::ClientDisconnected => "client_disconnected",
        }
    }
}

/// An open hold and what settling it needs.
pub struct Meter {
    db: Db,
    ledger: ledger::Batcher,
    t: Target,
    app_slug: String,
    request_id: String,
    hold_id: i64,
    hold: i64,
    conversion: Conversion,
    prompt_chars: usize,
    stream: bool,
    format: Format,
    /// The user's place among their calls in flight, freed when the call is settled.
    _slot: Slot,
    /// Where the call's tokens are counted for tokens-per-minute limits.
    tokens: TokenWindows,
    /// The plan's limit the call's tokens count against, if it has one.
    tokens_per_minute: Option<u64>,
    /// The app's `credits_low` (micro-credits), announced when the charge crosses it.
    credits_low: Option<i64>,
}

/// What opening a call's meter needs: who pays, on which plan, how much to hold.
pub struct Opening<'a> {
    pub db: &'a Db,
    pub batcher: &'a ledger::Batcher,
    pub config: &'a Config,
    pub t: Target,
    pub app_slug: &'a str,
    pub plan: &'a Plan,
    pub conversion: Conversion,
    pub request: &'a ChatRequest,
    pub format: Format,
    pub amount: i64,
    pub tokens: TokenWindows,
    /// The plan columns the call was priced on (checked in the hold's transaction).
    pub priced_on: Option<PlanColumns>,
    /// The request's `Idempotency-Key` effect key, written on the hold's entry.
    pub key: Option<String>,
    pub request_id: String,
    /// The app's `credits_low` (micro-credits).
    pub credits_low: Option<i64>,
    /// The route tried first: what the hold records of the call until it streams.
    pub first_route: &'a Route,
}

/// What a hold records of its call: its route and the tokens estimated so far.
fn details_of(route: &Route, stream: bool, estimate: &Usage) -> CallDetails {
    CallDetails {
        model: route.model.clone(),
        provider: route.provider.as_str().to_string(),
        upstream_model: route.upstream.clone(),
        stream,
        input_tokens: estimate.input,
        output_tokens: estimate.output,
    }
}

impl Meter {
    /// Reserves the call's hold (402 when the user's credits do not cover it; 409 when the
    /// request's Idempotency-Key already made this call before a crash).
    pub async fn open(o: Opening<'_>, slot: Slot) -> Result<Meter, ledger::LedgerError> {
        let expires = now_ms() + o.config.ledger.hold_timeout_secs as i64 * 1000;
        let nothing_yet = Usage::estimate(o.request.prompt_chars, 0);
        let hold_id = o
            .batcher
            .reserve_call(CallHold {
                t: o.t,
                amount: o.amount,
                overdraft: o.plan.overdraft.0,
                expires_at: expires,
                reason: Some("ai call"),
                reference: Some(o.request_id.clone()),
                key: o.key,
                plan: o.priced_on,
                call: Some(details_of(o.first_route, o.request.stream, &nothing_yet).to_json()),
            })
            .await?;
        Ok(Meter {
            db: o.db.clone(),
            ledger: o.batcher.clone(),
            t: o.t,
            app_slug: o.app_slug.to_string(),
            request_id: o.request_id,
            hold_id,
            hold: o.amount,
            conversion: o.conversion,
            prompt_chars: o.request.prompt_chars,
            stream: o.request.stream,
            format: o.format,
            _slot: slot,
            tokens: o.tokens,
            tokens_per_minute: o.plan.tokens_per_minute,
            credits_low: o.credits_low,
        })
    }

    /// The provider failed before answering: nothing is charged.
    pub async fn release(self, why: &'static str) {
        let close = CallClose::of_call(self.t, self.hold_id, 0, why, None);
        if let Err(e) = self.ledger.close(close).await {
            tracing::error!(hold_id = self.hold_id, error = %e, "releasing a hold failed; the expiry job will");
        }
    }

    /// The cost of `usage` on `route`, at most the hold.
    fn cost(&self, route: &Route, usage: &Usage) -> i64 {
        match route.price.cost(usage.tokens(), &self.conversion) {
            Ok(c) if c.0 <= self.hold => c.0,
            _ => {
                metrics::counter_shortfall(route);
                tracing::warn!(model = %route.model, hold = self.hold, "call cost more than its hold; charged the hold");
                self.hold
            }
        }
    }

    /// What the call has used so far, kept on the hold so a crash settles at it and the expiry
    /// job writes its usage record.
    async fn progress(&self, route: &Route, output_chars: usize) {
        let estimate = Usage::estimate(self.prompt_chars, output_chars);
        let used = self.cost(route, &estimate);
        let call = details_of(route, self.stream, &estimate);
        let (app_id, hold_id) = (self.t.app_id, self.hold_id);
        if let Err(e) = ledger::record_progress(&self.db, app_id, hold_id, used, Some(&call)).await
        {
            tracing::warn!(hold_id = self.hold_id, error = %e, "recording usage on a hold failed");
        }
    }

    /// Settles the hold at the exact cost and writes the usage record. Returns the charge.
    pub async fn settle(
        self,
        reply: &ReplyInfo<'_>,
        usage: Usage,
        status: CallStatus,
        ttft: Option<Duration>,
    ) -> i64 {
        let charged = self.cost(reply.route, &usage);
        if let Some(limit) = self.tokens_per_minute {
            let used = usage.input + usage.cached_input + usage.output;
            self.tokens.add(self.t.user_id, limit, used).await;
        }
        let duration = reply.sent_at.elapsed();
        let record = NewUsage {
            request_id: self.request_id.clone(),
            model: reply.route.model.clone(),
            provider: reply.route.provider.as_str().into(),
            upstream_model: reply.route.upstream.clone(),
            input_tokens: usage.input,
            cached_input_tokens: usage.cached_input,
            output_tokens: usage.output,
            cost: charged,
            hold_id: Some(self.hold_id),
            status: status.as_str(),
            estimated: usage.estimated,
            stream: self.stream,
            latency_ms: duration.as_millis() as i64,
            ttft_ms: ttft.map(|t| t.as_millis() as i64),
        };
        // The charge and its usage record are one transaction.
        let reason = if charged > 0 {
            "ai call"
        } else {
            "ai call: nothing used"
        };
        let close = CallClose::of_call(self.t, self.hold_id, charged, reason, Some(record))
            .announcing_below(self.credits_low);
        if let Err(e) = self.ledger.close(close).await {
            // The hold stays open; the expiry job settles it at the recorded usage.
            tracing::error!(hold_id = self.hold_id, error = %e, "settling a hold failed");
        }
        metrics::finished(&metrics::Finished {
            app: &self.app_slug,
            route: reply.route,
            status: status.as_str(),
            usage,
            charged,
            duration,
            ttft,
        });
        tracing::info!(model = %reply.route.model, provider = reply.route.provider.as_str(),
            input_tokens = usage.input, output_tokens = usage.output, estimated = usage.estimated,
            charged_micros = charged, status = status.as_str(), "ai call");
        charged
    }
}

/// The parts of a reply that settling needs once its body was taken.
pub struct ReplyInfo<'a> {
    pub route: &'a Route,
    pub sent_at: Instant,
}

/// A non-streamed call: read the whole answer, settle, return it unchanged.
pub async fn complete(meter: Meter, mut reply: Reply, idle: Duration) -> Result<Response> {
    let info = ReplyInfo {
        route: &reply.route,
        sent_at: reply.sent_at,
    };
    let body = match reply.body.collect(idle).await {
        Ok(b) => b,
        Err(e) => {
            metrics::upstream_error(info.route, "broken");
            meter
                .release("ai call: the provider's answer broke off")
                .await;
            return Err(Error::Upstream {
                status: StatusCode::BAD_GATEWAY,
                detail: e.to_string(),
            });
        }
    };
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    // Usage is read in the provider's format; the client gets its own.
    let source = Format::of(info.route.provider);
    let usage = source
        .usage_of(&parsed)
        .unwrap_or_else(|| Usage::estimate(meter.prompt_chars, source.response_chars(&parsed)));
    let body = match translate_response(meter.format, source, &parsed, &info.route.model) {
        Some(translated) => serde_json::to_vec(&translated).expect("JSON serializes"),
        None => body,
    };
    meter.settle(&info, usage, CallStatus::Ok, None).await;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// A streamed call: forward the provider's events as they come (without the usage chunk
/// unless the client asked for it), and settle when the stream ends, breaks or the client
/// leaves — in a task of its own, so settling never depends on the client.
pub fn stream(meter: Meter, reply: Reply, client_wants_usage: bool, idle: Duration) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    // In the request's span too: the settle's log line carries its request id.
    crate::http::request_id::spawn(pump(meter, reply, client_wants_usage, idle, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The event that tells the client the provider's stream broke off, in its own format.
fn broken_event(format: Format) -> Bytes {
    let message = "the provider's stream broke off";
    let event = match format {
        Format::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
        ),
        Format::OpenAiChat | Format::OpenAiEmbeddings | Format::Gemini => format!(
            "data: {}\n\n",
            serde_json::json!({"error": {"message": message, "type": "upstream_error",
                "code": "upstream_broken"}})
        ),
    };
    Bytes::from(event)
}

/// How often a running stream records its usage on the hold.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

async fn pump(
    meter: Meter,
    mut reply: Reply,
    client_wants_usage: bool,
    idle: Duration,
    tx: mpsc::Sender<Bytes>,
) {
    let mut parser = sse::Parser::new();
    let source = Format::of(reply.route.provider);
    let mut tally = Tally::new(source);
    // A chat completion served by Anthropic: its events become chat chunks.
    let mut translator =
        Translator::between(meter.format, source, &reply.route.model, client_wants_usage);
    let mut ttft = None;
    let mut status = CallStatus::Ok;
    let mut last_progress = Instant::now();
    'read: loop {
        let chunk = match reply.body.next(idle).await {
            Ok(Some(c)) => c,
            Ok(None) if !tally.finished() => {
                metrics::upstream_error(&reply.route, "broken");
                tracing::warn!(model = %reply.route.model, "the provider's stream closed before its end marker");
                status = CallStatus::UpstreamBroken;
                break;
            }
            Ok(None) => {
                let end = translator
                    .as_mut()
                    .map(Translator::finish)
                    .unwrap_or_default();
                for bytes in end {
                    if tx.send(Bytes::from(bytes)).await.is_err() {
                        status = CallStatus::ClientDisconnected;
                    }
                }
                break;
            }
            Err(e) => {
                metrics::upstream_error(&reply.route, "broken");
                tracing::warn!(model = %reply.route.model, error = %e, "stream from the provider broke");
                status = CallStatus::UpstreamBroken;
                break;
            }
        };
        let events = match parser.push(&chunk) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable stream from the provider");
                status = CallStatus::UpstreamBroken;
                break;
            }
        };
        for event in events {
            if !event.data.is_empty() && event.data != "[DONE]" {
                let seen = tally.observe(&event.data);
                if seen.chars > 0 && ttft.is_none() {
                    ttft = Some(reply.sent_at.elapsed());
                }
                if seen.usage_only && !client_wants_usage {
                    continue;
                }
            }
            let out = match translator.as_mut() {
                Some(t) => t.event(&event.data).into_iter().map(Bytes::from).collect(),
                None => vec![Bytes::from(event.raw)],
            };
            for bytes in out {
                if tx.send(bytes).await.is_err() {
                    status = CallStatus::ClientDisconnected;
                    break 'read;
                }
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            meter.progress(&reply.route, tally.chars).await;
        }
    }
    // Dropping the body closes the provider's connection: it stops generating.
    let Reply { route, sent_at, .. } = reply;
    let usage = tally.usage(meter.prompt_chars);
    let info = ReplyInfo {
        route: &route,
        sent_at,
    };
    if status == CallStatus::UpstreamBroken {
        let _ = tx.send(broken_event(meter.format)).await;
        // A translated stream still ends the way chat streams do.
        if translator.is_some() {
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        }
    }
    // The client's stream ends only once the call is settled: a balance read after the last
    // byte already shows the charge.
    meter.settle(&info, usage, status, ttft).await;
    drop(tx);
}

//! Calling providers: one pooled HTTP client (HTTP/1.1 and HTTP/2, connect / first-byte / idle
//! timeouts), the ordered walk through fallback models, and the response body as chunks —
//! from the network, or from the built-in mock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use secrecy::ExposeSecret;

use super::format::Format;
use super::limits::{Breakers, CallSlots, TokenWindows};
use super::models::{Provider, Route};
use super::openai::{self, ChatRequest};
use super::{anthropic, gemini};
use super::{metrics, mock};
use crate::config::Config;
use crate::error::Error;

/// Holds the connection pool; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    /// Each user's calls in flight.
    pub slots: CallSlots,
    /// Each user's tokens this minute.
    pub tokens: TokenWindows,
    breakers: Breakers,
}

impl Upstream {
    /// `limits` is the GCRA state the request rate limits keep (shared through Redis when
    /// configured): the gateway's limits live beside them.
    pub fn new(config: &Config, limits: &crate::ops::limiter::Limiter) -> Upstream {
        let http = reqwest::Client::builder()
            .connect_timeout(config.gateway.connect_timeout())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A provider answering with a redirect is an error, not a new address to send the
            // key to; retries and fallbacks are this module's, counted and charged as such.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()
            .expect("the HTTP client builds");
        Upstream {
            http,
            // A call holds its credits at most this long: the lease of its place.
            slots: CallSlots::new(
                limits.clone(),
                Duration::from_secs(config.ledger.hold_timeout_secs.max(1)),
            ),
            tokens: TokenWindows::new(limits.clone()),
            breakers: Breakers::new(
                limits.clone(),
                config.gateway.breaker_failures,
                Duration::from_millis(config.gateway.breaker_cooldown_ms),
            ),
        }
    }
}

/// A response body, chunk by chunk.
pub enum Body {
    Http(reqwest::Response),
    Mock(VecDeque<mock::Timed>),
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the provider sent nothing for {0:?}")]
    Idle(Duration),
    #[error("the provider's response broke off: {0}")]
    Broken(String),
}

impl Body {
    /// The next chunk, `None` at the end.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Bytes>, BodyError> {
        match self {
            Body::Http(r) => match tokio::time::timeout(idle, r.chunk()).await {
                Err(_) => Err(BodyError::Idle(idle)),
                Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
                Ok(Ok(chunk)) => Ok(chunk),
            },
            Body::Mock(chunks) => match chunks.pop_front() {
                Some((delay, bytes)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok(Some(bytes))
                }
                None => Ok(None),
            },
        }
    }

    /// The whole rest of the body.
    pub async fn collect(&mut self, idle: Duration) -> Result<Vec<u8>, BodyError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next(idle).await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

/// A provider answered with a success status; its body is still to be read.
pub struct Reply {
    pub route: Route,
    pub body: Body,
    /// When the request was sent (after fallbacks: to the model that answered).
    pub sent_at: Instant,
}

/// Why one attempt failed.
enum Attempt {
    /// Worth trying the next model: 429, 5xx, connect error, no headers in time. `outage`:
    /// counts toward the provider's circuit breaker (all but 429).
    Retryable { error: Error, outage: bool },
    /// The provider refused the request itself (4xx): another model would too.
    Refused(Error),
}

/// One call, ready for each of its routes.
pub struct Outgoing<'a> {
    /// The format the client called in (picks the OpenAI path: chat or embeddings).
    pub format: Format,
    /// The body for each route, in the order of the routes (`Format::upstream_body`).
    pub bodies: &'a [Vec<u8>],
    pub request: &'a ChatRequest,
    /// `anthropic-version` and `anthropic-beta` of the client, passed on.
    pub anthropic_headers: &'a [(HeaderName, HeaderValue)],
}

impl Upstream {
    /// Sends the call to each route in turn until one answers with a success status; the body
    /// is not read yet. Fallbacks happen only here, before any byte reaches the client.
    pub async fn send(
        &self,
        config: &Config,
        routes: &[Route],
        call: &Outgoing<'_>,
    ) -> Result<Reply, Error> {
        let mut last = None;
        for (i, route) in routes.iter().enumerate() {
            if i > 0 {
                metrics::fallback(&routes[i - 1], route);
            }
            let sent_at = Instant::now();
            let breakable = route.provider != Provider::Mock;
            let pass = match breakable {
                true => self.breakers.allow(route.provider).await,
                false => None,
            };
            if breakable && pass.is_none() {
                metrics::upstream_error(route, "circuit_open");
                last = Some(Error::Upstream {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    detail: format!(
                        "{} is failing; its calls are paused for a moment (circuit breaker)",
                        route.provider.as_str()
                    ),
                });
                continue;
            }
            let attempt = match route.provider {
                Provider::Mock => Ok(Body::Mock(match call.format {
                    Format::OpenAiEmbeddings => {
                        mock::embeddings(call.request, &route.upstream).into()
                    }
                    _ => {
                        mock::respond(&config.providers.mock, call.request, &route.upstream).into()
                    }
                })),
                _ => self.http(config, route, &call.bodies[i], call).await,
            };
            match (&attempt, pass) {
                (Ok(_), Some(pass)) => self.breakers.success(route.provider, pass).await,
                (Err(Attempt::Retryable { outage: true, .. }), Some(_))
                    if self.breakers.failure(route.provider).await =>
                {
                    tracing::warn!(provider = route.provider.as_str(), "circuit breaker opened");
                }
                _ => {}
            }
            match attempt {
                Ok(body) => {
                    return Ok(Reply {
                        route: route.clone(),
                        body,
                        sent_at,
                    });
                }
                Err(Attempt::Refused(e)) => return Err(e),
                Err(Attempt::Retryable { error, .. }) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("no model to call".into())))
    }

    /// The provider's HTTP request for this call.
    fn request(
        &self,
        config: &Config,
        route: &Route,
        body: &[u8],
        call: &Outgoing<'_>,
    ) -> reqwest::RequestBuilder {
        let p = &config.providers;
        let key = |k: &Option<secrecy::SecretString>| {
            k.as_ref()
                .map(|k| k.expose_secret().to_string())
                .unwrap_or_default()
        };
        let stream = call.request.stream;
        let base = |url: &str| url.trim_end_matches('/').to_string();
        let builder = match route.provider {
            Provider::Anthropic => {
                let mut b = self
                    .http
                    .post(format!("{}/v1/messages", base(&p.anthropic.base_url)))
                    .header("x-api-key", key(&p.anthropic.api_key))
                    .body(body.to_vec());
                let mut versioned = false;
                for (name, value) in call.anthropic_headers {
                    versioned |= name == "anthropic-version";
                    b = b.header(name.as_str(), value.as_bytes());
                }
                if !versioned {
                    b = b.header("anthropic-version", anthropic::DEFAULT_VERSION);
                }
                b
            }
            Provider::Gemini => self
                .http
                .post(format!(
                    "{}/{}",
                    base(&p.gemini.base_url),
                    gemini::upstream_path(&route.upstream, stream)
                ))
                .header("x-goog-api-key", key(&p.gemini.api_key))
                .body(body.to_vec()),
            Provider::OpenAi | Provider::Mock => self
                .http
                .post(match call.format {
                    Format::OpenAiEmbeddings => format!("{}/embeddings", base(&p.openai.base_url)),
                    _ => format!("{}/chat/completions", base(&p.openai.base_url)),
                })
                .bearer_auth(key(&p.openai.api_key))
                .body(body.to_vec()),
        };
        builder.header("content-type", "application/json")
    }

    async fn http(
        &self,
        config: &Config,
        route: &Route,
        body: &[u8],
        call: &Outgoing<'_>,
    ) -> Result<Body, Attempt> {
        let request = self.request(config, route, body, call).send();
        let timeout = config.gateway.first_byte_timeout();
        let response = match tokio::time::timeout(timeout, request).await {
            Err(_) => {
                metrics::upstream_error(route, "timeout");
                return Err(Attempt::Retryable {
                    error: Error::Upstream {
                        status: StatusCode::GATEWAY_TIMEOUT,
                        detail: format!("{} did not answer within {timeout:?}", route.model),
                    },
                    outage: true,
                });
            }
            Ok(Err(e)) => {
                metrics::upstream_error(route, "connect");
                tracing::warn!(model = %route.model, error = %e, "provider unreachable");
                return Err(Attempt::Retryable {
                    error: Error::Upstream {
                        status: StatusCode::BAD_GATEWAY,
                        detail: format!("the provider of {} could not be reached", route.model),
                    },
                    outage: true,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Body::Http(response));
        }
        metrics::upstream_error(route, status.as_str());
        let body = response.bytes().await.unwrap_or_default();
        // OpenAI, Anthropic and Gemini all put it at `error.message`.
        let message = openai::error_message(&body).unwrap_or_else(|| "no message".into());
        tracing::warn!(model = %route.model, status = status.as_u16(), %message, "provider error");
        // 429, 5xx and Anthropic's 529 (overloaded): another model may answer.
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Attempt::Retryable {
                error: Error::Upstream {
                    status: StatusCode::BAD_GATEWAY,
                    detail: format!(
                        "the provider of {} failed ({}): {message}",
                        route.model,
                        status.as_u16()
                    ),
                },
                outage: status != StatusCode::TOO_MANY_REQUESTS,
            })
        } else {
            // 401/403 mean our provider key is wrong: the client cannot fix that.
            let status = if matches!(status.as_u16(), 401 | 403) {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
            };
            Err(Attempt::Refused(Error::Upstream {
                status,
                detail: format!("the provider refused the request: {message}"),
            }))
        }
    }
}

//! Calling providers: one pooled HTTP client (HTTP/1.1 and HTTP/2, connect / first-byte / idle
//! timeouts), the ordered walk through fallback models, and the response body as chunks —
//! from the network, or from the built-in mock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::models::{Provider, Route};
use super::openai::{self, ChatRequest};
use super::{metrics, mock};
use crate::config::Config;
use crate::error::Error;

/// Holds the connection pool; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
}

impl Upstream {
    pub fn new(config: &Config) -> Upstream {
        let http = reqwest::Client::builder()
            .connect_timeout(config.gateway.connect_timeout())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .expect("the HTTP client builds");
        Upstream { http }
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
    /// Worth trying the next model: 429, 5xx, connect error, no headers in time.
    Retryable(Error),
    /// The provider refused the request itself (4xx): another model would too.
    Refused(Error),
}

impl Upstream {
    /// Sends the call to each route in turn until one answers with a success status; the body
    /// is not read yet. Fallbacks happen only here, before any byte reaches the client.
    pub async fn send(
        &self,
        config: &Config,
        routes: &[Route],
        client_body: &Map<String, Value>,
        request: &ChatRequest,
    ) -> Result<Reply, Error> {
        let mut last = None;
        for (i, route) in routes.iter().enumerate() {
            if i > 0 {
                metrics::fallback(&routes[i - 1], route);
            }
            let sent_at = Instant::now();
            let attempt = match route.provider {
                Provider::Mock => Ok(Body::Mock(
                    mock::respond(&config.providers.mock, request, &route.upstream).into(),
                )),
                Provider::OpenAi => {
                    self.openai(config, route, client_body, request.stream)
                        .await
                }
            };
            match attempt {
                Ok(body) => {
                    return Ok(Reply {
                        route: route.clone(),
                        body,
                        sent_at,
                    });
                }
                Err(Attempt::Refused(e)) => return Err(e),
                Err(Attempt::Retryable(e)) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("no model to call".into())))
    }

    async fn openai(
        &self,
        config: &Config,
        route: &Route,
        client_body: &Map<String, Value>,
        stream: bool,
    ) -> Result<Body, Attempt> {
        let p = &config.providers.openai;
        let url = format!("{}/chat/completions", p.base_url.trim_end_matches('/'));
        let key = p.api_key.as_ref().map(|k| k.expose_secret()).unwrap_or("");
        let request = self
            .http
            .post(url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(openai::upstream_body(client_body, &route.upstream, stream))
            .send();
        let timeout = config.gateway.first_byte_timeout();
        let response = match tokio::time::timeout(timeout, request).await {
            Err(_) => {
                metrics::upstream_error(route, "timeout");
                return Err(Attempt::Retryable(Error::Upstream {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    detail: format!("{} did not answer within {timeout:?}", route.model),
                }));
            }
            Ok(Err(e)) => {
                metrics::upstream_error(route, "connect");
                tracing::warn!(model = %route.model, error = %e, "provider unreachable");
                return Err(Attempt::Retryable(Error::Upstream {
                    status: StatusCode::BAD_GATEWAY,
                    detail: format!("the provider of {} could not be reached", route.model),
                }));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Body::Http(response));
        }
        metrics::upstream_error(route, status.as_str());
        let body = response.bytes().await.unwrap_or_default();
        let message = openai::error_message(&body).unwrap_or_else(|| "no message".into());
        tracing::warn!(model = %route.model, status = status.as_u16(), %message, "provider error");
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Attempt::Retryable(Error::Upstream {
                status: StatusCode::BAD_GATEWAY,
                detail: format!(
                    "the provider of {} failed ({}): {message}",
                    route.model,
                    status.as_u16()
                ),
            }))
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

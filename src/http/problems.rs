//! problem+json for what the framework answers by itself: unknown routes and methods, panics,
//! timeouts, body-limit rejections and extractor rejections.

use std::any::Any;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

pub async fn not_found() -> Error {
    Error::NotFound("no route matches this path".into())
}

pub async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

pub fn panic(_payload: Box<dyn Any + Send + 'static>) -> Response {
    // The payload may hold user data; the panic hook has already printed it to stderr, and
    // reported it to Sentry (when set) with its stack trace: this log is not a second report.
    const WHAT: &str = "a request handler panicked";
    tracing::error!(reported_as_panic = true, error = WHAT, "internal error");
    Error::Internal(anyhow::anyhow!(WHAT)).response()
}

/// Rewrites bare error responses (a tower-http 408/413/503, an axum rejection in plain text)
/// into our problem shape, keeping status and headers.
pub async fn bare_errors_as_problems(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    // Only bodies with no type or plain text come from the framework; a handler that chose a
    // type (problem+json, health+json) meant its body.
    let is_bare = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if status.as_u16() < 400 || !is_bare {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Framework rejections are short text; anything longer is not a message meant for clients.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty());
    let error = match (status, text) {
        (StatusCode::NOT_FOUND, _) => Error::NotFound("no route matches this path".into()),
        (StatusCode::METHOD_NOT_ALLOWED, _) => Error::MethodNotAllowed,
        (StatusCode::PAYLOAD_TOO_LARGE, _) => Error::PayloadTooLarge,
        (StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT, None) => {
            Error::Unavailable("the request did not finish within http.request_timeout_ms".into())
        }
        (s, text) if s.is_server_error() => Error::Internal(anyhow::anyhow!(
            "{s} from the framework: {}",
            text.unwrap_or_default()
        )),
        (s, text) => Error::Status {
            status: s,
            detail: text.unwrap_or_else(|| s.canonical_reason().unwrap_or("error").to_string()),
        },
    };
    let rendered = error.into_response();
    parts.status = rendered.status();
    parts.headers.extend(rendered.headers().clone());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::new(rendered.into_body()))
}

//! Request ids: accepted from a sane `X-Request-Id`, otherwise generated (UUIDv7); echoed in the
//! response, recorded on the request's tracing span (so every log line carries it) and readable
//! by the error renderer through a task-local.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id we keep; longer ones are replaced, not truncated.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `id` as the current request id (for work spawned off the request's task).
pub async fn scope<F: std::future::Future>(id: Option<String>, fut: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, fut).await,
        None => fut.await,
    }
}

/// Spawns `fut` as a task of its own that keeps the current request id and tracing span: work
/// that must run to its end even if the client hangs up (the caller awaits the handle; dropping
/// it does not cancel the task).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    tokio::spawn(scope(current(), fut).in_current_span())
}

/// An incoming id is kept only if it is short and made of characters that are safe in logs
/// and headers: letters, digits and `-_.:`.
pub fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub fn generate() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Middleware: pick the id, run the request inside a span and task-local carrying it, echo it.
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map(str::to_string)
        .unwrap_or_else(generate);
    let value = HeaderValue::from_str(&id).expect("a sane or generated id is a valid header");
    req.headers_mut().insert(HEADER, value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = CURRENT.scope(id, next.run(req)).instrument(span).await;
    response.headers_mut().insert(HEADER, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_short_and_plain() {
        assert!(is_sane("abc-123_DEF.4:5"));
        assert!(is_sane(&generate()));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("new\nline"));
        assert!(!is_sane("<script>"));
        assert!(!is_sane(&"a".repeat(129)));
        assert!(is_sane(&"a".repeat(128)));
    }
}

//! `Idempotency-Key` on state-changing requests (POST), as Stripe does it: the key is scoped to
//! the caller; the first request stores its final status, headers and body; a repeat with the
//! same method, path and body replays them with `Idempotent-Replayed: true`; a repeat with a
//! different request is a 422; a repeat while the first still runs is a 409. Answers of 5xx
//! (and 429) are not stored, so a retry runs again — the failed request changed nothing.
//! Streamed answers (`text/event-stream`) are stored whole once they end and replayed as one
//! body with the same events.
//!
//! The request runs in its own task: a client that hangs up mid-request does not cancel it, so
//! the stored answer always matches what was committed.
//!
//! The stored answer is written after the request's effect commits, so a crash between the two
//! leaves a claim with no answer, taken over by the retry once its lock expires. That retry
//! must not repeat the effect: every claimed request carries its [`EffectKey`], which the
//! handlers write on the effect's own rows (the ledger entry's unique `idempotency_key`) in
//! the effect's transaction. The retry runs the handler again, the handler finds the effect
//! under that key and answers it (a hold, a debit, a grant) or reports it (an AI call whose
//! answer was lost) instead of doing it twice.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::{UserAuth, bearer_token};
use super::jwt::JwtVerifier;
use super::request_id;
use crate::domain::identity::KeyKind;
use crate::error::{Error, FieldError};
use crate::store::idempotency::{self, Claim, Stored};

pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted (Stripe's limit).
const MAX_KEY_LEN: usize = 255;
/// Largest answer stored for replay.
const MAX_STORED_BODY: usize = 4 * 1024 * 1024;

/// The key a request made with an `Idempotency-Key` writes on its effect's rows, in the
/// effect's own transaction (a request extension; handlers take `Option<Extension<EffectKey>>`).
/// One per claim — the same for a retry that takes over a claim whose process died — and
/// unique across principals, so a ledger entry written under it exists once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectKey(pub String);

impl EffectKey {
    /// The key of a request's extension, if it was made with an `Idempotency-Key`.
    pub fn of(extension: &Option<axum::Extension<EffectKey>>) -> Option<&str> {
        extension.as_ref().map(|axum::Extension(k)| k.0.as_str())
    }

    fn of_claim(id: i64) -> EffectKey {
        EffectKey(format!("idem:{id}"))
    }
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(&HEADER) {
        return next.run(req).await;
    }
    match run(state, req, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(state: AppState, req: Request, next: Next) -> Result<Response, Error> {
    let key = parse_key(req.headers())?;
    let (mut parts, body) = req.into_parts();
    // No caller, or one the route will refuse: nothing to scope the key to; the route answers.
    let Some((app_id, principal)) = principal(&state, &mut parts).await else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let body = to_bytes(body, state.config.http.body_limit_bytes)
        .await
        .map_err(|_| Error::PayloadTooLarge)?;
    let fingerprint = fingerprint(&parts.method, &parts.uri, &body);
    let lock_ms = state.config.ledger.idempotency_lock_secs as i64 * 1000;
    let claim =
        idempotency::claim(&state.db, app_id, &principal, &key, &fingerprint, lock_ms).await?;
    let outcome = match &claim {
        Claim::Fresh(_) => "fresh",
        Claim::InFlight => "in_flight",
        Claim::Mismatch => "mismatch",
        Claim::Done(_) => "replayed",
    };
    metrics::counter!(crate::store::ledger::metrics::IDEMPOTENCY, "outcome" => outcome)
        .increment(1);
    let id = match claim {
        Claim::Fresh(id) => id,
        Claim::InFlight => {
            return Err(Error::Conflict(
                "a request with this Idempotency-Key is still being processed; retry later".into(),
            ));
        }
        Claim::Mismatch => {
            return Err(Error::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "this key was already used with a different request (method, path or body)",
            )]));
        }
        Claim::Done(stored) => return Ok(replay(stored)),
    };
    parts.extensions.insert(EffectKey::of_claim(id));
    let req = Request::from_parts(parts, Body::from(body));
    let locked = KeepLocked::start(state.db.clone(), app_id, id, lock_ms);
    let task = request_id::spawn(async move {
        let response = next.run(req).await;
        finish(&state, app_id, id, response, locked).await
    });
    task.await
        .map_err(|e| Error::Internal(anyhow::anyhow!("idempotent request task failed: {e}")))?
}

/// Keeps a claimed key's lock fresh while its request runs — a stream can outlast
/// `ledger.idempotency_lock_secs` — so a retry meanwhile gets 409 instead of running the call a
/// second time. Renews every third of the lock; stops when dropped (the answer stored or
/// forgotten). A process that dies stops renewing, and its claim is taken over once the lock
/// expires.
struct KeepLocked(tokio::task::JoinHandle<()>);

impl KeepLocked {
    fn start(db: crate::store::Db, app_id: Option<i64>, id: i64, lock_ms: i64) -> KeepLocked {
        let every = std::time::Duration::from_millis((lock_ms / 3).max(100) as u64);
        KeepLocked(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is now; the claim was just made
            loop {
                tick.tick().await;
                let until = crate::store::now_ms() + lock_ms;
                match idempotency::extend(&db, app_id, id, until).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => tracing::warn!(error = %e, "renewing an Idempotency-Key lock failed"),
                }
            }
        }))
    }
}

impl Drop for KeepLocked {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn parse_key(headers: &HeaderMap) -> Result<String, Error> {
    let key = headers
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        return Err(Error::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(key.to_string())
}

/// Who the key belongs to: (app for tenant scoping, principal name). `None` when the request
/// carries no usable credential.
async fn principal(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
) -> Option<(Option<i64>, String)> {
    let token = bearer_token(&parts.headers)?;
    if JwtVerifier::looks_like_jwt(token) {
        let user = <UserAuth as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            parts, state,
        )
        .await
        .ok()?;
        return Some((Some(user.app_id), format!("user:{}", user.user_id)));
    }
    let token = token.to_string();
    let record = super::auth::verify_once(state, &token, &mut parts.extensions)
        .await
        .ok()?;
    Some(match record.kind {
        KeyKind::User => (record.app_id, format!("user:{}", record.user_id?)),
        KeyKind::App => (record.app_id, format!("app:{}", record.app_id?)),
        KeyKind::Operator => (None, format!("operator:{}", record.id)),
    })
}

/// SHA-256 over method, path with query, and body.
fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &Bytes) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// Stores the final answer (or forgets the claim for 5xx and 429) and returns it. A stream is
/// stored as it passes, once it has ended.
async fn finish(
    state: &AppState,
    app_id: Option<i64>,
    id: i64,
    response: Response,
    locked: KeepLocked,
) -> Result<Response, Error> {
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        idempotency::abandon(&state.db, app_id, id).await?;
        return Ok(response);
    }
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        return Ok(tee_stream(state.clone(), app_id, id, response, locked));
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, MAX_STORED_BODY)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("reading the answer to store: {e}")))?;
    let stored = Stored {
        status: status.as_u16(),
        headers: stored_headers(&parts.headers),
        body: body.to_vec(),
    };
    crate::ops::fault::point(crate::ops::fault::BEFORE_IDEMPOTENT_ANSWER).await;
    idempotency::complete(&state.db, app_id, id, &stored).await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn stored_headers(headers: &HeaderMap) -> String {
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != header::CONTENT_LENGTH)
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    serde_json::to_string(&headers).unwrap_or_else(|_| "[]".into())
}

/// Passes a streamed answer to the client while keeping a copy, and stores the copy when the
/// stream has ended — read to its end even if the client leaves, so a retry with the same key
/// replays the whole answer (the key stays "in flight", 409, until then). The client's stream
/// ends only after the copy is stored, so a retry right after the last byte replays it. A
/// stream larger than the stored-answer limit, or one that fails, is not stored: its retry
/// runs again.
fn tee_stream(
    state: AppState,
    app_id: Option<i64>,
    id: i64,
    response: Response,
    locked: KeepLocked,
) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = response.into_parts();
    let headers = stored_headers(&parts.headers);
    let status = parts.status.as_u16();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let mut source = body.into_data_stream();
        let mut copy = Some(Vec::new());
        let mut client = Some(tx);
        while let Some(chunk) = source.next().await {
            let Ok(bytes) = chunk else {
                copy = None;
                break;
            };
            if let Some(c) = copy.as_mut() {
                if c.len() + bytes.len() > MAX_STORED_BODY {
                    copy = None;
                } else {
                    c.extend_from_slice(&bytes);
                }
            }
            if let Some(out) = &client
                && out.send(bytes).await.is_err()
            {
                client = None; // the client left; keep reading to store the whole answer
            }
        }
        let saved = match copy {
            Some(body) => {
                let stored = Stored {
                    status,
                    headers,
                    body,
                };
                crate::ops::fault::point(crate::ops::fault::BEFORE_IDEMPOTENT_ANSWER).await;
                idempotency::complete(&state.db, app_id, id, &stored).await
            }
            None => idempotency::abandon(&state.db, app_id, id).await,
        };
        if let Err(e) = saved {
            tracing::error!(error = %e, "storing a streamed answer for its Idempotency-Key failed");
        }
        drop(locked);
        drop(client);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn replay(stored: Stored) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers: Vec<(String, String)> = serde_json::from_str(&stored.headers).unwrap_or_default();
    let map = response.headers_mut();
    map.remove(header::CONTENT_TYPE);
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            map.append(n, v);
        }
    }
    map.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

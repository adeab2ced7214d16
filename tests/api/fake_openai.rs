//! A local fake of OpenAI's Chat Completions API speaking its real wire format: the
//! `chat.completion` object, `chat.completion.chunk` SSE events ending in `data: [DONE]`, the
//! usage chunk (`choices: []`) only when `stream_options.include_usage` is true, tool-call
//! argument deltas, and `{"error": {...}}` bodies. What it does depends on the model asked for:
//! - `fail-500`: 500 with OpenAI's server_error body; `rate-limited`: 429;
//! - `picky`: 400 invalid_request_error naming `temperature`;
//! - `no-usage`: never reports usage (as some OpenAI-compatible servers do);
//! - `slow`: 200 content chunks 20 ms apart (to disconnect from mid-stream);
//! - `tools`: a streamed tool call;
//! - `long`: writes 6,000 completion tokens, or stops at the request's `max_completion_tokens`
//!   / `max_tokens` with `finish_reason: length`, as OpenAI does;
//! - `slow-answer`: a whole (non-streamed) answer after 1.5 s;
//! - anything else: "Hello" with usage 12 prompt (2 cached) + 30 completion tokens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const API_KEY: &str = "sk-fake-test-key";

#[derive(Clone, Default)]
pub struct FakeOpenAi {
    /// Every request body received, in order.
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeOpenAi {
    pub fn received(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts the fake; returns it and its base URL (`http://127.0.0.1:PORT/v1`).
pub async fn start() -> (FakeOpenAi, String) {
    let fake = FakeOpenAi::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

fn error(status: StatusCode, kind: &str, message: &str, param: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": null}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What the `long` model writes when nothing stops it.
pub const LONG_ANSWER_TOKENS: u64 = 6_000;

pub fn usage() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42,
           "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
}

async fn chat(State(fake): State<FakeOpenAi>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {API_KEY}") {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided.",
            None,
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    fake.requests.lock().unwrap().push(request.clone());
    let model = request["model"].as_str().unwrap_or("").to_string();
    match model.as_str() {
        "fail-500" => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
                None,
            );
        }
        "rate-limited" => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "Rate limit reached for requests",
                None,
            );
        }
        "picky" => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Invalid value for 'temperature': must be between 0 and 2.",
                Some("temperature"),
            );
        }
        _ => {}
    }
    let with_usage = model != "no-usage";
    if request["stream"] != json!(true) {
        if model == "slow-answer" {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        let (written, finish) = match model.as_str() {
            "long" => {
                let cap = ["max_completion_tokens", "max_tokens"]
                    .iter()
                    .find_map(|f| request[*f].as_u64());
                match cap {
                    Some(cap) if cap < LONG_ANSWER_TOKENS => (cap, "length"),
                    _ => (LONG_ANSWER_TOKENS, "stop"),
                }
            }
            _ => (30, "stop"),
        };
        let mut answer = json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello",
                "refusal": null}, "logprobs": null, "finish_reason": finish}],
        });
        if with_usage {
            let mut u = usage();
            u["completion_tokens"] = json!(written);
            u["total_tokens"] = json!(12 + written);
            answer["usage"] = u;
        }
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response();
    }
    let include_usage = request["stream_options"]["include_usage"] == json!(true) && with_usage;
    let usage_field = if include_usage {
        Some(Value::Null)
    } else {
        None
    };
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if let Some(u) = &usage_field {
            c["usage"] = u.clone();
        }
        c
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )];
    let mut gap = Duration::ZERO;
    match model.as_str() {
        "tools" => {
            events[0] = chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": "call_fake1", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                None,
            );
            for part in ["{\"lo", "cation\":", " \"Paris\"}"] {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    None,
                ));
            }
            events.push(chunk(json!({}), Some("tool_calls")));
        }
        "slow" => {
            gap = Duration::from_millis(20);
            for _ in 0..200 {
                events.push(chunk(json!({"content": "word "}), None));
            }
            events.push(chunk(json!({}), Some("stop")));
        }
        _ => {
            events.push(chunk(json!({"content": "Hel"}), None));
            events.push(chunk(json!({"content": "lo"}), None));
            events.push(chunk(json!({}), Some("stop")));
        }
    }
    if include_usage {
        events.push(
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "system_fingerprint": "fp_fake",
            "choices": [], "usage": usage()}),
        );
    }
    let mut frames: Vec<Bytes> = events
        .into_iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), true),
        move |(mut frames, first)| async move {
            let frame = frames.next()?;
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<_, std::io::Error>(frame), (frames, false)))
        },
    );
    (
        StatusCode::OK,
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `POST /v1/embeddings`: one 3-dimensional vector per input, usage 8 prompt tokens.
async fn embeddings(State(fake): State<FakeOpenAi>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided.",
            None,
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    fake.requests.lock().unwrap().push(request.clone());
    let inputs = match &request["input"] {
        Value::Array(items) if items.iter().all(Value::is_string) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, -0.2, 0.3]}))
        .collect();
    let answer = json!({"object": "list", "data": data, "model": request["model"],
        "usage": {"prompt_tokens": 8, "total_tokens": 8}});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

//! A local fake of Anthropic's Messages API in its real wire format: a `message` object, or the
//! SSE sequence `message_start` (input and cache usage) → `content_block_start` → `ping` →
//! `content_block_delta`s → `content_block_stop` → `message_delta` (output usage) →
//! `message_stop`, each with its `event:` line; errors as `{"type":"error","error":{…}}`.
//! By model: `claude-busy` answers 529 overloaded; `claude-cut` stops streaming after the
//! first text delta (no `message_delta`); `claude-tools` streams a `get_weather` tool call
//! (`tool_use` block, `input_json_delta`s, stop reason `tool_use`); anything else answers
//! "Hello".

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const API_KEY: &str = "sk-ant-fake-test-key";

#[derive(Clone, Default)]
pub struct FakeAnthropic {
    /// Every request: (anthropic-version header, body).
    pub requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeAnthropic {
    pub fn received(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts the fake; returns it and its base URL (`http://127.0.0.1:PORT`).
pub async fn start() -> (FakeAnthropic, String) {
    let fake = FakeAnthropic::default();
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn messages(State(fake): State<FakeAnthropic>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    let Some(version) = headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
    else {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    };
    let request: Value = serde_json::from_slice(&body).unwrap();
    fake.requests
        .lock()
        .unwrap()
        .push((version.to_string(), request.clone()));
    let model = request["model"].as_str().unwrap_or("").to_string();
    if model == "claude-busy" {
        return error(529, "overloaded_error", "Overloaded");
    }
    let usage = json!({"input_tokens": 25, "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 10, "output_tokens": 15});
    if request["stream"] != json!(true) {
        let message = json!({"id": "msg_fake", "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage});
        return ([("content-type", "application/json")], message.to_string()).into_response();
    }
    if model == "claude-tools" {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_tools",
                "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": "get_weather",
                "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "{\"location\": "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let text: String = events
            .into_iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect();
        return ([("content-type", "text/event-stream")], text).into_response();
    }
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake",
            "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25,
            "cache_creation_input_tokens": 5, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Hel"}}),
        ),
    ];
    if model != "claude-cut" {
        events.extend([
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "lo"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]);
    }
    let text: String = events
        .into_iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

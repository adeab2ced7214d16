//! A local fake of Google's Gemini API in its real wire format: `GenerateContentResponse`
//! objects (`candidates`, `usageMetadata`, `modelVersion`), streamed as `data:` events with
//! `alt=sse`; errors as `{"error": {"code", "message", "status"}}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const API_KEY: &str = "gemini-fake-test-key";

#[derive(Clone, Default)]
pub struct FakeGemini {
    /// Every request: (path target, body).
    pub requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeGemini {
    pub fn received(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

pub async fn start() -> (FakeGemini, String) {
    let fake = FakeGemini::default();
    let app = Router::new()
        .route("/v1beta/models/{target}", post(generate))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

fn chunk(model: &str, text: &str, finish: Option<&str>, candidates_tokens: u64) -> Value {
    let mut candidate =
        json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 12, "cachedContentTokenCount": 4,
            "candidatesTokenCount": candidates_tokens, "thoughtsTokenCount": 7,
            "totalTokenCount": 19 + candidates_tokens},
        "modelVersion": model, "responseId": "fake-response"})
}

async fn generate(
    State(fake): State<FakeGemini>,
    Path(target): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        let e = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT"}});
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            e.to_string(),
        )
            .into_response();
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    fake.requests
        .lock()
        .unwrap()
        .push((target.clone(), request));
    let (model, method) = target.rsplit_once(':').unwrap();
    match method {
        "generateContent" => {
            let answer = chunk(model, "Hi there", Some("STOP"), 3);
            ([("content-type", "application/json")], answer.to_string()).into_response()
        }
        "streamGenerateContent" if q.get("alt").map(String::as_str) == Some("sse") => {
            let text = format!(
                "data: {}\r\n\r\ndata: {}\r\n\r\n",
                chunk(model, "Hi", None, 1),
                chunk(model, " there", Some("STOP"), 3)
            );
            ([("content-type", "text/event-stream")], text).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "unknown method").into_response(),
    }
}

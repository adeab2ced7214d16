//! The built-in `mock` provider: answers in the OpenAI wire format without a network, the same
//! way every time — `output_tokens` words, one token each, after `latency_ms`; streamed one word
//! per chunk `chunk_delay_ms` apart, with the usage chunk `include_usage` asks for. Prompt tokens
//! are the gateway's estimate of the messages. For development and for testing apps for free.

use std::time::Duration;

use axum::body::Bytes;
use serde_json::json;

use super::openai::ChatRequest;
use super::usage::estimate_tokens;
use crate::config::MockConfig;

const WORDS: &[&str] = &[
    "This",
    " is",
    " a",
    " mock",
    " answer",
    " from",
    " tollgate",
    ",",
    " no",
    " model",
    " was",
    " called",
    ".",
];

/// One chunk of the mock's response body and the delay before it.
pub type Timed = (Duration, Bytes);

/// The response body, in chunks: one JSON document, or SSE events ending in `[DONE]`.
pub fn respond(config: &MockConfig, request: &ChatRequest, upstream_model: &str) -> Vec<Timed> {
    let words: Vec<&str> = (0..config.output_tokens as usize)
        .map(|i| WORDS[i % WORDS.len()])
        .collect();
    let prompt_tokens = estimate_tokens(request.prompt_chars).max(1);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": words.len(),
        "total_tokens": prompt_tokens + words.len() as u64,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    });
    let id = format!("chatcmpl-mock-{}", uuid::Uuid::now_v7().simple());
    let created = crate::store::now_ms() / 1000;
    let latency = Duration::from_millis(config.latency_ms);
    if !request.stream {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": upstream_model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": words.concat(), "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage,
        });
        return vec![(latency, Bytes::from(body.to_string()))];
    }
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": upstream_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": null,
        })
    };
    let gap = Duration::from_millis(config.chunk_delay_ms);
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    events.extend(words.iter().map(|w| chunk(json!({"content": w}), None)));
    events.push(chunk(json!({}), Some("stop")));
    // The gateway always asks upstream for usage; the mock answers as OpenAI does.
    events.push(json!({
        "id": id, "object": "chat.completion.chunk", "created": created,
        "model": upstream_model, "choices": [], "usage": usage,
    }));
    let mut out: Vec<Timed> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let delay = if i == 0 { latency } else { gap };
            (delay, Bytes::from(format!("data: {e}\n\n")))
        })
        .collect();
    out.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
    out
}

/// Dimensions of the mock's embeddings.
const MOCK_DIMENSIONS: usize = 8;

/// An OpenAI `list` of embeddings, one per input, derived from the input's length (the same
/// input always gets the same vector); usage is the estimate of the input.
pub fn embeddings(request: &ChatRequest, upstream_model: &str) -> Vec<Timed> {
    let inputs = request.inputs.max(1);
    let data: Vec<serde_json::Value> = (0..inputs)
        .map(|i| {
            let v: Vec<f64> = (0..MOCK_DIMENSIONS)
                .map(|d| ((i + d + request.prompt_chars) % 7) as f64 / 7.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens = estimate_tokens(request.prompt_chars).max(1);
    let body = json!({"object": "list", "data": data, "model": upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    vec![(Duration::ZERO, Bytes::from(body.to_string()))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{openai, sse};

    fn request(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "mock".into(),
            stream,
            client_wants_usage: false,
            max_output_tokens: None,
            prompt_chars: 20,
            inputs: 0,
        }
    }

    fn config() -> MockConfig {
        MockConfig {
            enabled: None,
            latency_ms: 0,
            output_tokens: 5,
            chunk_delay_ms: 0,
        }
    }

    #[test]
    fn a_plain_answer_reports_its_usage() {
        let body = respond(&config(), &request(false), "mock");
        let v: serde_json::Value = serde_json::from_slice(&body[0].1).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "This is a mock answer"
        );
        let u = openai::usage_of(&v).unwrap();
        assert_eq!((u.input, u.output), (5, 5));
    }

    #[test]
    fn a_stream_is_valid_sse_with_one_word_per_chunk_and_a_usage_chunk() {
        let mut parser = sse::Parser::new();
        let mut events = Vec::new();
        for (_, bytes) in respond(&config(), &request(true), "mock") {
            events.extend(parser.push(&bytes).unwrap());
        }
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let chunks: Vec<_> = events[..events.len() - 1]
            .iter()
            .map(|e| openai::parse_chunk(&e.data).unwrap())
            .collect();
        let text: usize = chunks.iter().map(|c| c.chars).sum();
        assert_eq!(text, "This is a mock answer".len());
        let last = chunks.last().unwrap();
        assert!(last.usage_only);
        assert_eq!(last.usage.unwrap().output, 5);
    }
}

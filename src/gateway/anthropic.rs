//! Anthropic's Messages API, passed through natively: what the gateway reads from a request
//! (model, max_tokens, stream, prompt text) and where usage is — `usage` of a message; in a
//! stream, `message_start` (input and cache tokens) and `message_delta` (output tokens so far).
//! Reference: https://docs.anthropic.com/en/api/messages and …/messages-streaming

use serde_json::{Map, Value};

use super::openai::{self, ChatRequest};
use super::usage::Usage;
use crate::error::FieldError;

/// The `anthropic-version` sent when the client sends none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

pub fn parse_request(body: &Map<String, Value>) -> Result<ChatRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let model = openai::required_model(body, &mut errors);
    let messages = openai::required_messages(body, &mut errors);
    super::messages::check_anthropic(messages, &mut errors);
    let max_tokens = match body.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => n,
        _ => {
            errors.push(FieldError::new(
                "max_tokens",
                "required: a positive integer",
            ));
            0
        }
    };
    let stream = openai::stream_flag(body, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let system = body.get("system").map_or(0, content_chars);
    Ok(ChatRequest {
        inputs: 0,
        model,
        stream,
        client_wants_usage: true,
        max_output_tokens: Some(max_tokens),
        prompt_chars: system
            + messages
                .iter()
                .filter_map(|m| m.get("content"))
                .map(content_chars)
                .sum::<usize>(),
    })
}

/// Characters of text in a content value: a string, or blocks with `text` (or tool input /
/// result content).
fn content_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("tool_use") => b.get("input").map_or(0, |i| i.to_string().len()),
                Some("tool_result") => b.get("content").map_or(0, content_chars),
                _ => b
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, |t| t.chars().count()),
            })
            .sum(),
        _ => 0,
    }
}

/// The body sent upstream: the client's, with the provider's model name.
pub fn upstream_body(client: &Map<String, Value>, upstream_model: &str) -> Vec<u8> {
    let mut body = client.clone();
    body.insert("model".into(), Value::String(upstream_model.to_string()));
    serde_json::to_vec(&body).expect("a JSON map serializes")
}

/// Usage of a message (`usage`), or of the `message_start` message. Cache writes are priced as
/// input (the price table has no separate cache-write price).
pub fn usage_in(u: &Value) -> Option<Usage> {
    let u = u.as_object()?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input: n("input_tokens") + n("cache_creation_input_tokens"),
        cached_input: n("cache_read_input_tokens"),
        output: n("output_tokens"),
        estimated: false,
    })
}

/// Characters of generated text in a message (text, thinking and tool input).
pub fn response_chars(v: &Value) -> usize {
    v.get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| {
                    ["text", "thinking"]
                        .iter()
                        .filter_map(|k| b.get(*k).and_then(Value::as_str))
                        .map(|t| t.chars().count())
                        .sum::<usize>()
                        + b.get("input").map_or(0, |i| i.to_string().len())
                })
                .sum()
        })
        .unwrap_or(0)
}

/// What the stream has told so far.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    /// From `message_start`: input and cache tokens (output is a placeholder there).
    pub start: Option<Usage>,
    /// From the last `message_delta`: the output tokens, cumulative.
    pub output: Option<u64>,
    /// `message_stop` arrived: the message is complete.
    pub stopped: bool,
}

impl StreamState {
    /// Reads one event; returns characters of generated text it carries.
    pub fn observe(&mut self, data: &str) -> usize {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return 0;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.start = v.pointer("/message/usage").and_then(usage_in);
                0
            }
            Some("message_stop") => {
                self.stopped = true;
                0
            }
            Some("message_delta") => {
                if let Some(u) = v.get("usage") {
                    self.output = u
                        .get("output_tokens")
                        .and_then(Value::as_u64)
                        .or(self.output);
                    // Newer API versions repeat the input counts here; they win when present.
                    if let (Some(start), Some(input)) = (
                        self.start.as_mut(),
                        u.get("input_tokens").and_then(Value::as_u64),
                    ) {
                        start.input = input
                            + u.get("cache_creation_input_tokens")
                                .and_then(Value::as_u64)
                                .unwrap_or(0);
                    }
                }
                0
            }
            Some("content_block_delta") => {
                let d = v.get("delta");
                ["text", "partial_json", "thinking"]
                    .iter()
                    .filter_map(|k| d.and_then(|d| d.get(*k)).and_then(Value::as_str))
                    .map(|t| t.chars().count())
                    .sum()
            }
            _ => 0,
        }
    }

    /// The usage when the stream reported it whole (both halves), else `None`.
    pub fn usage(&self) -> Option<Usage> {
        let start = self.start?;
        Some(Usage {
            output: self.output?,
            ..start
        })
    }

    /// Input from `message_start` and an estimate of the output, when the stream broke off
    /// before its `message_delta`.
    pub fn partial(&self, output_chars: usize) -> Option<Usage> {
        let start = self.start?;
        Some(Usage {
            output: super::usage::estimate_tokens(output_chars),
            estimated: true,
            ..start
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_needs_model_messages_and_max_tokens() {
        let body = json!({"model": "claude", "max_tokens": 100, "system": "Be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]});
        let r = parse_request(body.as_object().unwrap()).unwrap();
        assert_eq!(
            (r.max_output_tokens, r.prompt_chars, r.stream),
            (Some(100), 10, false)
        );
        let errors = parse_request(json!({"stream": 1}).as_object().unwrap()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["model", "messages", "max_tokens", "stream"]);
    }

    #[test]
    fn a_stream_reports_input_at_start_and_output_at_the_delta() {
        let mut s = StreamState::default();
        s.observe(r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":5,"cache_read_input_tokens":10,"output_tokens":1}}}"#);
        assert_eq!(
            s.observe(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#),
            5
        );
        assert!(s.usage().is_none(), "no output count yet");
        assert_eq!(s.partial(8).unwrap().output, 2);
        s.observe(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#);
        let u = s.usage().unwrap();
        assert_eq!(
            (u.input, u.cached_input, u.output, u.estimated),
            (30, 10, 15, false)
        );
    }
}

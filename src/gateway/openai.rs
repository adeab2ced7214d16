//! The OpenAI Chat Completions wire format: what the gateway reads from a request (model,
//! stream, output cap), how it asks the provider for usage in streams, and where usage and
//! generated text are in responses and stream chunks.
//! Reference: https://platform.openai.com/docs/api-reference/chat

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::gateway::usage::Usage;

/// What the gateway needs from a chat completion request; the body itself is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// `max_completion_tokens` or `max_tokens`, when set.
    pub max_output_tokens: Option<u64>,
    /// Characters of the messages' text: the basis of estimates when usage is missing.
    pub prompt_chars: usize,
    /// Embeddings: how many inputs (0 for other calls).
    pub inputs: usize,
}

/// `model`: a non-empty string.
pub fn required_model(body: &Map<String, Value>, errors: &mut Vec<FieldError>) -> String {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            errors.push(FieldError::new("model", "required: a model name"));
            String::new()
        }
    }
}

/// `messages`: a non-empty array.
pub fn required_messages<'a>(
    body: &'a Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> &'a [Value] {
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m.as_slice(),
        _ => {
            errors.push(FieldError::new("messages", "required: a non-empty array"));
            &[]
        }
    }
}

/// `stream`: a boolean, false when absent.
pub fn stream_flag(body: &Map<String, Value>, errors: &mut Vec<FieldError>) -> bool {
    match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("stream", "expected true or false"));
            false
        }
    }
}

/// Reads and checks the fields the gateway relies on; every problem at once, by field.
pub fn parse_request(body: &Map<String, Value>) -> Result<ChatRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let model = required_model(body, &mut errors);
    let messages = required_messages(body, &mut errors);
    super::messages::check_openai(messages, &mut errors);
    let stream = stream_flag(body, &mut errors);
    if let Some(n) = body.get("n")
        && !n.is_null()
        && n.as_u64() != Some(1)
    {
        errors.push(FieldError::new(
            "n",
            "only n = 1 is supported (one choice per call)",
        ));
    }
    let mut max_output_tokens = None;
    for field in ["max_tokens", "max_completion_tokens"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => {
                    max_output_tokens = Some(max_output_tokens.map_or(n, |m: u64| m.min(n)))
                }
                _ => errors.push(FieldError::new(field, "expected a positive integer")),
            },
        }
    }
    let client_wants_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if !stream {
                errors.push(FieldError::new(
                    "stream_options",
                    "only allowed when stream is true",
                ));
            }
            o.get("include_usage").and_then(Value::as_bool) == Some(true)
        }
        Some(_) => {
            errors.push(FieldError::new("stream_options", "expected an object"));
            false
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ChatRequest {
        model,
        stream,
        client_wants_usage,
        max_output_tokens,
        prompt_chars: messages.iter().map(text_chars).sum(),
        inputs: 0,
    })
}

/// Reads an embeddings request (`model`, `input` as a string, strings, or token arrays).
pub fn parse_embeddings(body: &Map<String, Value>) -> Result<ChatRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let model = required_model(body, &mut errors);
    // Token arrays count four characters a token, the inverse of the estimate.
    let item_chars = |v: &Value| match v {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(tokens) if tokens.iter().all(Value::is_u64) => Some(tokens.len() * 4),
        _ => None,
    };
    let (inputs, prompt_chars) = match body.get("input") {
        Some(Value::String(s)) if !s.is_empty() => (1, s.chars().count()),
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_u64) {
                (1, items.len() * 4)
            } else {
                match items.iter().map(item_chars).collect::<Option<Vec<_>>>() {
                    Some(chars) => (items.len(), chars.iter().sum()),
                    None => {
                        errors.push(FieldError::new(
                            "input",
                            "expected a string, an array of strings, or token arrays",
                        ));
                        (0, 0)
                    }
                }
            }
        }
        _ => {
            errors.push(FieldError::new("input", "required: text to embed"));
            (0, 0)
        }
    };
    if let Some(d) = body.get("dimensions")
        && !d.is_null()
        && d.as_u64().is_none_or(|d| d < 1)
    {
        errors.push(FieldError::new("dimensions", "expected a positive integer"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ChatRequest {
        model,
        max_output_tokens: Some(0),
        prompt_chars,
        inputs,
        ..ChatRequest::default()
    })
}

/// Characters of text in a message (string content, or the text parts of content arrays, and
/// tool call arguments).
fn text_chars(message: &Value) -> usize {
    let content = match message.get("content") {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.chars().count())
            .sum(),
        _ => 0,
    };
    let tools: usize = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().map(tool_call_chars).sum())
        .unwrap_or(0);
    content + tools
}

fn tool_call_chars(call: &Value) -> usize {
    call.pointer("/function/arguments")
        .and_then(Value::as_str)
        .map_or(0, |a| a.chars().count())
        + call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map_or(0, |n| n.chars().count())
}

/// The body sent upstream: the client's, with the provider's model name and, for streams,
/// `stream_options.include_usage` forced on so the provider reports usage.
/// The body sent to OpenAI: the client's, with the provider's model name, the usage chunk
/// asked for when streaming, and `max_completion_tokens` when the gateway sets the cap
/// (`max_tokens` is deprecated and refused by reasoning models).
pub fn upstream_body(
    client: &Map<String, Value>,
    upstream_model: &str,
    stream: bool,
    cap: Option<u64>,
) -> Vec<u8> {
    let mut body = client.clone();
    body.insert("model".into(), Value::String(upstream_model.to_string()));
    if let Some(tokens) = cap {
        body.insert("max_completion_tokens".into(), Value::from(tokens));
    }
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = options {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    serde_json::to_vec(&body).expect("a JSON map serializes")
}

/// `usage` of a response or chunk, if present and not null.
pub fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let prompt = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(prompt);
    Some(Usage {
        input: prompt - cached,
        cached_input: cached,
        output: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        estimated: false,
    })
}

/// Characters of generated text in a non-streamed response.
pub fn response_chars(v: &Value) -> usize {
    v.get("choices")
        .and_then(Value::as_array)
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.get("message"))
                .map(text_chars)
                .sum()
        })
        .unwrap_or(0)
}

/// What one stream chunk carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// Characters of generated text or tool-call arguments.
    pub chars: usize,
    pub usage: Option<Usage>,
    /// The extra chunk `include_usage` adds: usage and no choices.
    pub usage_only: bool,
    /// A choice ended (`finish_reason` set): the answer is complete.
    pub finished: bool,
}

pub fn parse_chunk(data: &str) -> Option<Chunk> {
    let v: Value = serde_json::from_str(data).ok()?;
    let choices = v.get("choices").and_then(Value::as_array);
    let chars = choices
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("delta"))
                .map(text_chars)
                .sum()
        })
        .unwrap_or(0);
    let usage = usage_of(&v);
    let finished = choices.is_some_and(|cs| {
        cs.iter()
            .any(|c| c.get("finish_reason").is_some_and(|f| !f.is_null()))
    });
    Some(Chunk {
        finished,
        chars,
        usage_only: usage.is_some() && choices.is_none_or(|c| c.is_empty()),
        usage,
    })
}

/// The `message` of an OpenAI error body (`{"error": {"message": …}}`), if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_request_is_read_and_every_bad_field_reported() {
        let r = parse_request(&map(json!({
            "model": "gpt", "stream": true, "max_tokens": 100, "max_completion_tokens": 50,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello"},
                         {"role": "user", "content": [{"type": "text", "text": "abc"}]}]
        })))
        .unwrap();
        assert_eq!(r.model, "gpt");
        assert!(r.stream && r.client_wants_usage);
        assert_eq!(r.max_output_tokens, Some(50));
        assert_eq!(r.prompt_chars, 8);

        let errors =
            parse_request(&map(json!({"n": 2, "stream": "yes", "max_tokens": 0}))).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["model", "messages", "stream", "n", "max_tokens"]);
    }

    #[test]
    fn the_upstream_body_asks_for_usage_and_names_the_upstream_model() {
        let client = map(json!({"model": "alias", "stream": true, "messages": [],
                                "stream_options": {"include_usage": false}, "temperature": 0.2}));
        let body: Value =
            serde_json::from_slice(&upstream_body(&client, "gpt-4o", true, None)).unwrap();
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["temperature"], 0.2);
        assert!(
            body.get("max_completion_tokens").is_none(),
            "the client's own cap, or none"
        );
        let plain: Value =
            serde_json::from_slice(&upstream_body(&client, "x", false, Some(700))).unwrap();
        assert_eq!(plain["stream_options"]["include_usage"], false);
        assert_eq!(
            plain["max_completion_tokens"], 700,
            "the gateway's cap, in OpenAI's field"
        );
    }

    #[test]
    fn usage_splits_cached_tokens_out_of_the_prompt() {
        let u = usage_of(
            &json!({"usage": {"prompt_tokens": 100, "completion_tokens": 7,
            "total_tokens": 107, "prompt_tokens_details": {"cached_tokens": 60}}}),
        )
        .unwrap();
        assert_eq!((u.input, u.cached_input, u.output), (40, 60, 7));
        assert!(usage_of(&json!({"usage": null})).is_none());
    }

    #[test]
    fn chunks_report_text_tool_arguments_and_the_usage_chunk() {
        let c = parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}"#)
            .unwrap();
        assert_eq!((c.chars, c.usage_only), (3, false));
        let t = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(t.chars, 4);
        let u = parse_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        )
        .unwrap();
        assert!(u.usage_only);
        assert_eq!(u.usage.unwrap().output, 2);
    }
}

//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`), passed through
//! natively: what the gateway reads from a request and where usage is (`usageMetadata`:
//! prompt, cached, candidates and thoughts token counts; in a stream, on the chunks, the last
//! one complete). Reference: https://ai.google.dev/api/generate-content

use serde_json::{Map, Value};

use super::openai::ChatRequest;
use super::usage::Usage;
use crate::error::FieldError;

/// `model` comes from the path (`models/{model}:generateContent`).
pub fn parse_request(
    model: &str,
    stream: bool,
    body: &Map<String, Value>,
) -> Result<ChatRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let contents = match body.get("contents") {
        Some(Value::Array(c)) if !c.is_empty() => c.as_slice(),
        _ => {
            errors.push(FieldError::new("contents", "required: a non-empty array"));
            &[]
        }
    };
    super::messages::check_gemini(contents, &mut errors);
    let max = body
        .get("generationConfig")
        .and_then(|g| g.get("maxOutputTokens"));
    let max_output_tokens = match max {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => {
                errors.push(FieldError::new(
                    "generationConfig.maxOutputTokens",
                    "expected a positive integer",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let system = body.get("systemInstruction").map_or(0, parts_chars);
    Ok(ChatRequest {
        inputs: 0,
        model: model.to_string(),
        stream,
        client_wants_usage: true,
        max_output_tokens,
        prompt_chars: system + contents.iter().map(parts_chars).sum::<usize>(),
    })
}

/// Sets `generationConfig.maxOutputTokens` (creating `generationConfig` if missing).
pub fn set_max_output_tokens(body: &mut Map<String, Value>, tokens: u64) {
    let config = body
        .entry("generationConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    if let Value::Object(c) = config {
        c.insert("maxOutputTokens".into(), Value::from(tokens));
    }
}

/// Characters of text in a `Content` (`{"parts": [{"text": …}]}`).
fn parts_chars(content: &Value) -> usize {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .map(|p| {
                    p.get("text")
                        .and_then(Value::as_str)
                        .map_or(0, |t| t.chars().count())
                        + p.get("functionCall").map_or(0, |f| f.to_string().len())
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The path after the base URL: `v1beta/models/{model}:generateContent` or the streaming one.
pub fn upstream_path(upstream_model: &str, stream: bool) -> String {
    if stream {
        format!("v1beta/models/{upstream_model}:streamGenerateContent?alt=sse")
    } else {
        format!("v1beta/models/{upstream_model}:generateContent")
    }
}

/// `usageMetadata` of a response or stream chunk. Thinking tokens are billed as output.
pub fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usageMetadata")?.as_object()?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount");
    let cached = n("cachedContentTokenCount").min(prompt);
    Some(Usage {
        input: prompt - cached,
        cached_input: cached,
        output: n("candidatesTokenCount") + n("thoughtsTokenCount"),
        estimated: false,
    })
}

/// Characters of generated text in a response or chunk.
pub fn response_chars(v: &Value) -> usize {
    v.get("candidates")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("content"))
                .map(parts_chars)
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_counts_thoughts_as_output_and_splits_the_cache() {
        let chunk = json!({"candidates": [{"content": {"parts": [{"text": "Hi there"}],
            "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "cachedContentTokenCount": 4,
            "candidatesTokenCount": 3, "thoughtsTokenCount": 7, "totalTokenCount": 22},
            "modelVersion": "gemini-2.5-flash"});
        let u = usage_of(&chunk).unwrap();
        assert_eq!((u.input, u.cached_input, u.output), (8, 4, 10));
        assert_eq!(response_chars(&chunk), 8);
    }

    #[test]
    fn a_request_needs_contents_and_reads_the_output_cap() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "generationConfig": {"maxOutputTokens": 64}});
        let r = parse_request("gemini", true, body.as_object().unwrap()).unwrap();
        assert_eq!((r.max_output_tokens, r.prompt_chars), (Some(64), 5));
        assert!(parse_request("g", false, json!({}).as_object().unwrap()).is_err());
        assert_eq!(
            upstream_path("gemini-2.5-flash", true),
            "v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }
}

//! `/v1/chat/completions` served by a Gemini model: the OpenAI request becomes a
//! `generateContent` request, the response (or its stream) becomes a chat completion (or
//! chunks). System prompts, multi-turn, function declarations, function calls and responses,
//! JSON mode, stop reasons, streamed text and function calls, usage. A field with no Gemini
//! equivalent is refused by name, never dropped.

use serde_json::{Map, Value, json};

use super::chat_request::{self, ToolChoice};
use super::chat_to_anthropic::text_of;
use crate::error::FieldError;

const KNOWN: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "n",
];

/// The `generateContent` body for an OpenAI chat request.
pub fn request(chat: &Map<String, Value>) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let common = chat_request::read(chat, KNOWN, "Gemini", &mut errors);
    let mut generation = Map::new();
    if let Some(max) = common.max_tokens {
        generation.insert("maxOutputTokens".into(), json!(max));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = chat.get(from).filter(|v| !v.is_null()) {
            generation.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = common.stop {
        generation.insert("stopSequences".into(), Value::Array(stop));
    }
    match chat
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => {
            generation.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(_) => errors.push(FieldError::new(
            "response_format",
            "only text and json_object are supported for Gemini models",
        )),
    }
    let mut out = Map::new();
    if let Some(tools) = common.tools {
        let declarations: Vec<Value> = tools
            .into_iter()
            .map(|t| {
                let mut d = json!({"name": t.name});
                if let Some(v) = t.description {
                    d["description"] = v;
                }
                if let Some(v) = t.parameters {
                    d["parameters"] = v;
                }
                d
            })
            .collect();
        out.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
    }
    if let Some(choice) = common.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        out.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }
    let (system, contents) = contents(chat.get("messages"), &mut errors);
    if !system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    out.insert("contents".into(), Value::Array(contents));
    if !generation.is_empty() {
        out.insert("generationConfig".into(), Value::Object(generation));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// System text and the contents: assistant turns are `model`, tool calls `functionCall`
/// parts, tool messages `functionResponse` parts (named after the call they answer).
fn contents(value: Option<&Value>, errors: &mut Vec<FieldError>) -> (String, Vec<Value>) {
    let mut system = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |field: &str| format!("messages.{i}.{field}");
        let (role, parts) = match m.get("role").and_then(Value::as_str).unwrap_or("") {
            "system" | "developer" => {
                system.push(text_of(m.get("content"), &at("content"), errors));
                continue;
            }
            "user" => {
                let text = text_of(m.get("content"), &at("content"), errors);
                ("user", vec![json!({"text": text})])
            }
            "assistant" => {
                let mut parts = Vec::new();
                let text = text_of(m.get("content"), &at("content"), errors);
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                for (j, call) in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
                    names.push((id.to_string(), name.to_string()));
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    match serde_json::from_str::<Value>(args) {
                        Ok(args) => {
                            parts.push(json!({"functionCall": {"name": name, "args": args}}))
                        }
                        Err(_) => errors.push(FieldError::new(
                            at(&format!("tool_calls.{j}.function.arguments")),
                            "not valid JSON",
                        )),
                    }
                }
                ("model", parts)
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let Some((_, name)) = names.iter().find(|(i, _)| i == id) else {
                    errors.push(FieldError::new(
                        at("tool_call_id"),
                        "must name a tool call of an earlier assistant message",
                    ));
                    continue;
                };
                let text = text_of(m.get("content"), &at("content"), errors);
                (
                    "user",
                    vec![
                        json!({"functionResponse": {"name": name, "response": {"content": text}}}),
                    ],
                )
            }
            _ => {
                errors.push(FieldError::new(
                    at("role"),
                    "expected system, developer, user, assistant or tool",
                ));
                continue;
            }
        };
        match turns.last_mut() {
            Some((last, p)) if *last == role => p.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    (system.join("\n\n"), turns)
}

fn finish_reason(reason: Option<&str>, called: bool) -> Value {
    match reason {
        None => Value::Null,
        Some(_) if called => json!("tool_calls"),
        Some("STOP") => json!("stop"),
        Some("MAX_TOKENS") => json!("length"),
        Some(_) => json!("content_filter"),
    }
}

fn chat_usage(v: &Value) -> Value {
    let u = v.get("usageMetadata");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = n("promptTokenCount");
    let completion = n("candidatesTokenCount") + n("thoughtsTokenCount");
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")}})
}

/// Text and tool calls of the first candidate.
fn parts_of(v: &Value, first_call: usize) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    let parts = v
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if p.get("thought") == Some(&Value::Bool(true)) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(f) = p.get("functionCall") {
            calls.push(json!({
                "index": first_call + calls.len(),
                "id": format!("call_{}", first_call + calls.len()),
                "type": "function",
                "function": {"name": f.get("name").cloned().unwrap_or(json!("")),
                             "arguments": f.get("args").map(Value::to_string).unwrap_or_else(|| "{}".into())},
            }));
        }
    }
    (text, calls)
}

/// The chat completion for a `GenerateContentResponse`.
pub fn response(v: &Value, model: &str) -> Value {
    let (text, mut calls) = parts_of(v, 0);
    for c in &mut calls {
        c.as_object_mut().map(|o| o.remove("index"));
    }
    let reason = v
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls.clone());
    }
    json!({
        "id": v.get("responseId").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": crate::store::now_ms() / 1000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(reason.or(Some("STOP")), !calls.is_empty())}],
        "usage": chat_usage(v),
    })
}

/// Turns Gemini stream chunks into chat completion chunks; [`Self::finish`] ends the stream
/// (Gemini sends no end marker).
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    created: i64,
    include_usage: bool,
    started: bool,
    calls: usize,
    last: Value,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, include_usage: bool) -> Self {
        StreamTranslator {
            model: model.to_string(),
            created: crate::store::now_ms() / 1000,
            include_usage,
            started: false,
            calls: 0,
            last: Value::Null,
            finished: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let mut c = json!({"id": self.last.get("responseId").cloned().unwrap_or(json!("")),
            "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    }

    pub fn event(&mut self, data: &str) -> Vec<String> {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return Vec::new();
        };
        if let Some(e) = v.get("error") {
            let message = e.get("message").cloned().unwrap_or(json!("provider error"));
            return vec![format!(
                "data: {}\n\n",
                json!({"error": {"message": message, "type": "upstream_error"}})
            )];
        }
        self.last = v;
        let (text, calls) = parts_of(&self.last, self.calls);
        self.calls += calls.len();
        let mut delta = Map::new();
        if !self.started {
            self.started = true;
            delta.insert("role".into(), json!("assistant"));
        }
        if !text.is_empty() {
            delta.insert("content".into(), json!(text));
        }
        if !calls.is_empty() {
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut out = Vec::new();
        if !delta.is_empty() {
            out.push(self.chunk(Value::Object(delta), Value::Null));
        }
        let reason = self
            .last
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str);
        if reason.is_some() {
            out.push(self.chunk(json!({}), finish_reason(reason, self.calls > 0)));
        }
        out
    }

    /// The usage chunk (if asked for) and `[DONE]`, once.
    pub fn finish(&mut self) -> Vec<String> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = Vec::new();
        if self.include_usage {
            let c = json!({"id": self.last.get("responseId").cloned().unwrap_or(json!("")),
                "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": chat_usage(&self.last)});
            out.push(format!("data: {c}\n\n"));
        }
        out.push("data: [DONE]\n\n".to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_with_a_function_call_becomes_gemini_contents() {
        let chat = json!({"model": "gemini", "max_tokens": 50, "temperature": 0.3,
            "response_format": {"type": "json_object"}, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": "18 C"}]});
        let out = Value::Object(request(chat.as_object().unwrap()).unwrap());
        assert_eq!(out["systemInstruction"]["parts"][0]["text"], "Be brief");
        assert_eq!(out["generationConfig"]["maxOutputTokens"], 50);
        assert_eq!(
            out["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        assert_eq!(
            out["tools"][0]["functionDeclarations"][0]["name"],
            "get_weather"
        );
        let c = out["contents"].as_array().unwrap();
        assert_eq!(c[1]["role"], "model");
        assert_eq!(c[1]["parts"][0]["functionCall"]["args"]["city"], "Paris");
        assert_eq!(c[2]["parts"][0]["functionResponse"]["name"], "get_weather");
        let bad = json!({"model": "g", "seed": 1, "messages": [{"role": "tool", "tool_call_id": "x", "content": "?"}]});
        let fields: Vec<String> = request(bad.as_object().unwrap())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["seed", "messages.0.tool_call_id"]);
    }

    #[test]
    fn responses_and_streams_become_chat_completions() {
        let v = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 10,
            "candidatesTokenCount": 4, "thoughtsTokenCount": 2}, "responseId": "r1"});
        let chat = response(&v, "gemini");
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            chat["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(chat["usage"]["completion_tokens"], 6);

        let mut t = StreamTranslator::new("gemini", true);
        let mut out = t.event(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]}}],"responseId":"r2"}"#);
        out.extend(t.event(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":" there"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2},"responseId":"r2"}"#));
        out.extend(t.finish());
        assert!(t.finish().is_empty());
        let chunks: Vec<Value> = out
            .iter()
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| !d.starts_with("[DONE]"))
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/content"))
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(text, "Hi there");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
        assert_eq!(out.last().unwrap(), "data: [DONE]\n\n");
    }
}

//! `/v1/chat/completions` served by an Anthropic model: the OpenAI request becomes a Messages
//! request, the message (or its event stream) becomes a chat completion (or chunks). System
//! prompts, multi-turn, tool definitions, tool calls and results, stop reasons, streaming
//! text and tool-argument deltas, usage. A field with no Anthropic equivalent is refused with
//! a 400-class error naming it, never dropped.

use serde_json::{Map, Value, json};

use super::chat_request::{self, ToolChoice};
use crate::error::FieldError;

/// OpenAI fields this translation carries over (others are refused).
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
    "user",
    "n",
    "parallel_tool_calls",
];

/// The Messages request for an OpenAI chat request; every field that cannot be translated is
/// reported.
pub fn request(
    chat: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let common = chat_request::read(chat, KNOWN, "Anthropic", &mut errors);
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert(
        "max_tokens".into(),
        json!(common.max_tokens.unwrap_or(default_max_tokens)),
    );
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = chat.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(stop) = common.stop {
        out.insert("stop_sequences".into(), Value::Array(stop));
    }
    if let Some(Value::String(user)) = chat.get("user") {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if chat.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        errors.push(FieldError::new(
            "parallel_tool_calls",
            "false is not supported for Anthropic models",
        ));
    }
    if let Some(tools) = common.tools {
        let list = tools
            .into_iter()
            .map(|t| {
                let mut tool = json!({
                    "name": t.name,
                    "input_schema": t.parameters
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let Some(d) = t.description {
                    tool["description"] = d;
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(list));
    }
    if let Some(choice) = common.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        };
        out.insert("tool_choice".into(), choice);
    }
    let (system, messages) = messages(chat.get("messages"), &mut errors);
    if !system.is_empty() {
        out.insert("system".into(), json!(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// System text and the Messages turns: `tool` messages become `tool_result` blocks of a user
/// turn, assistant `tool_calls` become `tool_use` blocks, consecutive turns of one role merge.
fn messages(value: Option<&Value>, errors: &mut Vec<FieldError>) -> (String, Vec<Value>) {
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |field: &str| format!("messages.{i}.{field}");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.push(text_of(m.get("content"), &at("content"), errors));
                continue;
            }
            "user" => (
                "user",
                content_blocks(m.get("content"), &at("content"), errors),
            ),
            "assistant" => {
                let mut blocks = match m.get("content") {
                    None | Some(Value::Null) => Vec::new(),
                    c => content_blocks(c, &at("content"), errors),
                };
                for (j, call) in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    match serde_json::from_str::<Value>(args) {
                        Ok(input) => blocks.push(json!({
                            "type": "tool_use",
                            "id": call.get("id").cloned().unwrap_or(json!("")),
                            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
                            "input": input,
                        })),
                        Err(_) => errors.push(FieldError::new(
                            at(&format!("tool_calls.{j}.function.arguments")),
                            "not valid JSON",
                        )),
                    }
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                if id.is_empty() {
                    errors.push(FieldError::new(at("tool_call_id"), "required"));
                }
                let text = text_of(m.get("content"), &at("content"), errors);
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})],
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
            Some((last, b)) if last == role => b.extend(blocks),
            _ => turns.push((role.to_string(), blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    (system.join("\n\n"), turns)
}

pub(super) fn text_of(
    content: Option<&Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| {
                if p.get("type").and_then(Value::as_str) == Some("text") {
                    p.get("text").and_then(Value::as_str).map(String::from)
                } else {
                    errors.push(FieldError::new(field, "only text parts are supported here"));
                    None
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            errors.push(FieldError::new(
                field,
                "expected a string or an array of parts",
            ));
            String::new()
        }
    }
}

fn content_blocks(
    content: Option<&Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<Value> {
    match content {
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
                ),
                other => {
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "{} parts are not supported for Anthropic models",
                            other.unwrap_or("untyped")
                        ),
                    ));
                    None
                }
            })
            .collect(),
        other => {
            let text = text_of(other, field, errors);
            vec![json!({"type": "text", "text": text})]
        }
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// OpenAI `usage` from Anthropic's: prompt tokens include cache reads and writes.
fn chat_usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt =
        n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": n("cache_read_input_tokens")},
    })
}

/// The chat completion for an Anthropic message.
pub fn response(message: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(json!("")),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                },
            })),
            _ => {}
        }
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": message.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": crate::store::now_ms() / 1000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": null,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": message.get("usage").map(chat_usage).unwrap_or(Value::Null),
    })
}

/// Turns Anthropic stream events into chat completion chunks, one event at a time.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    /// Content block index → tool call index, for blocks that are tool calls.
    tool_index: Vec<(u64, usize)>,
    usage: Value,
}

impl StreamTranslator {
    pub fn new(model: &str, include_usage: bool) -> Self {
        StreamTranslator {
            id: String::new(),
            model: model.to_string(),
            created: crate::store::now_ms() / 1000,
            include_usage,
            tool_index: Vec::new(),
            usage: json!({}),
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    }

    /// The SSE events (`data: …\n\n`) for one Anthropic event's data.
    pub fn event(&mut self, data: &str) -> Vec<String> {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return Vec::new();
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.id = v
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(u) = v.pointer("/message/usage") {
                    self.usage = u.clone();
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
            }
            Some("content_block_start") => {
                let block = v.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) != Some("tool_use") {
                    return Vec::new();
                }
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let call = self.tool_index.len();
                self.tool_index.push((index, call));
                vec![self.chunk(
                    json!({"tool_calls": [{"index": call,
                        "id": block.and_then(|b| b.get("id")).cloned().unwrap_or(json!("")),
                        "type": "function",
                        "function": {"name": block.and_then(|b| b.get("name")).cloned().unwrap_or(json!("")),
                                     "arguments": ""}}]}),
                    Value::Null,
                )]
            }
            Some("content_block_delta") => {
                let d = v.get("delta");
                match d.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => vec![self.chunk(
                        json!({"content": d.and_then(|d| d.get("text")).cloned().unwrap_or(json!(""))}),
                        Value::Null,
                    )],
                    Some("input_json_delta") => {
                        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let Some(&(_, call)) = self.tool_index.iter().find(|(b, _)| *b == index) else {
                            return Vec::new();
                        };
                        vec![self.chunk(
                            json!({"tool_calls": [{"index": call, "function": {"arguments":
                                d.and_then(|d| d.get("partial_json")).cloned().unwrap_or(json!(""))}}]}),
                            Value::Null,
                        )]
                    }
                    _ => Vec::new(),
                }
            }
            Some("message_delta") => {
                if let (Some(u), Some(acc)) = (
                    v.get("usage").and_then(Value::as_object),
                    self.usage.as_object_mut(),
                ) {
                    for (k, n) in u {
                        acc.insert(k.clone(), n.clone());
                    }
                }
                let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                vec![self.chunk(json!({}), finish_reason(stop))]
            }
            Some("message_stop") => {
                let mut out = Vec::new();
                if self.include_usage {
                    let c = json!({"id": self.id, "object": "chat.completion.chunk",
                        "created": self.created, "model": self.model, "choices": [],
                        "usage": chat_usage(&self.usage)});
                    out.push(format!("data: {c}\n\n"));
                }
                out.push("data: [DONE]\n\n".to_string());
                out
            }
            Some("error") => {
                let message = v
                    .pointer("/error/message")
                    .cloned()
                    .unwrap_or(json!("provider error"));
                vec![format!(
                    "data: {}\n\n",
                    json!({"error": {"message": message, "type": "upstream_error"}})
                )]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_conversation_with_tools_becomes_a_messages_request() {
        let chat = map(json!({
        "model": "claude", "max_tokens": 300, "temperature": 0.5, "stop": "END", "user": "u1",
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Weather", "parameters": {"type": "object",
            "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "get_weather",
                "arguments": "{\"location\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "user", "content": [{"type": "text", "text": "Thanks"}]}
        ]}));
        let out = Value::Object(request(&chat, "claude-sonnet-4-5", 4096).unwrap());
        assert_eq!(out["model"], "claude-sonnet-4-5");
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["system"], "Be brief");
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"]["user_id"], "u1");
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["location"]["type"],
            "string"
        );
        let m = out["messages"].as_array().unwrap();
        assert_eq!(
            m.len(),
            3,
            "the tool result and the next user text share a user turn"
        );
        assert_eq!(m[1]["content"][0]["type"], "tool_use");
        assert_eq!(m[1]["content"][0]["input"]["location"], "Paris");
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(m[2]["content"][1]["text"], "Thanks");
    }

    #[test]
    fn untranslatable_fields_are_named_not_dropped() {
        let chat = map(
            json!({"model": "c", "response_format": {"type": "json_object"},
            "logprobs": true, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
        );
        let errors = request(&chat, "c", 10).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["logprobs", "response_format", "messages.0.content"]
        );
    }

    #[test]
    fn a_message_with_a_tool_call_becomes_a_chat_completion() {
        let message = json!({"id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use",
                "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 20,
                "cache_read_input_tokens": 5, "output_tokens": 9}});
        let chat = response(&message, "claude");
        let choice = &chat["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Checking.");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_1");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["location"], "Paris");
        assert_eq!(chat["usage"]["prompt_tokens"], 25);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    }

    #[test]
    fn a_tool_call_stream_becomes_chunks_with_argument_deltas_and_usage() {
        let mut t = StreamTranslator::new("claude", true);
        let events = [
            r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"loc"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"ation\":\"Paris\"}"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let out: Vec<String> = events.iter().flat_map(|e| t.event(e)).collect();
        let chunks: Vec<Value> = out
            .iter()
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| !d.starts_with("[DONE]"))
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .collect();
        let args: String = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args, r#"{"location":"Paris"}"#);
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_1"
        );
        let finish: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .collect();
        assert!(finish.contains(&&json!("tool_calls")));
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 12);
        assert_eq!(out.last().unwrap(), "data: [DONE]\n\n");
    }
}

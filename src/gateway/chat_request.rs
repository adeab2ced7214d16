//! The parts of an OpenAI chat request that every translation reads the same way: unknown
//! fields (refused by name), the output cap, stop sequences, function tools and the tool
//! choice. Each provider's translation maps these to its own fields.

use serde_json::{Map, Value};

use crate::error::FieldError;

/// A function tool as declared by the client.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<Value>,
    /// The JSON schema of the arguments.
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    Required,
    None,
    Function(String),
}

/// What a translation needs besides the messages.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub stop: Option<Vec<Value>>,
    /// `None` when the request has no `tools`.
    pub tools: Option<Vec<FunctionTool>>,
    pub tool_choice: Option<ToolChoice>,
}

/// Reads the shared fields; every field not in `known` is reported as not supported for
/// `provider`'s models, and so is every malformed one.
pub fn read(
    chat: &Map<String, Value>,
    known: &[&str],
    provider: &str,
    errors: &mut Vec<FieldError>,
) -> Common {
    errors.extend(
        chat.keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| FieldError::new(k.as_str(), format!("not supported for {provider} models"))),
    );
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| chat.get(*k).and_then(Value::as_u64));
    let stop = match chat.get("stop") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![Value::String(s.clone())]),
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => {
            errors.push(FieldError::new("stop", "expected a string or an array"));
            None
        }
    };
    let tools = chat.get("tools").and_then(Value::as_array).map(|tools| {
        tools
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let f = t.get("function");
                match f.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    Some(name) if t.get("type").and_then(Value::as_str) == Some("function") => {
                        Some(FunctionTool {
                            name: name.to_string(),
                            description: f.and_then(|f| f.get("description")).cloned(),
                            parameters: f.and_then(|f| f.get("parameters")).cloned(),
                        })
                    }
                    _ => {
                        errors.push(FieldError::new(
                            format!("tools.{i}"),
                            "only function tools with a name are supported",
                        ));
                        None
                    }
                }
            })
            .collect()
    });
    let tool_choice = match chat.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            "none" => Some(ToolChoice::None),
            _ => {
                errors.push(FieldError::new(
                    "tool_choice",
                    "expected auto, required or none",
                ));
                None
            }
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(ToolChoice::Function(name.to_string())),
            None => {
                errors.push(FieldError::new("tool_choice", "expected a function name"));
                None
            }
        },
    };
    Common {
        max_tokens,
        stop,
        tools,
        tool_choice,
    }
}

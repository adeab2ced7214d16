//! The conversation of a call, checked item by item before anything is held or sent: every
//! message an object with a known role and content of the format's own shape, every content
//! part an object with a `type`. A malformed item is the client's to fix (422, naming it —
//! `messages[2].role`), never forwarded, answered and charged.
//! References: OpenAI's chat `messages`, Anthropic's Messages `messages`, Gemini's `contents`.

use serde_json::Value;

use crate::error::FieldError;

/// OpenAI chat roles (`function` is the deprecated form of `tool`).
const OPENAI_ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];
/// OpenAI content part types.
const OPENAI_PARTS: &[&str] = &["text", "image_url", "input_audio", "file", "refusal"];

/// Checks OpenAI chat `messages`.
pub fn check_openai(messages: &[Value], errors: &mut Vec<FieldError>) {
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Some(m) = m.as_object() else {
            errors.push(FieldError::new(&at, "expected a message object"));
            continue;
        };
        let Some(role) = known_role(m.get("role"), OPENAI_ROLES, &at, errors) else {
            continue;
        };
        match m.get("content") {
            // An assistant turn may be tool calls alone.
            None | Some(Value::Null) if role == "assistant" => {}
            None | Some(Value::Null) => errors.push(FieldError::new(
                format!("{at}.content"),
                "required: a string or an array of content parts",
            )),
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => check_parts(parts, Some(OPENAI_PARTS), &at, errors),
            Some(_) => errors.push(FieldError::new(
                format!("{at}.content"),
                "expected a string or an array of content parts",
            )),
        }
        if role == "tool" && !m.get("tool_call_id").is_some_and(Value::is_string) {
            errors.push(FieldError::new(
                format!("{at}.tool_call_id"),
                "required for a tool message: the id of the call it answers",
            ));
        }
    }
}

/// Checks Anthropic `messages`: user and assistant turns, content a string or blocks.
pub fn check_anthropic(messages: &[Value], errors: &mut Vec<FieldError>) {
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Some(m) = m.as_object() else {
            errors.push(FieldError::new(&at, "expected a message object"));
            continue;
        };
        known_role(m.get("role"), &["user", "assistant"], &at, errors);
        match m.get("content") {
            Some(Value::String(_)) => {}
            // Block types grow with Anthropic's features: each needs a type, not one we know.
            Some(Value::Array(blocks)) => check_parts(blocks, None, &at, errors),
            _ => errors.push(FieldError::new(
                format!("{at}.content"),
                "required: a string or an array of content blocks",
            )),
        }
    }
}

/// Checks Gemini `contents`: an optional `user` / `model` role and a non-empty `parts` array
/// of objects.
pub fn check_gemini(contents: &[Value], errors: &mut Vec<FieldError>) {
    for (i, c) in contents.iter().enumerate() {
        let at = format!("contents[{i}]");
        let Some(c) = c.as_object() else {
            errors.push(FieldError::new(&at, "expected a Content object"));
            continue;
        };
        if c.get("role").is_some_and(|r| !r.is_null()) {
            known_role(c.get("role"), &["user", "model"], &at, errors);
        }
        match c.get("parts") {
            Some(Value::Array(parts)) if !parts.is_empty() => {
                for (j, p) in parts.iter().enumerate() {
                    if p.as_object().is_none_or(|p| p.is_empty()) {
                        errors.push(FieldError::new(
                            format!("{at}.parts[{j}]"),
                            "expected a Part object (text, inlineData, functionCall, …)",
                        ));
                    }
                }
            }
            _ => errors.push(FieldError::new(
                format!("{at}.parts"),
                "required: a non-empty array of parts",
            )),
        }
    }
}

/// The role, if it is one of `roles`; else a field error.
fn known_role<'a>(
    role: Option<&'a Value>,
    roles: &[&str],
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match role.and_then(Value::as_str) {
        Some(r) if roles.contains(&r) => Some(r),
        _ => {
            errors.push(FieldError::new(
                format!("{at}.role"),
                format!("required: one of {}", roles.join(", ")),
            ));
            None
        }
    }
}

/// Content parts: objects with a string `type` (one of `types` when given); text parts carry
/// their `text`.
fn check_parts(parts: &[Value], types: Option<&[&str]>, at: &str, errors: &mut Vec<FieldError>) {
    for (j, p) in parts.iter().enumerate() {
        let part = format!("{at}.content[{j}]");
        let kind = p.get("type").and_then(Value::as_str);
        match kind {
            Some(k) if types.is_none_or(|t| t.contains(&k)) => {}
            _ => {
                let expected = types.map_or("a content block type".to_string(), |t| {
                    format!("one of {}", t.join(", "))
                });
                errors.push(FieldError::new(
                    format!("{part}.type"),
                    format!("required: {expected}"),
                ));
                continue;
            }
        }
        if kind == Some("text") && !p.get("text").is_some_and(Value::is_string) {
            errors.push(FieldError::new(
                format!("{part}.text"),
                "required: the text of a text part",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(check: fn(&[Value], &mut Vec<FieldError>), items: Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(items.as_array().unwrap(), &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn openai_messages_need_a_known_role_and_content_of_their_shape() {
        let ok = json!([
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ]);
        assert!(fields(check_openai, ok).is_empty());
        let bad = json!([
            {"role": "user", "content": "fine"},
            "not a message",
            {"content": "no role"},
            {"role": "robot", "content": "x"},
            {"role": "user"},
            {"role": "user", "content": [{"type": "video"}, {"type": "text"}]},
            {"role": "tool", "content": "x"},
        ]);
        assert_eq!(
            fields(check_openai, bad),
            [
                "messages[1]",
                "messages[2].role",
                "messages[3].role",
                "messages[4].content",
                "messages[5].content[0].type",
                "messages[5].content[1].text",
                "messages[6].tool_call_id",
            ]
        );
    }

    #[test]
    fn anthropic_messages_are_user_or_assistant_turns_with_typed_blocks() {
        let ok = json!([{"role": "user", "content": [{"type": "text", "text": "hi"},
            {"type": "document", "source": {}}]}, {"role": "assistant", "content": "yes"}]);
        assert!(fields(check_anthropic, ok).is_empty());
        let bad = json!([{"role": "system", "content": "x"}, {"role": "user", "content": [{}]},
            {"role": "user"}]);
        assert_eq!(
            fields(check_anthropic, bad),
            [
                "messages[0].role",
                "messages[1].content[0].type",
                "messages[2].content"
            ]
        );
    }

    #[test]
    fn gemini_contents_have_parts_and_an_optional_known_role() {
        let ok = json!([{"parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "yo"}]}]);
        assert!(fields(check_gemini, ok).is_empty());
        let bad = json!([{"role": "assistant", "parts": [{"text": "x"}]}, {"parts": []},
            {"parts": ["text"]}]);
        assert_eq!(
            fields(check_gemini, bad),
            [
                "contents[0].role",
                "contents[1].parts",
                "contents[2].parts[0]"
            ]
        );
    }
}

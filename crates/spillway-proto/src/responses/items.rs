//! Responses input items, tools, `tool_choice` and `text.format` → their chat-completions form.
use serde_json::{Map, Value, json};

use super::{Unsupported, unsupported};
use crate::openai::{ChatMessage, MessageContent};

fn str_field<'a>(item: &'a Value, key: &str, at: &str) -> Result<&'a str, Unsupported> {
    item.get(key).and_then(Value::as_str).ok_or_else(|| {
        unsupported(
            format!("{at}.{key}"),
            format!("`{at}.{key}` must be a string."),
        )
    })
}

fn message(role: &str, content: Option<MessageContent>, extra: Map<String, Value>) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content,
        extra,
    }
}

/// Append the chat messages of `items` (consecutive function calls become one assistant
/// message with several tool calls).
pub(super) fn to_messages(items: &[Value], out: &mut Vec<ChatMessage>) -> Result<(), Unsupported> {
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => out.push(input_message(item, &at)?),
            "function_call" => {
                let call = json!({
                    "id": str_field(item, "call_id", &at)?,
                    "type": "function",
                    "function": {
                        "name": str_field(item, "name", &at)?,
                        "arguments": str_field(item, "arguments", &at)?,
                    }
                });
                let merged = out.last_mut().filter(|m| {
                    m.role == "assistant"
                        && m.content.is_none()
                        && m.extra.contains_key("tool_calls")
                });
                match merged
                    .and_then(|m| m.extra.get_mut("tool_calls"))
                    .and_then(Value::as_array_mut)
                {
                    Some(calls) => calls.push(call),
                    None => {
                        let mut extra = Map::new();
                        extra.insert("tool_calls".into(), json!([call]));
                        out.push(message("assistant", None, extra));
                    }
                }
            }
            "function_call_output" => {
                let mut extra = Map::new();
                let id = str_field(item, "call_id", &at)?;
                extra.insert("tool_call_id".into(), Value::String(id.to_string()));
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts_text(parts, &format!("{at}.output"))?,
                    _ => {
                        return Err(unsupported(
                            format!("{at}.output"),
                            format!("`{at}.output` must be a string."),
                        ));
                    }
                };
                out.push(message("tool", Some(MessageContent::Text(output)), extra));
            }
            other => {
                return Err(unsupported(
                    format!("{at}.type"),
                    format!(
                        "`{at}.type` {:?} is not supported; only message, function_call and function_call_output items are.",
                        cut(other)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A message item: its role, and its content as text or chat parts.
fn input_message(item: &Value, at: &str) -> Result<ChatMessage, Unsupported> {
    let role = match str_field(item, "role", at)? {
        "user" => "user",
        "assistant" => "assistant",
        "system" | "developer" => "system",
        other => {
            return Err(unsupported(
                format!("{at}.role"),
                format!("`{at}.role` {:?} is not a message role.", cut(other)),
            ));
        }
    };
    let content = match item.get("content") {
        Some(Value::String(s)) => MessageContent::Text(s.clone()),
        Some(Value::Array(parts)) => {
            let mut chat = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                chat.push(part(p, &format!("{at}.content[{j}]"))?);
            }
            MessageContent::Parts(chat)
        }
        _ => {
            return Err(unsupported(
                format!("{at}.content"),
                format!("`{at}.content` must be a string or a list of parts."),
            ));
        }
    };
    Ok(message(role, Some(content), Map::new()))
}

/// One content part → a chat part.
fn part(p: &Value, at: &str) -> Result<Value, Unsupported> {
    match p.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => {
            Ok(json!({"type": "text", "text": str_field(p, "text", at)?}))
        }
        Some("refusal") => Ok(json!({"type": "text", "text": str_field(p, "refusal", at)?})),
        Some("input_image") => {
            let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                unsupported(
                    format!("{at}.image_url"),
                    format!(
                        "`{at}`: only images given by `image_url` are supported (not `file_id`)."
                    ),
                )
            })?;
            let mut image = json!({"url": url});
            if let Some(d) = p.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = d.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        other => Err(unsupported(
            format!("{at}.type"),
            format!(
                "`{at}.type` {:?} is not supported; input_text, output_text and input_image are.",
                cut(other.unwrap_or(""))
            ),
        )),
    }
}

/// The text of a function call output given as parts.
fn parts_text(parts: &[Value], at: &str) -> Result<String, Unsupported> {
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        match part(p, &format!("{at}[{j}]"))? {
            v if v["type"] == "text" => text.push_str(v["text"].as_str().unwrap_or_default()),
            _ => {
                return Err(unsupported(
                    format!("{at}[{j}]"),
                    format!("`{at}[{j}]`: only text parts can be a function call's output."),
                ));
            }
        }
    }
    Ok(text)
}

/// Function tools → chat tools; any other tool type is refused.
pub(super) fn tools(tools: &[Value]) -> Result<Value, Unsupported> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut f = Map::new();
                f.insert(
                    "name".into(),
                    Value::String(str_field(t, "name", &at)?.to_string()),
                );
                for k in ["description", "parameters", "strict"] {
                    if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                        f.insert(k.into(), v.clone());
                    }
                }
                out.push(json!({"type": "function", "function": f}));
            }
            other => {
                return Err(unsupported(
                    format!("{at}.type"),
                    format!(
                        "`{at}.type` {:?}: only function tools are supported (built-in tools such as web_search are not).",
                        cut(other.unwrap_or(""))
                    ),
                ));
            }
        }
    }
    Ok(Value::Array(out))
}

/// `tool_choice`: the three modes as they are, a named function in chat's shape.
pub(super) fn tool_choice(c: &Value) -> Result<Value, Unsupported> {
    match c {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(c.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = str_field(c, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(unsupported(
            "tool_choice",
            "`tool_choice` must be auto, none, required or a function.",
        )),
    }
}

/// `text.format` → chat's `response_format` (`None` for plain text).
pub(super) fn text_format(text: &Value) -> Result<Option<Value>, Unsupported> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return match text.as_object().map(|o| o.keys().any(|k| k != "format")) {
            Some(true) => Err(unsupported(
                "text",
                "only `text.format` is supported in `text`.",
            )),
            _ => Ok(None),
        };
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(unsupported(
            "text.format.type",
            "`text.format.type` must be text, json_object or json_schema.",
        )),
    }
}

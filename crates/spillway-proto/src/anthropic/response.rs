//! Whole answers: a canonical chat completion → an Anthropic Messages response.
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::stop_reason;
use crate::openai::{ChatCompletion, Usage};

/// `usage` of a Messages response (and of `message_start` / `message_delta` events). As in
/// Anthropic's API, `input_tokens` are the prompt tokens not read from a cache and
/// `cache_read_input_tokens` those that were (written only when the upstream reported a cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MessagesUsage {
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    pub output_tokens: u64,
}

impl From<Usage> for MessagesUsage {
    fn from(u: Usage) -> Self {
        let cached = u.cached_tokens();
        MessagesUsage {
            input_tokens: u.prompt_tokens - cached.unwrap_or(0),
            cache_read_input_tokens: cached,
            output_tokens: u.completion_tokens,
        }
    }
}

/// A Messages response (`type: "message"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub role: String,
    pub model: String,
    pub content: Vec<Value>,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: MessagesUsage,
}

/// The message id for a canonical completion id (`chatcmpl-x` → `msg_x`).
pub fn message_id(completion_id: &str) -> String {
    let core = completion_id
        .strip_prefix("chatcmpl-")
        .unwrap_or(completion_id);
    format!("msg_{core}")
}

/// A tool call's JSON `arguments` as a `tool_use` block's `input` (an object; arguments that
/// are not a JSON object are kept as the string they were).
pub(crate) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::String(arguments.to_string()),
    }
}

/// A chat completion (choice 0) as a Messages response for the model the client named:
/// reasoning as a `thinking` block, the text as one `text` block, each tool call as a `tool_use`
/// block with its parsed `input`.
pub fn chat_completion_to_message(c: &ChatCompletion, model: &str) -> MessagesResponse {
    let mut content = Vec::new();
    let choice = c.choices.iter().find(|ch| ch.index == 0);
    let (reason, sequence) = match choice {
        Some(ch) => stop_reason(ch.finish_reason.as_deref(), &ch.extra),
        None => ("end_turn", None),
    };
    if let Some(ch) = choice {
        let m = &ch.message;
        if let Some(r) = m
            .extra
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            content.push(json!({ "type": "thinking", "thinking": r, "signature": "" }));
        }
        if let Some(t) = m.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(json!({ "type": "text", "text": t }));
        }
        for call in m
            .extra
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let f = call.get("function");
            let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
            content.push(json!({
                "type": "tool_use",
                "id": s(call.get("id")),
                "name": s(f.and_then(|f| f.get("name"))),
                "input": tool_input(&s(f.and_then(|f| f.get("arguments")))),
            }));
        }
    }
    MessagesResponse {
        id: message_id(&c.id),
        kind: "message".to_string(),
        role: "assistant".to_string(),
        model: model.to_string(),
        content,
        stop_reason: Some(reason.to_string()),
        stop_sequence: sequence,
        usage: c.usage.map(MessagesUsage::from).unwrap_or_default(),
    }
}

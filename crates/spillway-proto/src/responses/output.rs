//! The Response object: what a non-streamed create answers, and what the stream's
//! `response.created` / `response.completed` events carry.
use serde_json::{Value, json};

use super::Echo;
use crate::openai::{ChatCompletion, Usage};

/// The id of output item `index` of the response `echo.id` (`msg_…` / `fc_…`).
pub fn item_id(echo: &Echo, prefix: &str, index: usize) -> String {
    let base = echo.id.strip_prefix("resp_").unwrap_or(&echo.id);
    format!("{prefix}_{base}_{index}")
}

/// A finished assistant message item with its text.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [output_text(text)],
    })
}

/// An `output_text` content part.
pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// A function call item.
pub fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

/// The Response's `status` and `incomplete_details` for a chat finish reason.
pub fn status_of(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The Responses API's usage for a chat usage.
pub fn usage_of(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens().unwrap_or(0)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens,
    })
}

/// The parts of a Response object that vary.
pub struct State<'a> {
    pub model: &'a str,
    pub status: &'a str,
    pub output: Vec<Value>,
    pub usage: Option<&'a Usage>,
    pub incomplete_details: Value,
    pub error: Value,
}

/// A Response object.
pub fn response(echo: &Echo, s: State<'_>) -> Value {
    json!({
        "id": echo.id,
        "object": "response",
        "created_at": echo.created_at,
        "status": s.status,
        "error": s.error,
        "incomplete_details": s.incomplete_details,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": s.model,
        "output": s.output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": echo.temperature,
        "text": echo.text,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": "disabled",
        "usage": s.usage.map(usage_of),
        "user": echo.user,
        "metadata": echo.metadata,
    })
}

/// The Response object of a whole chat completion (its first choice).
pub fn response_object(echo: &Echo, c: &ChatCompletion) -> Value {
    let choice = c.choices.first();
    let text = choice
        .and_then(|ch| ch.message.content.as_deref())
        .unwrap_or("");
    let calls = choice
        .and_then(|ch| ch.message.extra.get("tool_calls"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut output = Vec::new();
    if !text.is_empty() || calls.is_empty() {
        output.push(message_item(&item_id(echo, "msg", 0), text, "completed"));
    }
    for call in &calls {
        let f = &call["function"];
        let id = item_id(echo, "fc", output.len());
        output.push(function_call_item(
            &id,
            call["id"].as_str().unwrap_or_default(),
            f["name"].as_str().unwrap_or_default(),
            f["arguments"].as_str().unwrap_or_default(),
            "completed",
        ));
    }
    let (status, incomplete_details) = status_of(choice.and_then(|ch| ch.finish_reason.as_deref()));
    response(
        echo,
        State {
            model: &c.model,
            status,
            output,
            usage: c.usage.as_ref(),
            incomplete_details,
            error: Value::Null,
        },
    )
}

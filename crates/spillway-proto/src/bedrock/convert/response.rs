//! Non-streaming responses, both ways.
use serde_json::{Map, Value, json};

use super::{
    finish_reason_to_stop_reason, reasoning_text, stop_reason_to_finish_reason, tool_use_to_call,
};
use crate::bedrock::converse::{
    ContentBlock, ConverseMetrics, ConverseOutput, ConverseResponse, Message, TokenUsage,
};
use crate::openai::{ChatCompletion, Choice, ResponseMessage};

/// An upstream's chat completion as a Converse response (choice 0; `latency_ms` is the gateway's
/// own measure).
///
/// The message's `reasoning_content` becomes a leading `reasoningContent` block, its content a
/// `text` block, its tool calls `toolUse` blocks (arguments that are not JSON are kept as a JSON
/// string). A message with none of these gets one empty `text` block, so that clients reading
/// `content[0].text` do not fail.
pub fn chat_completion_to_converse(c: &ChatCompletion, latency_ms: u64) -> ConverseResponse {
    let choice = c
        .choices
        .iter()
        .find(|ch| ch.index == 0)
        .or_else(|| c.choices.first());
    let mut content = Vec::new();
    let mut stop_reason = "end_turn";
    if let Some(choice) = choice {
        let msg = &choice.message;
        if let Some(r) = msg
            .extra
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            content.push(ContentBlock::Other(
                json!({ "reasoningContent": { "reasoningText": { "text": r } } }),
            ));
        }
        if let Some(text) = msg.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(ContentBlock::Text(text.to_string()));
        }
        for call in msg
            .extra
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            content.push(ContentBlock::ToolUse(call_to_tool_use_lenient(call)));
        }
        stop_reason = finish_reason_to_stop_reason(choice.finish_reason.as_deref());
        // vLLM names the stop string that ended the text; that is Converse's `stop_sequence`.
        if choice.finish_reason.as_deref() == Some("stop")
            && choice
                .extra
                .get("stop_reason")
                .is_some_and(Value::is_string)
        {
            stop_reason = "stop_sequence";
        }
    }
    if content.is_empty() {
        content.push(ContentBlock::Text(String::new()));
    }
    ConverseResponse {
        output: ConverseOutput {
            message: Message {
                role: "assistant".to_string(),
                content,
            },
        },
        stop_reason: stop_reason.to_string(),
        usage: c.usage.map(TokenUsage::from).unwrap_or_default(),
        metrics: ConverseMetrics { latency_ms },
    }
}

/// An OpenAI tool call → a `toolUse` object, never failing: a missing id or name becomes empty,
/// arguments that are not JSON are kept as a string.
fn call_to_tool_use_lenient(call: &Value) -> Value {
    let function = call.get("function");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let arguments = text(function.and_then(|f| f.get("arguments")));
    let input = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&arguments).unwrap_or(Value::String(arguments))
    };
    json!({
        "toolUseId": text(call.get("id")),
        "name": text(function.and_then(|f| f.get("name"))),
        "input": input,
    })
}

/// A Converse response as a chat completion.
///
/// Text blocks are concatenated into `content` (as a stream's deltas would be); `toolUse` blocks
/// become `tool_calls` (and `content` is null when there is no text); `reasoningContent` becomes
/// `reasoning_content`; other blocks are dropped.
pub fn converse_to_chat_completion(
    r: &ConverseResponse,
    model: &str,
    id: &str,
    created: u64,
) -> ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in &r.output.message.content {
        match block {
            ContentBlock::Text(t) => text.push_str(t),
            ContentBlock::ToolUse(u) => {
                if let Ok(call) = tool_use_to_call(u) {
                    calls.push(call);
                }
            }
            ContentBlock::Other(v) => {
                if let Some(t) = v.get("reasoningContent").and_then(reasoning_text) {
                    reasoning.push_str(t);
                }
            }
            ContentBlock::ToolResult(_) => {}
        }
    }
    let mut extra = Map::new();
    if !reasoning.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(text)
    };
    if !calls.is_empty() {
        extra.insert("tool_calls".into(), Value::Array(calls));
    }
    ChatCompletion {
        id: id.to_string(),
        object: "chat.completion".to_string(),
        created,
        model: model.to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_string(),
                content,
                extra,
            },
            finish_reason: Some(stop_reason_to_finish_reason(&r.stop_reason).to_string()),
            extra: Map::new(),
        }],
        usage: Some(r.usage.into()),
        extra: Map::new(),
    }
}

//! Conversion between Bedrock Converse and the canonical (OpenAI chat) model, both ways.
//!
//! Bedrock client → any upstream: [`converse_to_chat`] turns a Converse request into a
//! [`ChatRequest`](crate::openai::ChatRequest); [`chat_completion_to_converse`] and [`ChunksToConverse`] turn the upstream's
//! answer back into a Converse response or ConverseStream events.
//!
//! OpenAI client → `bedrock` upstream: [`chat_to_converse`] builds the Converse request;
//! [`converse_to_chat_completion`] and [`ConverseToChunks`] turn Bedrock's answer back.
//!
//! # How it maps
//!
//! | Converse | OpenAI chat |
//! | --- | --- |
//! | `system: [{text}]` | one leading `system` message (several blocks: text parts) |
//! | `{text}` blocks of a message | `content`: a string, or text parts when there are several |
//! | assistant `{toolUse: {toolUseId, name, input}}` | `tool_calls: [{id, type: function, function: {name, arguments: <input as JSON text>}}]` |
//! | user `{toolResult: {toolUseId, content}}` | a `tool` message `{tool_call_id, content}`, placed before the user's text |
//! | `inferenceConfig.maxTokens`, `temperature`, `topP`, `stopSequences` | `max_tokens`, `temperature`, `top_p`, `stop` |
//! | `toolConfig.tools[].toolSpec{name, description, inputSchema.json}` | `tools[]: {type: function, function: {name, description, parameters}}` |
//! | `toolChoice` `auto` / `any` / `tool{name}` | `tool_choice` `auto` / `required` / `{type: function, function: {name}}` |
//! | `additionalModelRequestFields` (object) | merged into the request's top level (never over a field set above) |
//! | `stopReason` `end_turn` / `max_tokens` / `tool_use` / `content_filtered` | `finish_reason` `stop` / `length` / `tool_calls` / `content_filter` |
//! | `usage{inputTokens, outputTokens, totalTokens}` | `usage{prompt_tokens, completion_tokens, total_tokens}` |
//! | `reasoningContent` (responses, deltas) | `reasoning_content` (the vLLM / DeepSeek field) |
//!
//! # Where it is lossy
//!
//! Converse → OpenAI:
//! * `image`, `document`, `video`, `guardContent` and other blocks are refused (`Validation`),
//!   both in messages and in tool results; `cachePoint` blocks are dropped (a caching hint), and
//!   so are `reasoningContent` blocks of earlier assistant turns (OpenAI has no place for them).
//! * System blocks other than `text` (`guardContent`, `cachePoint`) are dropped.
//! * A tool result's `status` (`error`) is dropped; its `json` blocks become JSON text.
//! * `guardrailConfig`, `requestMetadata`, `promptVariables`, `performanceConfig`,
//!   `additionalModelResponseFieldPaths` (the request's `extra`) and `guardContent` system
//!   blocks have no OpenAI equivalent: they ride in `ChatRequest::bedrock_only` to a `bedrock`
//!   upstream, and the gateway refuses them when an OpenAI-compatible upstream could serve the
//!   request (see `carry`).
//! * Several text blocks of one *response* are concatenated into one `content` string.
//! * `stop_sequence` cannot be told from `end_turn` in an OpenAI answer unless the upstream says
//!   which stop string matched (vLLM's `stop_reason`); otherwise `stop` maps to `end_turn`.
//!
//! OpenAI → Converse:
//! * `system` and `developer` messages are hoisted into `system`, wherever they were.
//! * Consecutive messages of one role are merged (Converse wants turns to alternate); `tool`
//!   messages become `toolResult` blocks of a user turn.
//! * Image and audio parts are refused; `n` > 1 is refused (Converse returns one message).
//! * `tool_choice: "none"` keeps the tools but sets no choice (Converse has no "none").
//! * Sampling and output options Converse has no field for (`seed`, `presence_penalty`,
//!   `frequency_penalty`, `logprobs`, `response_format`, …) are not carried: the gateway
//!   refuses them, by name, for a `bedrock` upstream (`carry::converse_cannot_carry`); `user`
//!   is not sent, and `metadata` becomes `requestMetadata`.
//! * Tool-call arguments that are not valid JSON are refused in requests; in responses they are
//!   kept as a JSON string `input`.
//!
//! Streams: only choice 0 of an OpenAI stream is converted; a tool call's argument fragments
//! keep their block index even if another block started in between; a stream that ends without
//! a usage chunk reports zero usage in `metadata`.
mod carry;
mod request;
mod response;
mod stream;

pub use carry::{bedrock_only_fields, converse_cannot_carry};
pub use request::{chat_to_converse, converse_to_chat};
pub use response::{chat_completion_to_converse, converse_to_chat_completion};
pub use stream::{ChunksToConverse, ConverseToChunks};

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

use serde_json::{Value, json};

/// OpenAI `finish_reason` → Converse `stopReason`.
pub fn finish_reason_to_stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "content_filtered",
        _ => "end_turn",
    }
}

/// Converse `stopReason` → OpenAI `finish_reason`.
pub fn stop_reason_to_finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

/// A `toolUse` object → an OpenAI tool call.
fn tool_use_to_call(tool_use: &Value) -> Result<Value, String> {
    let id = str_field(tool_use, "toolUseId")?;
    let name = str_field(tool_use, "name")?;
    let input = tool_use.get("input").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "id": id,
        "type": "function",
        "function": { "name": name, "arguments": input.to_string() },
    }))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}` is missing or not a string"))
}

/// The text of a `reasoningContent` block or delta (`{"reasoningText": {"text"}}` in a block,
/// `{"text"}` in a delta).
fn reasoning_text(reasoning: &Value) -> Option<&str> {
    reasoning
        .get("reasoningText")
        .and_then(|r| r.get("text"))
        .or_else(|| reasoning.get("text"))
        .and_then(Value::as_str)
}

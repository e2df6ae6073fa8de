//! Anthropic Messages (`POST /v1/messages`, and the InvokeModel body of Anthropic models on
//! Bedrock) converted through the canonical (OpenAI chat) model, so that any upstream serves it.
//!
//! * [`request`]: the Messages request → [`ChatRequest`](crate::openai::ChatRequest)
//!   ([`MessagesRequest::to_chat`]), refusing what the canonical model cannot carry;
//! * [`response`]: a [`ChatCompletion`](crate::openai::ChatCompletion) → the Messages response;
//! * [`stream`]: canonical chunks → the Messages stream events, in Anthropic's order
//!   ([`ChunksToAnthropic`], a stateful encoder);
//! * [`error`]: [`AnthropicError`] and Anthropic's error body.
//!
//! # How it maps
//!
//! | Messages | OpenAI chat |
//! | --- | --- |
//! | `system` (a string or text blocks) | one leading `system` message |
//! | user `text` / `image` blocks | `content`: a string, or `text` / `image_url` parts (base64 sources as `data:` URLs) |
//! | user `tool_result{tool_use_id, content, is_error}` | a `tool` message `{tool_call_id, content}` before the user's text; `is_error: true` starts the content with `Error: ` |
//! | assistant `tool_use{id, name, input}` | `tool_calls: [{id, type: function, function: {name, arguments: <input as JSON text>}}]` |
//! | `max_tokens` (required), `temperature`, `top_p`, `top_k`, `stop_sequences` | `max_tokens`, `temperature`, `top_p`, `top_k` (vLLM's extension), `stop` |
//! | `metadata.user_id` | `user` |
//! | `tools[]{name, description, input_schema}` | `tools[]{type: function, function: {name, description, parameters}}` |
//! | `tool_choice` `auto` / `any` / `tool{name}` / `none`, `disable_parallel_tool_use` | `tool_choice` `auto` / `required` / `{type: function, function: {name}}` / `none`, `parallel_tool_calls: false` |
//! | `stop_reason` `end_turn` / `max_tokens` / `tool_use` / `stop_sequence` / `refusal` | `finish_reason` `stop` / `length` / `tool_calls` / `stop` with vLLM's `stop_reason` string / `content_filter` |
//! | `usage{input_tokens, output_tokens}` | `usage{prompt_tokens, completion_tokens}` |
//! | `thinking` blocks of an answer | `reasoning_content` (the vLLM / DeepSeek field), with an empty signature |
//!
//! # What is refused (400 naming the field), never dropped
//!
//! Unknown top-level fields; `thinking` other than `{"type": "disabled"}`; a non-empty
//! `anthropic_beta`; `service_tier` other than `auto` / `standard_only`; `metadata` keys other
//! than `user_id`; server tools (a tool `type` other than `custom`) and unknown tool keys;
//! `document`, `thinking`, `search_result` and other blocks; image sources other than `base64`
//! and `url`; images inside a `tool_result`; non-empty `citations`. In an InvokeModel body
//! (`Flavor::Bedrock`) `model` and `stream` are refused (Bedrock refuses them too) and
//! `anthropic_version` is required: `bedrock-2023-05-31`, or the dated API version the
//! Anthropic SDK's `AnthropicBedrock` sends (any non-empty string).
//!
//! `cache_control` on blocks and tools is accepted and not passed on: it is a prompt-caching
//! hint, and the answer does not depend on it.
//!
//! # Streams
//!
//! Only choice 0 of a canonical stream is encoded. A tool call's argument fragments go to its
//! `tool_use` block while it is the open one; an upstream that interleaves the fragments of
//! several calls (none known does) loses those that arrive after their block closed.
pub mod error;
pub mod request;
pub mod response;
pub mod stream;
mod tools;

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

pub use error::{AnthropicError, AnthropicErrorBody};
pub use request::{BEDROCK_VERSION, Content, Flavor, InputMessage, MessagesRequest};
pub use response::{MessagesResponse, MessagesUsage, chat_completion_to_message, message_id};
pub use stream::{ChunksToAnthropic, encode_sse_event};

use serde_json::{Map, Value};

/// A canonical `finish_reason` (and the choice's other fields, for vLLM's `stop_reason`: the
/// stop string that matched) → Anthropic's `stop_reason` and `stop_sequence`.
pub fn stop_reason(
    finish_reason: Option<&str>,
    choice_extra: &Map<String, Value>,
) -> (&'static str, Option<String>) {
    match finish_reason {
        Some("length") => ("max_tokens", None),
        Some("tool_calls" | "function_call") => ("tool_use", None),
        Some("content_filter") => ("refusal", None),
        Some("stop") => match choice_extra.get("stop_reason").and_then(Value::as_str) {
            Some(s) => ("stop_sequence", Some(s.to_string())),
            None => ("end_turn", None),
        },
        _ => ("end_turn", None),
    }
}

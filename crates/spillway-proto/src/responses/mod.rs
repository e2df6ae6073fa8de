//! OpenAI Responses API (`POST /v1/responses`), the subset that maps onto chat completions.
//!
//! Spillway routes one canonical request, the chat-completions one; a Responses request is
//! converted into it ([`ResponsesRequest::to_chat`]) and its answer converted back: a whole
//! [`ChatCompletion`] into a Response object ([`output::response_object`]), a stream of
//! [`crate::ChatChunk`]s into the Responses API's typed events ([`stream::ChunksToEvents`]).
//!
//! What maps: `input` as a string or a list of items (messages whose content is a string or
//! `input_text` / `output_text` / `input_image` parts, `function_call` and
//! `function_call_output` items), `instructions` (a leading system message),
//! `max_output_tokens`, `temperature`, `top_p`, function `tools`, `tool_choice`,
//! `parallel_tool_calls`, `text.format` (text, JSON object, JSON schema), `stream`, `user` and
//! `metadata` (echoed in the answer, not sent upstream). What does not — `previous_response_id`,
//! `conversation`, `store: true`, `background`, built-in tools, `reasoning`, `include`, and any
//! field this module does not know — is refused with the field's name ([`Unsupported`]), never
//! dropped: a client that relies on it must learn that it was not honoured.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::openai::{ChatMessage, ChatRequest, MessageContent};

pub mod output;
pub mod stream;

mod items;

pub use output::response_object;
pub use stream::ChunksToEvents;

/// A Responses create request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: ResponsesInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: a string (one user message) or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponsesInput {
    Text(String),
    Items(Vec<Value>),
}

/// A field (or value) of the request that Spillway cannot honour, named as OpenAI's `param`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unsupported {
    pub message: String,
    pub param: String,
}

pub(crate) fn unsupported(param: impl Into<String>, why: impl Into<String>) -> Unsupported {
    Unsupported {
        param: param.into(),
        message: why.into(),
    }
}

/// What the answer echoes of the request (OpenAI's Response object repeats these).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Echo {
    /// The Response's id (`resp_…`), made by the gateway.
    pub id: String,
    pub created_at: u64,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub metadata: Map<String, Value>,
    pub user: Option<String>,
    pub text: Value,
}

/// Fields that are accepted with a value that changes nothing here.
fn harmless(name: &str, v: &Value) -> bool {
    match name {
        "store" => v.is_null() || *v == Value::Bool(false),
        "background" => v.is_null() || *v == Value::Bool(false),
        "truncation" => v.is_null() || v.as_str() == Some("disabled"),
        "service_tier" => v.is_null() || matches!(v.as_str(), Some("auto" | "default")),
        "include" => v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "reasoning" | "previous_response_id" | "conversation" | "prompt" => v.is_null(),
        "stream_options" => v.is_null() || v.is_object(),
        _ => false,
    }
}

/// Why a field is refused, for the ones a client is likely to send.
fn refusal_of(name: &str) -> String {
    let why = match name {
        "previous_response_id" | "conversation" => {
            "Spillway does not store responses; send the whole conversation in `input`"
        }
        "store" => {
            "Spillway does not store responses for later retrieval; omit it or set it to false"
        }
        "background" => "background responses are not supported",
        "reasoning" => "reasoning options are not supported by the models Spillway routes",
        "include" => "no extra output can be included",
        _ => "this field is not supported by Spillway's Responses API",
    };
    format!("`{name}`: {why}.")
}

impl ResponsesRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The canonical chat request for this one (with `model` as named), or the first field
    /// that cannot be honoured.
    pub fn to_chat(&self) -> Result<ChatRequest, Unsupported> {
        if let Some((name, _)) = self.extra.iter().find(|(k, v)| !harmless(k, v)) {
            return Err(unsupported(name.clone(), refusal_of(name)));
        }
        let mut messages = Vec::new();
        if let Some(i) = &self.instructions {
            messages.push(ChatMessage {
                role: "system".into(),
                content: Some(MessageContent::Text(i.clone())),
                extra: Map::new(),
            });
        }
        match &self.input {
            ResponsesInput::Text(t) => messages.push(ChatMessage {
                role: "user".into(),
                content: Some(MessageContent::Text(t.clone())),
                extra: Map::new(),
            }),
            ResponsesInput::Items(items) => items::to_messages(items, &mut messages)?,
        }
        if messages.is_empty() {
            return Err(unsupported(
                "input",
                "`input` must contain at least one item.",
            ));
        }
        let mut extra = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                extra.insert(k.to_string(), v);
            }
        };
        put("temperature", self.temperature.map(|t| json!(t)));
        put("top_p", self.top_p.map(|t| json!(t)));
        put("user", self.user.clone().map(Value::String));
        put(
            "parallel_tool_calls",
            self.parallel_tool_calls.map(Value::Bool),
        );
        if let Some(tools) = &self.tools
            && !tools.is_empty()
        {
            put("tools", Some(items::tools(tools)?));
        }
        put(
            "tool_choice",
            self.tool_choice
                .as_ref()
                .map(items::tool_choice)
                .transpose()?,
        );
        put(
            "response_format",
            self.text
                .as_ref()
                .map(items::text_format)
                .transpose()?
                .flatten(),
        );
        Ok(ChatRequest {
            model: self.model.clone(),
            messages,
            stream: self.stream,
            stream_options: None,
            max_tokens: None,
            max_completion_tokens: self.max_output_tokens,
            extra,
            bedrock_only: Map::new(),
        })
    }

    /// What the answer echoes, under the Response id `id`.
    pub fn echo(&self, id: String, created_at: u64) -> Echo {
        Echo {
            id,
            created_at,
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            tools: self.tools.clone().unwrap_or_default(),
            tool_choice: self.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            metadata: self.metadata.clone().unwrap_or_default(),
            user: self.user.clone(),
            text: self
                .text
                .clone()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        }
    }
}

#[cfg(test)]
mod tests;

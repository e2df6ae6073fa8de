//! Requests: an Anthropic Messages body → the canonical chat request ([`MessagesRequest::to_chat`]).
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::AnthropicError;
use super::tools::{tool_choice_to_chat, tool_to_chat};
use crate::openai::{ChatMessage, ChatRequest, MessageContent, StreamOptions};

/// The `anthropic_version` Bedrock requires in an InvokeModel body.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";

/// Where a Messages body came from: the rules for `model`, `stream` and `anthropic_version`
/// differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `POST /v1/messages`: `model` and `stream` in the body.
    Api,
    /// An InvokeModel body: the model is in the path, streaming is the operation, and
    /// `anthropic_version` is set (`bedrock-2023-05-31`, or the SDK's API version).
    Bedrock,
}

/// A Messages request as the client sent it. Unknown top-level fields are refused by serde with
/// an error naming them; the content blocks are read by hand so that their errors carry the
/// path of the block (`messages[2].content[0]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub system: Option<Content>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u64>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub anthropic_version: Option<String>,
    #[serde(default)]
    pub anthropic_beta: Option<Vec<String>>,
    #[serde(default)]
    pub thinking: Option<Value>,
    #[serde(default)]
    pub service_tier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    pub role: String,
    pub content: Content,
}

/// A string, or an array of content blocks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl MessagesRequest {
    /// Whether the client asked for a stream (`/v1/messages` only; Invoke says it by its path).
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The canonical request for `model` (`stream`: asked as a stream with its usage chunk).
    pub fn to_chat(
        &self,
        flavor: Flavor,
        model: &str,
        stream: bool,
    ) -> Result<ChatRequest, AnthropicError> {
        self.check_top_level(flavor)?;
        let max_tokens = match self.max_tokens {
            None => return Err(invalid("max_tokens: Field required")),
            Some(0) => return Err(invalid("max_tokens: must be at least 1")),
            Some(n) => n,
        };
        if self.messages.is_empty() {
            return Err(invalid("messages: at least one message is required"));
        }
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            let texts = system_texts(system)?;
            if !texts.is_empty() {
                messages.push(message("system", Some(text_content(texts)), Map::new()));
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            let at = format!("messages[{i}]");
            match m.role.as_str() {
                "user" => user_to_chat(&at, &m.content, &mut messages)?,
                "assistant" => messages.push(assistant_to_chat(&at, &m.content)?),
                other => {
                    return Err(invalid(format!(
                        "{at}.role: `{other}` is not one of user, assistant"
                    )));
                }
            }
        }
        Ok(ChatRequest {
            model: model.to_string(),
            messages,
            stream: stream.then_some(true),
            stream_options: stream.then(|| StreamOptions {
                include_usage: Some(true),
                extra: Map::new(),
            }),
            max_tokens: Some(max_tokens),
            max_completion_tokens: None,
            extra: self.options()?,
            bedrock_only: Map::new(),
        })
    }

    /// The fields that only say where the body came from, and those no upstream can honour.
    fn check_top_level(&self, flavor: Flavor) -> Result<(), AnthropicError> {
        match flavor {
            Flavor::Api => {
                if self.model.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid("model: Field required"));
                }
            }
            Flavor::Bedrock => {
                if self.model.is_some() {
                    return Err(invalid(
                        "model: not permitted in an InvokeModel body (the model is in the path)",
                    ));
                }
                if self.stream.is_some() {
                    return Err(invalid(
                        "stream: not permitted in an InvokeModel body (use InvokeModelWithResponseStream)",
                    ));
                }
                // Bedrock's documented value is `bedrock-2023-05-31`; the Anthropic SDK's
                // `AnthropicBedrock` sends its own API version when none is given. Either says
                // "the Messages API": any non-empty version is accepted.
                if self.anthropic_version.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(format!(
                        "anthropic_version: Field required (e.g. \"{BEDROCK_VERSION}\")"
                    )));
                }
            }
        }
        if self.anthropic_beta.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(invalid("anthropic_beta: beta features are not supported"));
        }
        match &self.thinking {
            None | Some(Value::Null) => {}
            Some(t) if t.get("type").and_then(Value::as_str) == Some("disabled") => {}
            Some(_) => return Err(invalid("thinking: extended thinking is not supported")),
        }
        match self.service_tier.as_deref() {
            None | Some("auto" | "standard_only") => Ok(()),
            Some(other) => Err(invalid(format!(
                "service_tier: `{other}` is not supported (auto or standard_only)"
            ))),
        }
    }

    /// Sampling, stop sequences, metadata and tools as the canonical request's extra fields.
    fn options(&self) -> Result<Map<String, Value>, AnthropicError> {
        let mut extra = Map::new();
        if let Some(t) = self.temperature {
            extra.insert("temperature".into(), json!(t));
        }
        if let Some(p) = self.top_p {
            extra.insert("top_p".into(), json!(p));
        }
        if let Some(k) = self.top_k {
            extra.insert("top_k".into(), json!(k));
        }
        if let Some(stop) = self.stop_sequences.as_ref().filter(|s| !s.is_empty()) {
            extra.insert("stop".into(), json!(stop));
        }
        if let Some(meta) = &self.metadata {
            for (k, v) in meta {
                match (k.as_str(), v) {
                    ("user_id", Value::String(u)) => {
                        extra.insert("user".into(), json!(u));
                    }
                    ("user_id", Value::Null) => {}
                    _ => return Err(invalid(format!("metadata.{k}: not supported"))),
                }
            }
        }
        if let Some(tools) = &self.tools {
            let tools = tools
                .iter()
                .enumerate()
                .map(|(i, t)| tool_to_chat(i, t))
                .collect::<Result<Vec<_>, _>>()?;
            if !tools.is_empty() {
                extra.insert("tools".into(), Value::Array(tools));
            }
        }
        if let Some(choice) = &self.tool_choice {
            tool_choice_to_chat(choice, &mut extra)?;
        }
        Ok(extra)
    }
}

pub(super) fn invalid(message: impl Into<String>) -> AnthropicError {
    AnthropicError::invalid(message)
}

fn message(role: &str, content: Option<MessageContent>, extra: Map<String, Value>) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content,
        extra,
    }
}

/// One string, or text parts when there are several.
fn text_content(texts: Vec<String>) -> MessageContent {
    if texts.len() == 1 {
        MessageContent::Text(texts.into_iter().next().unwrap_or_default())
    } else {
        MessageContent::Parts(texts.into_iter().map(text_part).collect())
    }
}

fn text_part(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

/// The block's `type`, after checking that it has no keys beyond `allowed` (and `type`).
pub(super) fn block_type<'a>(
    at: &str,
    block: &'a Value,
    allowed: &[&str],
) -> Result<&'a str, AnthropicError> {
    let obj = block
        .as_object()
        .ok_or_else(|| invalid(format!("{at}: a content block must be an object")))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.type: Field required")))?;
    if let Some(k) = obj
        .keys()
        .find(|k| k.as_str() != "type" && !allowed.contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "{at}.{k}: not supported in a {kind} block"
        )));
    }
    Ok(kind)
}

/// A block's `type`, before its keys are checked against the type's own.
fn kind_of<'a>(at: &str, block: &'a Value) -> Result<&'a str, AnthropicError> {
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.type: Field required")))
}

pub(super) fn str_field<'a>(at: &str, v: &'a Value, key: &str) -> Result<&'a str, AnthropicError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.{key}: Field required (a string)")))
}

/// `cache_control` is a caching hint (the answer does not depend on it); citations on a text
/// block the client sends are accepted only when empty.
const TEXT_KEYS: &[&str] = &["text", "cache_control", "citations"];

fn text_of(at: &str, block: &Value) -> Result<String, AnthropicError> {
    if block
        .get("citations")
        .is_some_and(|c| !c.is_null() && c.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(invalid(format!("{at}.citations: not supported")));
    }
    str_field(at, block, "text").map(str::to_string)
}

fn system_texts(system: &Content) -> Result<Vec<String>, AnthropicError> {
    match system {
        Content::Text(t) => Ok(vec![t.clone()]),
        Content::Blocks(blocks) => blocks
            .iter()
            .enumerate()
            .map(|(j, b)| {
                let at = format!("system[{j}]");
                match block_type(&at, b, TEXT_KEYS)? {
                    "text" => text_of(&at, b),
                    other => Err(invalid(format!(
                        "{at}.type: `{other}` is not supported in system"
                    ))),
                }
            })
            .collect(),
    }
}

/// A user turn: its `tool_result` blocks become `tool` messages (first, as OpenAI wants them
/// right after the assistant's calls), its text and images one user message.
fn user_to_chat(
    at: &str,
    content: &Content,
    out: &mut Vec<ChatMessage>,
) -> Result<(), AnthropicError> {
    let blocks = match content {
        Content::Text(t) => {
            out.push(message(
                "user",
                Some(MessageContent::Text(t.clone())),
                Map::new(),
            ));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    let mut results = 0;
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match kind_of(&at, b)? {
            "text" => {
                block_type(&at, b, TEXT_KEYS)?;
                parts.push(text_part(text_of(&at, b)?));
            }
            "image" => parts.push(image_to_chat(&at, b)?),
            "tool_result" => {
                out.push(tool_result_to_chat(&at, b)?);
                results += 1;
            }
            "tool_use" => {
                return Err(invalid(format!(
                    "{at}.type: tool_use blocks belong in assistant messages"
                )));
            }
            other => {
                return Err(invalid(format!("{at}.type: `{other}` is not supported")));
            }
        }
    }
    if parts.is_empty() {
        if results == 0 {
            return Err(invalid(format!("{at}.content: must not be empty")));
        }
        return Ok(());
    }
    let content = if parts.iter().all(|p| p["type"] == "text") {
        text_content(
            parts
                .into_iter()
                .map(|p| p["text"].as_str().unwrap_or_default().to_string())
                .collect(),
        )
    } else {
        MessageContent::Parts(parts)
    };
    out.push(message("user", Some(content), Map::new()));
    Ok(())
}

/// An image block as an OpenAI `image_url` part (base64 sources as a `data:` URL).
fn image_to_chat(at: &str, block: &Value) -> Result<Value, AnthropicError> {
    block_type(at, block, &["source", "cache_control"])?;
    let source = block
        .get("source")
        .ok_or_else(|| invalid(format!("{at}.source: Field required")))?;
    let at = format!("{at}.source");
    let url = match str_field(&at, source, "type")? {
        "base64" => {
            block_type(&at, source, &["media_type", "data"])?;
            let media = str_field(&at, source, "media_type")?;
            let data = str_field(&at, source, "data")?;
            format!("data:{media};base64,{data}")
        }
        "url" => {
            block_type(&at, source, &["url"])?;
            str_field(&at, source, "url")?.to_string()
        }
        other => {
            return Err(invalid(format!("{at}.type: `{other}` is not supported")));
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// A `tool_result` block as a `tool` message. OpenAI has no error flag: `is_error: true` is kept
/// by starting the content with `Error: `.
fn tool_result_to_chat(at: &str, block: &Value) -> Result<ChatMessage, AnthropicError> {
    block_type(
        at,
        block,
        &["tool_use_id", "content", "is_error", "cache_control"],
    )?;
    let id = str_field(at, block, "tool_use_id")?;
    let mut texts = Vec::new();
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => texts.push(s.clone()),
        Some(Value::Array(parts)) => {
            for (k, p) in parts.iter().enumerate() {
                let at = format!("{at}.content[{k}]");
                match block_type(&at, p, TEXT_KEYS)? {
                    "text" => texts.push(text_of(&at, p)?),
                    other => {
                        return Err(invalid(format!(
                            "{at}.type: `{other}` is not supported in a tool_result"
                        )));
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "{at}.content: must be a string or an array of blocks"
            )));
        }
    }
    let mut text = texts.join("\n");
    match block.get("is_error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => text = format!("Error: {text}"),
        Some(_) => return Err(invalid(format!("{at}.is_error: must be a boolean"))),
    }
    let mut extra = Map::new();
    extra.insert("tool_call_id".into(), json!(id));
    Ok(message("tool", Some(MessageContent::Text(text)), extra))
}

fn assistant_to_chat(at: &str, content: &Content) -> Result<ChatMessage, AnthropicError> {
    let blocks = match content {
        Content::Text(t) => {
            return Ok(message(
                "assistant",
                Some(MessageContent::Text(t.clone())),
                Map::new(),
            ));
        }
        Content::Blocks(b) => b,
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match kind_of(&at, b)? {
            "text" => {
                block_type(&at, b, TEXT_KEYS)?;
                texts.push(text_of(&at, b)?);
            }
            "tool_use" => {
                block_type(&at, b, &["id", "name", "input", "cache_control"])?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": str_field(&at, b, "id")?,
                    "type": "function",
                    "function": { "name": str_field(&at, b, "name")?, "arguments": input.to_string() },
                }));
            }
            other => {
                return Err(invalid(format!(
                    "{at}.type: `{other}` is not supported in assistant messages"
                )));
            }
        }
    }
    let content = if !texts.is_empty() {
        Some(text_content(texts))
    } else if calls.is_empty() {
        Some(MessageContent::Text(String::new()))
    } else {
        None
    };
    let mut extra = Map::new();
    if !calls.is_empty() {
        extra.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(message("assistant", content, extra))
}

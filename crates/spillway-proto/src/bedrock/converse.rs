//! Bedrock Converse and ConverseStream shapes (`POST /model/{modelId}/converse`,
//! `/converse-stream`), camelCase as on the wire.
//!
//! A Converse request carries `messages` (each a `role` and a list of content blocks), an optional
//! `system` list, `inferenceConfig` (`maxTokens`, `temperature`, `topP`, `stopSequences`),
//! `toolConfig`, `additionalModelRequestFields`, and more (`guardrailConfig`, `requestMetadata`,
//! `additionalModelResponseFieldPaths`, …) that [`ConverseRequest::extra`] keeps verbatim.
//!
//! A content block is a union: an object with exactly one key (`text`, `toolUse`, `toolResult`,
//! `image`, `document`, `reasoningContent`, `cachePoint`, …). [`ContentBlock`] names the three
//! the gateway converts and keeps every other block as its whole JSON object.
//!
//! ConverseStream answers with an event stream whose events are `messageStart`,
//! `contentBlockStart` (tool use only), `contentBlockDelta`, `contentBlockStop`, `messageStop`
//! and `metadata`; [`ConverseStreamEvent`] is one of them, with its frame payload.
//!
//! Lossy on parse: fields of a response, of `usage` and of stream events that are not named here
//! (`additionalModelResponseFields`, `trace`, `performanceConfig`, cache token counts, the `p`
//! padding field) are dropped.
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::error::BedrockError;
use crate::openai::Usage;

/// A Converse or ConverseStream request body (the model is in the path).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    /// Missing `messages` parses as empty (and is then refused by the conversion, with a clearer
    /// message than a parse error).
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Vec<SystemContentBlock>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
    /// Everything else the client sent (`guardrailConfig`, `requestMetadata`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One conversation turn: `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Vec<ContentBlock>,
}

/// A content block: a JSON object with exactly one key.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    /// `{"text": "..."}`
    Text(String),
    /// `{"toolUse": {"toolUseId", "name", "input"}}`; holds the inner object.
    ToolUse(Value),
    /// `{"toolResult": {"toolUseId", "content": [...], "status"}}`; holds the inner object.
    ToolResult(Value),
    /// Any other block (`image`, `document`, `reasoningContent`, `cachePoint`, …); holds the
    /// whole one-key object, serialised back as is.
    Other(Value),
}

impl ContentBlock {
    /// The block's key: `text`, `toolUse`, `toolResult`, or the key of an `Other` block.
    pub fn kind(&self) -> &str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::ToolUse(_) => "toolUse",
            ContentBlock::ToolResult(_) => "toolResult",
            ContentBlock::Other(v) => v
                .as_object()
                .and_then(|m| m.keys().next())
                .map_or("unknown", String::as_str),
        }
    }

    /// The text of a `Text` block.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentBlock::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The block as its JSON object.
    pub fn to_value(&self) -> Value {
        match self {
            ContentBlock::Text(t) => json!({ "text": t }),
            ContentBlock::ToolUse(v) => json!({ "toolUse": v }),
            ContentBlock::ToolResult(v) => json!({ "toolResult": v }),
            ContentBlock::Other(v) => v.clone(),
        }
    }

    /// Parses a block from its JSON object; anything but an object with exactly one key is an
    /// error, as is a `text` that is not a string.
    pub fn from_value(v: Value) -> Result<Self, String> {
        let Value::Object(map) = v else {
            return Err("a content block must be a JSON object".to_string());
        };
        if map.len() != 1 {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(format!(
                "a content block must have exactly one key, found {}: [{}]",
                keys.len(),
                keys.join(", ")
            ));
        }
        let Some((key, value)) = map.iter().next() else {
            return Err("a content block must have exactly one key".to_string());
        };
        match key.as_str() {
            "text" => match value {
                Value::String(s) => Ok(ContentBlock::Text(s.clone())),
                _ => Err("content block `text` must be a string".to_string()),
            },
            "toolUse" => Ok(ContentBlock::ToolUse(value.clone())),
            "toolResult" => Ok(ContentBlock::ToolResult(value.clone())),
            _ => Ok(ContentBlock::Other(Value::Object(map))),
        }
    }
}

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(deserializer)?;
        ContentBlock::from_value(v).map_err(D::Error::custom)
    }
}

/// A `system` block: `{"text": "..."}`, or `guardContent` / `cachePoint` kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemContentBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SystemContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        SystemContentBlock {
            text: Some(text.into()),
            extra: Map::new(),
        }
    }
}

/// `inferenceConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

/// A Converse response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: ConverseOutput,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, `guardrail_intervened`,
    /// `content_filtered`, …
    pub stop_reason: String,
    pub usage: TokenUsage,
    pub metrics: ConverseMetrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConverseOutput {
    pub message: Message,
}

/// `usage` of a response or of the stream's `metadata` event. As Bedrock reports it,
/// `inputTokens` leave out the prompt tokens read from a cache (`cacheReadInputTokens`) and
/// written to one (`cacheWriteInputTokens`); `totalTokens` counts all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "cache_count"
    )]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "cache_count"
    )]
    pub cache_write_input_tokens: Option<u64>,
}

/// A cache count read leniently: a whole number, else none (a malformed optional count is no
/// reason to refuse the upstream's answer).
fn cache_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| v.as_u64()))
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        let cached = u.cached_tokens();
        TokenUsage {
            input_tokens: u.prompt_tokens - cached.unwrap_or(0),
            output_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            cache_read_input_tokens: cached,
            cache_write_input_tokens: None,
        }
    }
}

/// The canonical usage counts every prompt token (OpenAI's convention): read from a cache,
/// written to one, or neither.
impl From<TokenUsage> for Usage {
    fn from(u: TokenUsage) -> Self {
        let read = u.cache_read_input_tokens.unwrap_or(0);
        let prompt = u
            .input_tokens
            .saturating_add(read)
            .saturating_add(u.cache_write_input_tokens.unwrap_or(0));
        Usage {
            prompt_tokens: prompt,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens.max(prompt.saturating_add(u.output_tokens)),
            prompt_tokens_details: u
                .cache_read_input_tokens
                .map(|cached_tokens| crate::openai::PromptTokensDetails { cached_tokens }),
        }
    }
}

/// `metrics` of a response or of the stream's `metadata` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseMetrics {
    pub latency_ms: u64,
}

/// One ConverseStream event. `start` and `delta` hold Bedrock's unions as JSON
/// (`{"toolUse": {"toolUseId", "name"}}`; `{"text": "..."}` or `{"toolUse": {"input": "..."}}`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConverseStreamEvent {
    MessageStart {
        role: String,
    },
    ContentBlockStart {
        content_block_index: u32,
        start: Value,
    },
    ContentBlockDelta {
        content_block_index: u32,
        delta: Value,
    },
    ContentBlockStop {
        content_block_index: u32,
    },
    MessageStop {
        stop_reason: String,
    },
    Metadata {
        usage: TokenUsage,
        metrics: ConverseMetrics,
    },
}

// Frame payloads as Bedrock sends them; unknown fields (`p`, `trace`, …) are ignored.
#[derive(Deserialize)]
struct MessageStartBody {
    role: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStartBody {
    content_block_index: u32,
    start: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDeltaBody {
    content_block_index: u32,
    delta: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStopBody {
    content_block_index: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStopBody {
    stop_reason: String,
}

#[derive(Deserialize)]
struct MetadataBody {
    usage: TokenUsage,
    #[serde(default)]
    metrics: ConverseMetrics,
}

impl ConverseStreamEvent {
    /// The `:event-type` header of the event's frame.
    pub fn event_type(&self) -> &'static str {
        match self {
            ConverseStreamEvent::MessageStart { .. } => "messageStart",
            ConverseStreamEvent::ContentBlockStart { .. } => "contentBlockStart",
            ConverseStreamEvent::ContentBlockDelta { .. } => "contentBlockDelta",
            ConverseStreamEvent::ContentBlockStop { .. } => "contentBlockStop",
            ConverseStreamEvent::MessageStop { .. } => "messageStop",
            ConverseStreamEvent::Metadata { .. } => "metadata",
        }
    }

    /// The frame payload, e.g. `{"contentBlockIndex":0,"delta":{"text":"hi"}}` (without the
    /// optional `p` padding field Bedrock adds).
    pub fn payload(&self) -> Value {
        match self {
            ConverseStreamEvent::MessageStart { role } => json!({ "role": role }),
            ConverseStreamEvent::ContentBlockStart {
                content_block_index,
                start,
            } => json!({ "contentBlockIndex": content_block_index, "start": start }),
            ConverseStreamEvent::ContentBlockDelta {
                content_block_index,
                delta,
            } => json!({ "contentBlockIndex": content_block_index, "delta": delta }),
            ConverseStreamEvent::ContentBlockStop {
                content_block_index,
            } => json!({ "contentBlockIndex": content_block_index }),
            ConverseStreamEvent::MessageStop { stop_reason } => {
                json!({ "stopReason": stop_reason })
            }
            ConverseStreamEvent::Metadata { usage, metrics } => json!({
                "usage": {
                    "inputTokens": usage.input_tokens,
                    "outputTokens": usage.output_tokens,
                    "totalTokens": usage.total_tokens,
                },
                "metrics": { "latencyMs": metrics.latency_ms },
            }),
        }
    }

    /// The whole event-stream frame for this event (see [`super::encode_event`]).
    pub fn to_frame(&self) -> bytes::Bytes {
        super::eventstream::encode_event(self.event_type(), self.payload().to_string().as_bytes())
    }

    /// Parses an event from its frame's `:event-type` and payload. An unknown event type or a
    /// payload without the event's required fields is an `EventStream` error.
    pub fn from_frame(event_type: &str, payload: &[u8]) -> Result<Self, BedrockError> {
        fn parse<'a, T: Deserialize<'a>>(kind: &str, payload: &'a [u8]) -> Result<T, BedrockError> {
            serde_json::from_slice(payload)
                .map_err(|e| BedrockError::event_stream(format!("{kind} payload: {e}")))
        }
        Ok(match event_type {
            "messageStart" => {
                let b: MessageStartBody = parse(event_type, payload)?;
                ConverseStreamEvent::MessageStart { role: b.role }
            }
            "contentBlockStart" => {
                let b: BlockStartBody = parse(event_type, payload)?;
                ConverseStreamEvent::ContentBlockStart {
                    content_block_index: b.content_block_index,
                    start: b.start,
                }
            }
            "contentBlockDelta" => {
                let b: BlockDeltaBody = parse(event_type, payload)?;
                ConverseStreamEvent::ContentBlockDelta {
                    content_block_index: b.content_block_index,
                    delta: b.delta,
                }
            }
            "contentBlockStop" => {
                let b: BlockStopBody = parse(event_type, payload)?;
                ConverseStreamEvent::ContentBlockStop {
                    content_block_index: b.content_block_index,
                }
            }
            "messageStop" => {
                let b: MessageStopBody = parse(event_type, payload)?;
                ConverseStreamEvent::MessageStop {
                    stop_reason: b.stop_reason,
                }
            }
            "metadata" => {
                let b: MetadataBody = parse(event_type, payload)?;
                ConverseStreamEvent::Metadata {
                    usage: b.usage,
                    metrics: b.metrics,
                }
            }
            other => {
                return Err(BedrockError::event_stream(format!(
                    "unknown ConverseStream event type `{other}`"
                )));
            }
        })
    }
}

#[cfg(test)]
#[path = "converse_tests.rs"]
pub(crate) mod tests;

//! OpenAI chat-completions shapes (`POST /v1/chat/completions`, `GET /v1/models`).
//!
//! Every struct keeps the fields it does not name in `extra`, so relaying a request or a response
//! through these types keeps tools, response formats, logprobs and whatever a newer client sends.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat-completions request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Request fields of another API (Converse's `guardrailConfig`, `performanceConfig`, …)
    /// that only a `bedrock` upstream honours, carried to it; never serialized (see
    /// `bedrock::convert`'s `carry`).
    #[serde(skip)]
    pub bedrock_only: Map<String, Value>,
}

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The output cap the client set (`max_completion_tokens` wins over the older `max_tokens`).
    pub fn output_cap(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// This request as sent to an OpenAI-compatible upstream that knows the model as `model`;
    /// with `as_stream`, asked as a stream with the final usage chunk. It borrows: the
    /// messages are serialized from the client's request, not copied first.
    pub fn for_upstream<'a>(&'a self, model: &'a str, as_stream: bool) -> UpstreamChat<'a> {
        let stream_options = if as_stream {
            let mut o = self.stream_options.clone().unwrap_or_default();
            o.include_usage = Some(true);
            Some(std::borrow::Cow::Owned(o))
        } else {
            self.stream_options.as_ref().map(std::borrow::Cow::Borrowed)
        };
        UpstreamChat {
            model,
            messages: &self.messages,
            stream: if as_stream { Some(true) } else { self.stream },
            stream_options,
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            extra: &self.extra,
        }
    }
}

/// A [`ChatRequest`] on its way upstream ([`ChatRequest::for_upstream`]): the same fields,
/// borrowed, serialized as the request itself would be.
#[derive(Debug, Serialize)]
pub struct UpstreamChat<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<std::borrow::Cow<'a, StreamOptions>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content: a string, or an array of typed parts (`{"type":"text","text":…}`, images, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<Value>),
}

/// A chat completion's `usage`. `prompt_tokens` counts every prompt token, cached or not (the
/// OpenAI convention); `prompt_tokens_details` says how many were read from a prefix cache,
/// when the upstream reports it (absent otherwise, and then not written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "cache_report"
    )]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `prompt_tokens_details` read leniently: a cache report is an object with a whole
/// `cached_tokens`; anything else (other details only, `null`, a malformed count) is no report,
/// never a reason to refuse the upstream's answer.
fn cache_report<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<PromptTokensDetails>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(|v| v.get("cached_tokens"))
        .and_then(Value::as_u64)
        .map(|cached_tokens| PromptTokensDetails { cached_tokens }))
}

impl Usage {
    /// Prompt and completion counts, with no cache report.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: None,
        }
    }

    /// The prompt tokens the upstream read from its prefix cache, when it said (at most the
    /// prompt).
    pub fn cached_tokens(&self) -> Option<u64> {
        self.prompt_tokens_details
            .map(|d| d.cached_tokens.min(self.prompt_tokens))
    }
}

/// `usage.prompt_tokens_details` as OpenAI and vLLM (with prompt-token details on) report it:
/// how many of the prompt's tokens were read from the prefix (KV) cache rather than computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

/// A non-streaming response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: ResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One streamed chunk (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_report_is_read_kept_and_only_written_when_given() {
        let u: Usage = serde_json::from_str(
            r#"{"prompt_tokens":2048,"completion_tokens":5,"total_tokens":2053,
                "prompt_tokens_details":{"cached_tokens":1536,"audio_tokens":0}}"#,
        )
        .unwrap();
        assert_eq!(u.cached_tokens(), Some(1536));
        let back = serde_json::to_value(u).unwrap();
        assert_eq!(back["prompt_tokens_details"]["cached_tokens"], 1536);
        // Other details only, null, or a malformed count: no cached tokens said, and the usage
        // still parses.
        for details in [
            r#"{"audio_tokens":0}"#,
            "null",
            r#"{"cached_tokens":"12"}"#,
            r#"{"cached_tokens":-1}"#,
            r#"{"cached_tokens":1.5}"#,
            "[]",
            "7",
        ] {
            let u: Usage = serde_json::from_str(&format!(
                r#"{{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"prompt_tokens_details":{details}}}"#
            ))
            .unwrap_or_else(|e| panic!("{details}: {e}"));
            assert_eq!((u.prompt_tokens, u.cached_tokens()), (9, None), "{details}");
        }
        assert_eq!(
            serde_json::to_string(&Usage::new(9, 1)).unwrap(),
            r#"{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}"#
        );
        // A report above the prompt is capped to it.
        let over = Usage {
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: 50 }),
            ..Usage::new(9, 1)
        };
        assert_eq!(over.cached_tokens(), Some(9));
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"x"}],
            "temperature":0.2,"tools":[{"type":"function"}],"stream":true,
            "stream_options":{"include_usage":true}}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        assert!(req.is_stream());
        assert!(req.wants_stream_usage());
        let back: Value = serde_json::to_value(&req).unwrap();
        let orig: Value = serde_json::from_str(body).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn the_upstream_view_serializes_as_the_edited_request_would() {
        let body = r#"{"model":"us.m","messages":[{"role":"user","content":"hi"}],
            "temperature":0.2,"stream_options":{"include_usage":false,"x":1},"max_tokens":5}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        for as_stream in [false, true] {
            let mut edited = req.clone();
            edited.model = "m-upstream".into();
            if as_stream {
                edited.stream = Some(true);
                edited
                    .stream_options
                    .get_or_insert_with(StreamOptions::default)
                    .include_usage = Some(true);
            }
            let view = serde_json::to_value(req.for_upstream("m-upstream", as_stream)).unwrap();
            assert_eq!(view, serde_json::to_value(&edited).unwrap(), "{as_stream}");
        }
    }

    #[test]
    fn missing_messages_is_an_error() {
        let err = serde_json::from_str::<ChatRequest>(r#"{"model":"m"}"#).unwrap_err();
        assert!(err.to_string().contains("messages"), "{err}");
    }

    #[test]
    fn output_cap_prefers_max_completion_tokens() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"max_tokens":10,"max_completion_tokens":20}"#,
        )
        .unwrap();
        assert_eq!(req.output_cap(), Some(20));
    }

    #[test]
    fn chunk_with_usage_parses() {
        let c: ChatChunk = serde_json::from_str(
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],
                "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(c.usage.unwrap().total_tokens, 7);
    }
}

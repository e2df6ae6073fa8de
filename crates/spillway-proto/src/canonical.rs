//! The canonical request a driver carries to its upstreams.
//!
//! Chat is the canonical model of every generating API (OpenAI chat completions and Responses,
//! Bedrock Converse and InvokeModel all convert to it); embeddings are another kind of request,
//! relayed whole to an OpenAI-compatible upstream's `/embeddings` and answered whole. Both go
//! through the same admission, routing, exchange and `finish` (quota, metering, audit): an
//! embeddings request is an exchange with no output tokens and no stream.
use crate::embeddings::EmbeddingsRequest;
use crate::openai::ChatRequest;

/// A canonical request: chat or embeddings.
#[derive(Debug, Clone)]
pub enum Request {
    Chat(ChatRequest),
    Embed(EmbeddingsRequest),
}

impl From<ChatRequest> for Request {
    fn from(r: ChatRequest) -> Self {
        Request::Chat(r)
    }
}

impl From<EmbeddingsRequest> for Request {
    fn from(r: EmbeddingsRequest) -> Self {
        Request::Embed(r)
    }
}

impl Request {
    /// Whether the client asked for a stream (embeddings never stream).
    pub fn is_stream(&self) -> bool {
        match self {
            Request::Chat(c) => c.is_stream(),
            Request::Embed(_) => false,
        }
    }

    /// The input tokens the request is estimated at (quota reservation and routing).
    pub fn prompt_tokens(&self) -> u64 {
        match self {
            Request::Chat(c) => crate::tokens::prompt_tokens(&c.messages),
            Request::Embed(e) => e.input_tokens(),
        }
    }

    /// The output cap the client set, if any.
    pub fn output_cap(&self) -> Option<u64> {
        match self {
            Request::Chat(c) => c.output_cap(),
            Request::Embed(_) => None,
        }
    }
}

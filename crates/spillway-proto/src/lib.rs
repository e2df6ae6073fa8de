//! Spillway's wire formats.
//!
//! * [`anthropic`]: Anthropic Messages (`/v1/messages` and Anthropic InvokeModel bodies) to and
//!   from the canonical model: requests, responses and the stream-event encoder.
//! * [`bedrock`]: Amazon Bedrock's Converse / ConverseStream and InvokeModel(WithResponseStream)
//!   shapes, the `application/vnd.amazon.eventstream` codec, model-id / ARN parsing, and the
//!   conversion between Converse and the canonical OpenAI model, both ways.
//! * [`openai`]: the OpenAI chat-completions request, response and stream-chunk shapes. Unknown
//!   fields are kept (`extra`) so that a request relayed to an OpenAI-compatible upstream loses
//!   nothing the client sent.
//! * [`canonical`]: the canonical request a gateway routes: chat (every generating API converts
//!   to it) or embeddings.
//! * [`embeddings`]: the OpenAI embeddings request and answer (float and base64 vectors).
//! * [`responses`]: the OpenAI Responses API, the subset that maps onto chat completions, and
//!   its conversion to the canonical request and back (whole answers and typed stream events).
//! * [`sse`]: an incremental server-sent-events decoder (any split of the byte stream decodes the
//!   same) and the encoder the gateway and the simulator write with.
//! * [`error`]: OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`.
//! * [`prefix`]: the prefix-block hashes of a prompt (512-token blocks, chained xxh3), the ids
//!   under which an engine caches a prompt's KV, computed alike by the gateway and the simulator.
//! * [`tokens`]: the token estimate that the gateway reserves quota with and that the simulator
//!   reports as its exact usage, so that both sides count the same way.
#![forbid(unsafe_code)]

pub mod anthropic;
pub mod bedrock;
pub mod canonical;
pub mod embeddings;
pub mod error;
pub mod openai;
pub mod prefix;
pub mod responses;
pub mod sse;
pub mod tokens;

pub use error::{OpenAiError, OpenAiErrorBody};
pub use openai::{
    ChatChunk, ChatCompletion, ChatMessage, ChatRequest, Choice, ChunkChoice, Delta,
    MessageContent, ModelList, ModelObject, PromptTokensDetails, ResponseMessage, StreamOptions,
    Usage,
};
pub use sse::{SseDecoder, SseEvent};

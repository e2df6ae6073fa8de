//! Amazon Bedrock runtime wire formats.
//!
//! * [`converse`]: the Converse / ConverseStream request, response and stream-event shapes, in
//!   Bedrock's camelCase JSON. Content blocks are one-key unions (`{"text": …}`,
//!   `{"toolUse": …}`, `{"toolResult": …}`, images, documents, …).
//! * [`eventstream`]: the `application/vnd.amazon.eventstream` framing both streaming operations
//!   use (prelude with lengths and CRC, string headers `:message-type`, `:event-type` /
//!   `:exception-type`, `:content-type`, payload, message CRC), over `aws-smithy-eventstream`,
//!   with an incremental decoder.
//! * [`invoke`]: InvokeModelWithResponseStream's `chunk` events, whose payload is
//!   `{"bytes": "<base64 of the model's native JSON>"}`.
//! * [`model_ref`]: the `{modelId}` path segment (model id, profile id, or a foundation-model,
//!   inference-profile or application-inference-profile ARN; percent-encoded or not).
//! * [`convert`]: conversion to and from the canonical OpenAI chat model, requests, responses
//!   and streams, with what each direction loses.
//! * [`error`]: [`BedrockError`] and Bedrock's `{"message": …}` error body.
pub mod converse;
pub mod convert;
pub mod error;
pub mod eventstream;
pub mod invoke;
pub mod model_ref;

pub use converse::{
    ContentBlock, ConverseMetrics, ConverseOutput, ConverseRequest, ConverseResponse,
    ConverseStreamEvent, InferenceConfig, Message, SystemContentBlock, TokenUsage,
};
pub use convert::{
    ChunksToConverse, ConverseToChunks, bedrock_only_fields, chat_completion_to_converse,
    chat_to_converse, converse_cannot_carry, converse_to_chat, converse_to_chat_completion,
    finish_reason_to_stop_reason, stop_reason_to_finish_reason,
};
pub use error::{BedrockError, BedrockErrorBody};
pub use eventstream::{Frame, FrameDecoder, encode_event, encode_exception};
pub use invoke::{decode_invoke_chunk, encode_invoke_chunk};
pub use model_ref::{ModelRef, escape_controls, parse_model_ref, printable_id};

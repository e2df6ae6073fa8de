//! The API adapters: each translates its wire format to the canonical request and back, and
//! hands the request to the driver ([`crate::drive`]); none of them decides where a request goes
//! or settles what it cost.
//!
//! * [`openai`]: `POST /v1/chat/completions` (Bearer keys, OpenAI's error shape).
//! * [`responses`]: `POST /v1/responses`, converted to the canonical chat request and back.
//! * [`embeddings`]: `POST /v1/embeddings`, an embeddings request routed like chat.
//! * [`bedrock`]: the Bedrock runtime (Converse, ConverseStream, InvokeModel and its stream;
//!   SigV4 or Bedrock API keys, Bedrock's error shape).
//! * [`profiles`]: the Bedrock control plane for inference profiles.
//! * [`resolve`]: what the client named (model, profile id or ARN) → model, destination set and
//!   quota kind; shared by every adapter.

pub mod bedrock;
pub mod embeddings;
pub mod openai;
pub mod profiles;
pub mod resolve;
pub mod responses;

//! The API adapters: each translates its wire format to the canonical request and back, and
//! hands the request to the driver ([`crate::drive`]); none of them decides where a request goes
//! or settles what it cost.
//!
//! * [`openai`]: `POST /v1/chat/completions` (Bearer keys, OpenAI's error shape).
//! * [`anthropic`]: `POST /v1/messages` (`x-api-key` or Bearer keys, Anthropic's error shape),
//!   and the Anthropic Messages body of an InvokeModel call.
//! * [`responses`]: `POST /v1/responses`, converted to the canonical chat request and back.
//! * [`embeddings`]: `POST /v1/embeddings`, an embeddings request routed like chat.
//! * [`bedrock`]: the Bedrock runtime (Converse, ConverseStream, InvokeModel and its stream;
//!   SigV4 or Bedrock API keys, Bedrock's error shape).
//! * [`profiles`]: the Bedrock control plane for inference profiles, and the entry of the rest
//!   of the control plane: [`foundation`] (ListFoundationModels, GetFoundationModel) and
//!   [`tags`] (ListTagsForResource, TagResource, UntagResource).
//! * [`fields`]: no silent drops — request fields the possible upstreams cannot honour are
//!   refused by name.
//! * [`count_tokens`]: Bedrock's CountTokens, with the estimator quota is reserved by.
//! * [`resolve`]: what the client named (model, profile id or ARN) → model, destination set and
//!   quota kind; shared by every adapter.

pub mod anthropic;
pub mod bedrock;
pub mod count_tokens;
pub mod embeddings;
pub mod fields;
pub mod foundation;
pub mod openai;
pub mod profiles;
pub mod resolve;
pub mod responses;
pub mod tags;

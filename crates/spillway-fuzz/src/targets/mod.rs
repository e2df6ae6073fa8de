//! The fuzz targets, one per parser or codec that faces input Spillway does not control, and
//! the table that names them for the runner.
//!
//! | target | entry point | property beyond "no panic" |
//! | --- | --- | --- |
//! | `chat_request` | body of `POST /v1/chat/completions` → `ChatRequest` | serialises back to itself; `chat_to_converse` of it too |
//! | `converse` | body of Converse / ConverseStream → `ConverseRequest` → `converse_to_chat` | both serialise back to themselves; `stream` is kept |
//! | `invoke` | InvokeModel body → `ChatRequest`; a stream `chunk` payload | `decode_invoke_chunk(encode_invoke_chunk(x)) == x` |
//! | `eventstream` | `FrameDecoder` (Bedrock upstream streams) | any split decodes the same; frames and events re-encode to themselves |
//! | `sse` | `SseDecoder` (OpenAI-compatible upstream streams) | any split decodes the same; `encode_data` round trip |
//! | `sigv4_verify` | `sigv4::verify` on a request given as text | never accepts (the seeds are signed with another secret) |
//! | `sigv4_roundtrip` | `sigv4::sign::sign_request` then `sigv4::verify` | what the AWS signer signs verifies; a changed body does not |
//! | `config` | `Config::parse(text, "<fuzz>")` | none (Ok or Err) |
//! | `model_ref` | `parse_model_ref` (the `{modelId}` path segment) | none |
//! | `anthropic` | a Messages body → `MessagesRequest` → `to_chat` (both flavors); its lines as chat chunks → `ChunksToAnthropic` | the converted request serialises back to itself; the events form one well-formed message and survive SSE |
//! | `responses_request` | body of `POST /v1/responses` → `ResponsesRequest` → `to_chat` | the chat request keeps model and `stream`, round-trips; the echo renders |
//! | `embeddings_request` | body of `POST /v1/embeddings` → `EmbeddingsRequest`, `validate` | round-trips; the upstream body keeps the input |
pub mod anthropic;
pub mod openai_more;
pub mod requests;
pub mod sigv4;
pub mod streams;

pub use anthropic::target_anthropic;
pub use openai_more::{target_embeddings_request, target_responses_request};
pub use requests::{
    target_chat_request, target_config, target_converse, target_invoke, target_model_ref,
};
pub use sigv4::{target_sigv4_roundtrip, target_sigv4_verify};
pub use streams::{target_eventstream, target_sse};

/// One fuzz target: what the runner needs to know about it.
#[derive(Clone, Copy)]
pub struct Target {
    /// Its name: the corpus folder `corpus/<name>/` and the crash file prefix.
    pub name: &'static str,
    /// The target itself: must not panic on any input.
    pub run: fn(&[u8]),
    /// Seeds compiled in from files elsewhere in the repository (kept current that way), added
    /// to the corpus folder's files.
    pub builtin_seeds: &'static [&'static [u8]],
    /// Tokens the mutator inserts (field names, keywords) besides its generic ones.
    pub dictionary: &'static [&'static [u8]],
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    /// Mutated inputs per `--iterations`: 10 for the cheap parsers (a few to 50 µs an input in
    /// release), 1 for `config` (about 350 µs: TOML, then the whole validation).
    pub weight: u64,
}

const JSON_CHAT: &[&[u8]] = &[
    b"\"model\"",
    b"\"messages\"",
    b"\"role\"",
    b"\"content\"",
    b"\"user\"",
    b"\"assistant\"",
    b"\"system\"",
    b"\"tool\"",
    b"\"developer\"",
    b"\"stream\"",
    b"\"stream_options\"",
    b"\"include_usage\"",
    b"\"max_tokens\"",
    b"\"max_completion_tokens\"",
    b"\"tool_calls\"",
    b"\"tool_call_id\"",
    b"\"function\"",
    b"\"arguments\"",
    b"\"tools\"",
    b"\"tool_choice\"",
    b"\"type\"",
    b"\"text\"",
    b"\"image_url\"",
    b"\"n\"",
];

const JSON_CONVERSE: &[&[u8]] = &[
    b"\"messages\"",
    b"\"role\"",
    b"\"content\"",
    b"\"text\"",
    b"\"system\"",
    b"\"toolUse\"",
    b"\"toolUseId\"",
    b"\"toolResult\"",
    b"\"status\"",
    b"\"json\"",
    b"\"input\"",
    b"\"name\"",
    b"\"image\"",
    b"\"document\"",
    b"\"cachePoint\"",
    b"\"reasoningContent\"",
    b"\"reasoningText\"",
    b"\"inferenceConfig\"",
    b"\"maxTokens\"",
    b"\"temperature\"",
    b"\"topP\"",
    b"\"stopSequences\"",
    b"\"toolConfig\"",
    b"\"tools\"",
    b"\"toolSpec\"",
    b"\"inputSchema\"",
    b"\"toolChoice\"",
    b"\"auto\"",
    b"\"any\"",
    b"\"tool\"",
    b"\"additionalModelRequestFields\"",
    b"\"contentBlockIndex\"",
    b"\"delta\"",
    b"\"start\"",
    b"\"stopReason\"",
    b"\"usage\"",
    b"\"inputTokens\"",
    b"\"bytes\"",
];

const EVENTSTREAM: &[&[u8]] = &[
    b":message-type",
    b":event-type",
    b":exception-type",
    b":content-type",
    b"event",
    b"exception",
    b"chunk",
    b"messageStart",
    b"contentBlockDelta",
    b"metadata",
    b"\x00\x00\x00\x10",
    b"\x00\xff\xff\xff",
    b"\x07\x00",
];

const SSE: &[&[u8]] = &[
    b"data: ",
    b"data:",
    b"event: ",
    b"id: ",
    b"retry: ",
    b": ping",
    b"[DONE]",
    b"\r\n\r\n",
    b"\n\n",
    b"\r",
    b"\"choices\"",
    b"\"delta\"",
    b"\"finish_reason\"",
    b"\"usage\"",
    b"\"index\"",
];

const SIGV4: &[&[u8]] = &[
    b"AWS4-HMAC-SHA256 ",
    b"Credential=",
    b"SignedHeaders=",
    b"Signature=",
    b"/aws4_request",
    b"x-amz-date",
    b"x-amz-content-sha256",
    b"UNSIGNED-PAYLOAD",
    b"host",
    b"20250314T150926Z",
    b"%2F",
    b"%3A",
    b"/../",
    b"//",
    b"?",
    b"&",
];

const TOML: &[&[u8]] = &[
    b"[[tenants]]",
    b"[[models]]",
    b"[[regions]]",
    b"[[profiles]]",
    b"[routing]",
    b"[server]",
    b"[state]",
    b"[admin]",
    b" = ",
    b"\"\"\"",
    b"'''",
    b"inf",
    b"nan",
    b"1979-05-27T07:32:00Z",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"{ }",
    b"[ ]",
    b"\"kind\"",
    b"\"upstream\"",
    b"\"model\"",
    b"\"region\"",
    b"\"regions\"",
    b"\"geography\"",
    b"\"sources\"",
    b"\"destinations\"",
    b"\"disabled_sources\"",
    b"\"max_in_flight\"",
    b"\"base_url\"",
    b"\"api_key_env\"",
    b"\"api_keys\"",
    b"\"sha256\"",
    b"\"bind\"",
    b"\"between\"",
    b"\"ms\"",
    b"\"rpm\"",
    b"\"tpm\"",
    b"\"id\"",
    b"\"bedrock\"",
    b"\"openai\"",
    b"\"sim\"",
    b"\"redis\"",
];

const MODEL_REF: &[&[u8]] = &[
    b"arn:aws:bedrock:",
    b"arn:aws-us-gov:bedrock:",
    b":foundation-model/",
    b":inference-profile/",
    b":application-inference-profile/",
    b"123456789012",
    b"us-east-1",
    b"us.",
    b"global.",
    b"%3A",
    b"%2F",
    b"%FF",
    b"%",
];

const JSON_OPENAI_MORE: &[&[u8]] = &[
    b"\"model\"",
    b"\"input\"",
    b"\"instructions\"",
    b"\"max_output_tokens\"",
    b"\"type\"",
    b"\"message\"",
    b"\"role\"",
    b"\"content\"",
    b"\"input_text\"",
    b"\"output_text\"",
    b"\"input_image\"",
    b"\"image_url\"",
    b"\"function_call\"",
    b"\"function_call_output\"",
    b"\"call_id\"",
    b"\"arguments\"",
    b"\"output\"",
    b"\"tools\"",
    b"\"tool_choice\"",
    b"\"function\"",
    b"\"text\"",
    b"\"format\"",
    b"\"json_schema\"",
    b"\"store\"",
    b"\"stream\"",
    b"\"encoding_format\"",
    b"\"base64\"",
    b"\"float\"",
    b"\"dimensions\"",
];

const DEFAULT_TOML: &[u8] = include_bytes!("../../../spillway-gateway/src/config/default.toml");
const EXAMPLE_TOML: &[u8] = include_bytes!("../../../../examples/spillway.toml");

/// Every target, in the order the runner starts them (the slowest first, so that it is not
/// the one left running alone at the end).
pub const TARGETS: &[Target] = &[
    Target {
        name: "config",
        run: target_config,
        builtin_seeds: &[DEFAULT_TOML, EXAMPLE_TOML],
        dictionary: TOML,
        max_len: 32 * 1024,
        weight: 1,
    },
    Target {
        name: "chat_request",
        run: target_chat_request,
        builtin_seeds: &[],
        dictionary: JSON_CHAT,
        max_len: 16 * 1024,
        weight: 10,
    },
    Target {
        name: "converse",
        run: target_converse,
        builtin_seeds: &[],
        dictionary: JSON_CONVERSE,
        max_len: 16 * 1024,
        weight: 10,
    },
    Target {
        name: "invoke",
        run: target_invoke,
        builtin_seeds: &[],
        dictionary: JSON_CHAT,
        max_len: 16 * 1024,
        weight: 10,
    },
    Target {
        name: "eventstream",
        run: target_eventstream,
        builtin_seeds: &[],
        dictionary: EVENTSTREAM,
        max_len: 8 * 1024,
        weight: 10,
    },
    Target {
        name: "sse",
        run: target_sse,
        builtin_seeds: &[],
        dictionary: SSE,
        max_len: 8 * 1024,
        weight: 10,
    },
    Target {
        name: "sigv4_verify",
        run: target_sigv4_verify,
        builtin_seeds: &[],
        dictionary: SIGV4,
        max_len: 4 * 1024,
        weight: 10,
    },
    Target {
        name: "sigv4_roundtrip",
        run: target_sigv4_roundtrip,
        builtin_seeds: &[],
        dictionary: SIGV4,
        max_len: 2 * 1024,
        weight: 10,
    },
    Target {
        name: "model_ref",
        run: target_model_ref,
        builtin_seeds: &[],
        dictionary: MODEL_REF,
        max_len: 4 * 1024,
        weight: 10,
    },
    Target {
        name: "anthropic",
        run: target_anthropic,
        builtin_seeds: &[],
        dictionary: JSON_ANTHROPIC,
        max_len: 16 * 1024,
        weight: 10,
    },
    Target {
        name: "responses_request",
        run: target_responses_request,
        builtin_seeds: &[],
        dictionary: JSON_OPENAI_MORE,
        max_len: 16 * 1024,
        weight: 10,
    },
    Target {
        name: "embeddings_request",
        run: target_embeddings_request,
        builtin_seeds: &[],
        dictionary: JSON_OPENAI_MORE,
        max_len: 16 * 1024,
        weight: 10,
    },
];

const JSON_ANTHROPIC: &[&[u8]] = &[
    b"\"anthropic_version\"",
    b"\"bedrock-2023-05-31\"",
    b"\"system\"",
    b"\"max_tokens\"",
    b"\"stop_sequences\"",
    b"\"top_k\"",
    b"\"metadata\"",
    b"\"user_id\"",
    b"\"tools\"",
    b"\"input_schema\"",
    b"\"tool_choice\"",
    b"\"type\"",
    b"\"text\"",
    b"\"image\"",
    b"\"source\"",
    b"\"base64\"",
    b"\"tool_use\"",
    b"\"tool_result\"",
    b"\"tool_use_id\"",
    b"\"is_error\"",
    b"\"input\"",
    b"\"cache_control\"",
    b"\"thinking\"",
    b"\"choices\"",
    b"\"delta\"",
    b"\"tool_calls\"",
    b"\"arguments\"",
    b"\"finish_reason\"",
    b"\"reasoning_content\"",
    b"\"usage\"",
];

/// The target of that name.
pub fn find_target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

//! Request bodies and other client-chosen text: the OpenAI chat body, the Converse body and its
//! translation to the canonical request, the InvokeModel body and stream chunk, the gateway
//! config, and the `{modelId}` path segment.
//!
//! The adapters parse bodies with `serde_json` into the `spillway-proto` types and then call the
//! conversions; these targets call the same public functions in the same order, with the
//! adapters' follow-up checks (`messages` empty, `output_cap`) and the token estimate that
//! reserves quota.
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use spillway_proto::ChatRequest;
use spillway_proto::bedrock::{
    ConverseRequest, FrameDecoder, chat_to_converse, converse_to_chat, decode_invoke_chunk,
    encode_invoke_chunk, parse_model_ref,
};
use spillway_proto::tokens::prompt_tokens;

use crate::must;

/// `value` serialises, and the JSON parses back to an equal value (floats within a few ULPs:
/// serde_json, without its `float_roundtrip` feature, may parse the shortest text of a float
/// one ULP off, so a relayed number such as `1e25` written as an integer can move by one ULP).
pub(crate) fn assert_round_trip<T>(value: &T, what: &str)
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let json = must(serde_json::to_vec(value), &format!("{what} serialises"));
    let back: T = must(
        serde_json::from_slice(&json),
        &format!("{what} parses back from its own JSON"),
    );
    let (a, b) = (serde_json::to_value(value), serde_json::to_value(&back));
    let (a, b) = (must(a, what), must(b, what));
    assert!(
        json_eq(&a, &b),
        "{what} changed in a JSON round trip:\n before: {value:?}\n  after: {back:?}"
    );
}

/// JSON equality, with floats equal within a relative 1e-15.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// What the gateway does with a chat request it accepted: the adapter's checks, the quota
/// estimate, and (for a `bedrock` upstream) the translation to Converse.
pub(crate) fn use_chat_request(req: &ChatRequest) {
    let _refused = req.messages.is_empty() || req.output_cap() == Some(0);
    let _ = (req.is_stream(), req.wants_stream_usage());
    let _ = prompt_tokens(&req.messages);
    if let Ok((conv, _stream)) = chat_to_converse(req) {
        assert_round_trip(&conv, "the Converse request built from a chat request");
    }
}

/// `POST /v1/chat/completions`: the body as `api::openai` parses it.
pub fn target_chat_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<ChatRequest>(data) else {
        return;
    };
    assert_round_trip(&req, "ChatRequest");
    use_chat_request(&req);
}

/// Converse and ConverseStream: the body as `api::bedrock` parses it, then translated to the
/// canonical request for both operations.
pub fn target_converse(data: &[u8]) {
    let Ok(conv) = serde_json::from_slice::<ConverseRequest>(data) else {
        return;
    };
    assert_round_trip(&conv, "ConverseRequest");
    for stream in [false, true] {
        let Ok(chat) = converse_to_chat("us.fuzz.model-v1:0", &conv, stream) else {
            continue;
        };
        assert_eq!(chat.is_stream(), stream, "converse_to_chat lost `stream`");
        assert_round_trip(&chat, "the chat request built from a Converse request");
        use_chat_request(&chat);
    }
}

/// InvokeModel: the request body read as an OpenAI-style object with the path's model and the
/// operation's `stream` set over it (what `api::bedrock`'s private `invoke_body` does with the
/// public types), and the same bytes as the `chunk` payload of a response stream.
pub fn target_invoke(data: &[u8]) {
    if let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(data) {
        obj.insert("model".into(), Value::String("us.fuzz.model-v1:0".into()));
        obj.insert("stream".into(), Value::Bool(true));
        if let Ok(req) = serde_json::from_value::<ChatRequest>(Value::Object(obj)) {
            assert!(req.is_stream(), "`stream: true` set over the body was lost");
            use_chat_request(&req);
        }
    }
    let _ = decode_invoke_chunk(data);
    // Any bytes survive the chunk encoding: base64 in JSON in one event-stream frame.
    let frame = encode_invoke_chunk(data);
    let frames = must(FrameDecoder::new().feed(&frame), "an encoded chunk decodes");
    assert_eq!(frames.len(), 1, "one chunk is one frame");
    let back = must(decode_invoke_chunk(&frames[0].payload), "a chunk payload");
    assert_eq!(back, data, "a chunk's bytes changed in a round trip");
}

/// `spillway_gateway::Config::parse`: Ok or Err, never a panic.
pub fn target_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = spillway_gateway::Config::parse(&text, "<fuzz>") {
        let _ = e.to_string();
    }
}

/// The `{modelId}` path segment of the Bedrock runtime routes.
pub fn target_model_ref(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    match parse_model_ref(&raw) {
        Ok(r) => {
            let _ = (r.resource_id(), r.region(), r.account());
        }
        Err(e) => {
            let _ = (e.to_string(), e.error_type());
        }
    }
}

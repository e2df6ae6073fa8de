//! InvokeModelWithResponseStream: the model's native JSON, wrapped in `chunk` events.
//!
//! Each event of the stream is a `PayloadPart` with the event type `chunk` and the payload
//! `{"bytes": "<base64 of the model's JSON>"}`. Exceptions (`throttlingException`,
//! `modelStreamErrorException`, …) are ordinary `exception` messages.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;

use super::error::BedrockError;
use super::eventstream::encode_event;

/// The `:event-type` of a payload part.
pub const CHUNK_EVENT: &str = "chunk";

/// One `chunk` event carrying `json` (any bytes, base64-encoded on the wire).
pub fn encode_invoke_chunk(json: &[u8]) -> Bytes {
    let payload = serde_json::json!({ "bytes": STANDARD.encode(json) }).to_string();
    encode_event(CHUNK_EVENT, payload.as_bytes())
}

#[derive(Deserialize)]
struct PayloadPart {
    bytes: String,
}

/// The bytes a `chunk` event's payload carries (the inverse of [`encode_invoke_chunk`]).
pub fn decode_invoke_chunk(payload: &[u8]) -> Result<Vec<u8>, BedrockError> {
    let part: PayloadPart = serde_json::from_slice(payload)
        .map_err(|e| BedrockError::event_stream(format!("chunk payload: {e}")))?;
    STANDARD
        .decode(part.bytes.as_bytes())
        .map_err(|e| BedrockError::event_stream(format!("chunk bytes are not base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::FrameDecoder;

    #[test]
    fn chunk_round_trip() {
        let json = br#"{"type":"content_block_delta","delta":{"text":"Hello"}}"#;
        let frame = encode_invoke_chunk(json);
        let frames = FrameDecoder::new().feed(&frame).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event_type(), Some("chunk"));
        assert_eq!(frames[0].message_type(), Some("event"));
        assert_eq!(frames[0].header(":content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&frames[0].payload).unwrap();
        assert_eq!(v["bytes"], STANDARD.encode(json));
        assert_eq!(
            decode_invoke_chunk(&frames[0].payload).unwrap(),
            json.to_vec()
        );
    }

    #[test]
    fn bedrock_padding_field_is_ignored() {
        let payload = br#"{"bytes":"eyJhIjoxfQ==","p":"abcdefghijklmnopqrstuvwxyzABCDEFGH"}"#;
        assert_eq!(
            decode_invoke_chunk(payload).unwrap(),
            br#"{"a":1}"#.to_vec()
        );
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert!(matches!(
            decode_invoke_chunk(b"not json"),
            Err(BedrockError::EventStream(_))
        ));
        assert!(matches!(
            decode_invoke_chunk(br#"{"bytes":"***"}"#),
            Err(BedrockError::EventStream(_))
        ));
        assert!(decode_invoke_chunk(br#"{"other":"x"}"#).is_err());
    }
}

//! Anthropic Messages: the request parser and conversion (`/v1/messages` and InvokeModel
//! bodies), and the stream-event encoder.
//!
//! One input is read two ways. Whole, as a Messages body: parsed into `MessagesRequest` as the
//! adapter does, converted for both flavors, streaming and not; a converted request serialises
//! back to itself, keeps the asked `stream`, and carries `max_tokens`. Line by line, as canonical
//! chat chunks (the lines that parse as one): fed to `ChunksToAnthropic`, whose events must form
//! one well-formed message (one `message_start` first, blocks started with the next index and
//! stopped before the next, deltas only to the open block, `message_delta` then `message_stop`
//! last), each written as an SSE event that decodes back to its JSON.
use serde_json::Value;
use spillway_proto::ChatChunk;
use spillway_proto::anthropic::{ChunksToAnthropic, Flavor, MessagesRequest, encode_sse_event};
use spillway_proto::sse::SseDecoder;
use spillway_proto::tokens::prompt_tokens;

use super::requests::assert_round_trip;

pub fn target_anthropic(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<MessagesRequest>(data) {
        for flavor in [Flavor::Api, Flavor::Bedrock] {
            for stream in [false, true] {
                if let Ok(chat) = req.to_chat(flavor, "us.m", stream) {
                    assert_eq!(chat.is_stream(), stream, "stream is kept");
                    assert!(
                        chat.max_tokens.is_some_and(|n| n > 0),
                        "max_tokens is carried"
                    );
                    assert!(
                        !chat.messages.is_empty(),
                        "a converted request has messages"
                    );
                    let _ = prompt_tokens(&chat.messages);
                    assert_round_trip(&chat, "the converted request");
                }
            }
        }
    }
    let mut enc = ChunksToAnthropic::new("msg_fuzz", "us.m", 1);
    let mut events = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(chunk) = serde_json::from_slice::<ChatChunk>(line) {
            events.extend(enc.on_chunk(&chunk));
        }
    }
    events.extend(enc.finish());
    check_well_formed(&events);
}

fn check_well_formed(events: &[Value]) {
    let kind = |e: &Value| e["type"].as_str().unwrap_or_default().to_string();
    assert_eq!(events.first().map(kind).as_deref(), Some("message_start"));
    assert_eq!(events.last().map(kind).as_deref(), Some("message_stop"));
    let (mut open, mut next, mut delta_seen) = (None::<u64>, 0u64, false);
    for e in events {
        match kind(e).as_str() {
            "message_start" => assert!(next == 0 && open.is_none(), "message_start once, first"),
            "content_block_start" => {
                assert!(
                    open.is_none() && !delta_seen,
                    "a block starts after the last stopped"
                );
                assert_eq!(e["index"].as_u64(), Some(next), "block indexes count up");
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => {
                assert_eq!(e["index"].as_u64(), open, "delta to the open block")
            }
            "content_block_stop" => {
                assert_eq!(e["index"].as_u64(), open, "stop of the open block");
                open = None;
            }
            "message_delta" => {
                assert!(
                    open.is_none() && !delta_seen,
                    "one message_delta, blocks closed"
                );
                delta_seen = true;
            }
            "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
        let sse = encode_sse_event(e);
        let back = SseDecoder::new().feed(&sse);
        assert_eq!(back.len(), 1, "one SSE event per event");
        assert_eq!(back[0].event.as_deref(), Some(kind(e).as_str()));
        let data: Value = serde_json::from_str(&back[0].data).unwrap_or(Value::Null);
        assert_eq!(&data, e, "the event's JSON survives SSE");
    }
    assert!(delta_seen && open.is_none());
}

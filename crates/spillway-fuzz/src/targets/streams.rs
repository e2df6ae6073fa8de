//! The two incremental stream decoders, fed what an upstream sends: Bedrock's
//! `application/vnd.amazon.eventstream` ([`FrameDecoder`]) and server-sent events
//! ([`SseDecoder`]), each followed by the parsing and translation the driver does with the
//! decoded events.
//!
//! The real property of an incremental decoder is that the chunking of its input does not
//! matter: the input is decoded whole, byte by byte, and in pieces cut at points that
//! `arbitrary` draws from a hash of the input (so the corpus holds plain streams, and every
//! mutation also moves the cuts), and every decoding must agree.
use arbitrary::Unstructured;
use sha2::{Digest, Sha256};
use spillway_proto::bedrock::eventstream::try_encode;
use spillway_proto::bedrock::{
    ChunksToConverse, ConverseStreamEvent, ConverseToChunks, Frame, FrameDecoder,
    decode_invoke_chunk,
};
use spillway_proto::sse::{DONE, encode_data};
use spillway_proto::{ChatChunk, SseDecoder, SseEvent};

use crate::must;

/// Byte-by-byte decoding is quadratic in places (the SSE decoder rescans its buffer); it is
/// checked only up to this length.
const BYTE_BY_BYTE_MAX: usize = 2048;

/// Up to 3 ways of cutting `data` into pieces, drawn from a hash of it.
fn splits(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let digest = Sha256::digest(data);
    let mut u = Unstructured::new(&digest);
    let mut out = Vec::new();
    for _ in 0..3 {
        let n = u.int_in_range(1..=5u8).unwrap_or(1);
        let mut cuts: Vec<usize> = (0..n)
            .map(|_| u.int_in_range(0..=data.len()).unwrap_or(0))
            .collect();
        cuts.sort_unstable();
        let mut pieces = Vec::with_capacity(cuts.len() + 1);
        let mut last = 0;
        for c in cuts {
            pieces.push(&data[last..c]);
            last = c;
        }
        pieces.push(&data[last..]);
        out.push(pieces);
    }
    if data.len() <= BYTE_BY_BYTE_MAX {
        out.push(data.chunks(1).collect());
    }
    out
}

/// All frames over the feeds, and whether the stream failed (on a feed or at the end).
fn decode_frames(pieces: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut failed = false;
    for p in pieces {
        match d.feed(p) {
            Ok(f) => frames.extend(f),
            Err(_) => failed = true,
        }
    }
    (frames, failed || d.finish().is_err())
}

/// Bedrock's event stream, as a `bedrock` upstream sends ConverseStream or
/// InvokeModelWithResponseStream.
pub fn target_eventstream(data: &[u8]) {
    let whole = decode_frames(&[data]);
    for pieces in splits(data) {
        assert_eq!(
            decode_frames(&pieces),
            whole,
            "the event stream decoded differently when split into {} pieces",
            pieces.len()
        );
    }
    let mut to_chunks = ConverseToChunks::new("us.fuzz.model-v1:0", "fuzz", 0);
    for frame in &whole.0 {
        check_frame_round_trip(frame);
        let _ = decode_invoke_chunk(&frame.payload);
        let Some(event_type) = frame.event_type() else {
            continue;
        };
        let Ok(event) = ConverseStreamEvent::from_frame(event_type, &frame.payload) else {
            continue;
        };
        check_event_round_trip(&event);
        for chunk in to_chunks.on_event(&event) {
            must(serde_json::to_string(&chunk), "a translated chat chunk");
        }
    }
}

/// A decoded frame encodes (unless a header value is over the encoder's 32 KiB) to bytes that
/// decode to the same frame.
fn check_frame_round_trip(frame: &Frame) {
    let headers: Vec<(&str, &str)> = frame
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Ok(encoded) = try_encode(&headers, &frame.payload) {
        assert_eq!(
            decode_frames(&[&encoded]),
            (vec![frame.clone()], false),
            "a frame changed in an encode/decode round trip"
        );
    }
}

/// A parsed ConverseStream event written as a frame parses back to the same event.
fn check_event_round_trip(event: &ConverseStreamEvent) {
    let (frames, failed) = decode_frames(&[&event.to_frame()]);
    assert!(!failed && frames.len() == 1, "an event's own frame decodes");
    let back = must(
        ConverseStreamEvent::from_frame(event.event_type(), &frames[0].payload),
        "an event's own frame parses",
    );
    assert_eq!(
        &back, event,
        "a ConverseStream event changed in a round trip"
    );
}

/// All events over the feeds, and the bytes held back at the end.
fn decode_events(pieces: &[&[u8]]) -> (Vec<SseEvent>, usize) {
    let mut d = SseDecoder::new();
    let events = pieces.iter().flat_map(|p| d.feed(p)).collect();
    (events, d.pending())
}

/// Server-sent events, as an OpenAI-compatible upstream streams chat chunks; the chunks are
/// parsed and translated to ConverseStream events as for a Bedrock client.
pub fn target_sse(data: &[u8]) {
    let whole = decode_events(&[data]);
    for pieces in splits(data) {
        assert_eq!(
            decode_events(&pieces),
            whole,
            "the SSE stream decoded differently when split into {} pieces",
            pieces.len()
        );
    }
    let mut to_converse = ChunksToConverse::new();
    for event in &whole.0 {
        check_sse_round_trip(event);
        if event.data == DONE {
            continue;
        }
        let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) else {
            continue;
        };
        for ev in to_converse.on_chunk(&chunk) {
            let _ = ev.to_frame();
        }
    }
    for ev in to_converse.finish(0) {
        let _ = ev.to_frame();
    }
}

/// Data without line breaks, written by `encode_data`, decodes to one event with that data.
fn check_sse_round_trip(event: &SseEvent) {
    if event.data.contains(['\n', '\r']) {
        return; // encode_data's contract: one line of payload
    }
    let mut d = SseDecoder::new();
    let back = d.feed(&encode_data(&event.data));
    assert_eq!(back.len(), 1, "encode_data wrote one event");
    assert_eq!(back[0].data, event.data, "SSE data changed in a round trip");
    assert_eq!(d.pending(), 0, "encode_data ends its event");
}

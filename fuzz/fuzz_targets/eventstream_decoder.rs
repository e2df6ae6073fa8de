//! The event-stream decoder never panics on arbitrary bytes, and any split of the input (here:
//! three pieces, cut where the first two bytes say) gives the same frames and the same verdict.
//! Decoded frames go through the Converse and InvokeModel payload parsers too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spillway_proto::bedrock::eventstream::try_encode;
use spillway_proto::bedrock::{ConverseStreamEvent, Frame, FrameDecoder, decode_invoke_chunk};

/// All frames, and whether the stream failed (on a feed or at the end).
fn decode(pieces: &[&[u8]]) -> (Vec<Frame>, bool) {
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

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let bytes = &data[2..];
    let a = (data[0] as usize * bytes.len()) / 255;
    let b = a + ((data[1] as usize * (bytes.len() - a)) / 255);
    let whole = decode(&[bytes]);
    let split = decode(&[&bytes[..a], &bytes[a..b], &bytes[b..]]);
    assert_eq!(whole, split);
    let byte_by_byte: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(whole, decode(&byte_by_byte));
    for f in &whole.0 {
        if let Some(t) = f.event_type() {
            let _ = ConverseStreamEvent::from_frame(t, &f.payload);
        }
        let _ = decode_invoke_chunk(&f.payload);
        // A decoded frame encodes back (unless a header value exceeds the encoder's 32 KiB limit)
        // to bytes that decode to the same frame.
        let headers: Vec<(&str, &str)> = f
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Ok(encoded) = try_encode(&headers, &f.payload) {
            assert_eq!(decode(&[&encoded]), (vec![f.clone()], false));
        }
    }
});

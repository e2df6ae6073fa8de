use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::bedrock::converse::{ConverseMetrics, ConverseStreamEvent, TokenUsage};
use crate::bedrock::invoke::encode_invoke_chunk;

/// A ConverseStream as Bedrock would frame it, plus an invoke chunk and an exception.
fn sample_stream() -> Vec<u8> {
    let events = [
        ConverseStreamEvent::MessageStart {
            role: "assistant".into(),
        },
        ConverseStreamEvent::ContentBlockDelta {
            content_block_index: 0,
            delta: serde_json::json!({"text": "Hello, "}),
        },
        ConverseStreamEvent::ContentBlockDelta {
            content_block_index: 0,
            delta: serde_json::json!({"text": "world ✓"}),
        },
        ConverseStreamEvent::ContentBlockStop {
            content_block_index: 0,
        },
        ConverseStreamEvent::MessageStop {
            stop_reason: "end_turn".into(),
        },
        ConverseStreamEvent::Metadata {
            usage: TokenUsage {
                input_tokens: 9,
                output_tokens: 4,
                total_tokens: 13,
                ..TokenUsage::default()
            },
            metrics: ConverseMetrics { latency_ms: 250 },
        },
    ];
    let mut out = Vec::new();
    for ev in &events {
        out.extend_from_slice(&ev.to_frame());
    }
    out.extend_from_slice(&encode_invoke_chunk(br#"{"outputText":"hi"}"#));
    out.extend_from_slice(&encode_event("empty", b""));
    out.extend_from_slice(&encode_exception(
        "ThrottlingException",
        "Too many requests",
    ));
    out
}

/// Decodes `chunks` in order: all frames returned, and whether the stream failed (including at
/// `finish`).
fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Frame>, bool) {
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut failed = false;
    for c in chunks {
        match d.feed(c) {
            Ok(f) => frames.extend(f),
            Err(_) => failed = true,
        }
    }
    failed |= d.finish().is_err();
    (frames, failed)
}

/// Decodes with aws-smithy-eventstream's own incremental decoder, fed one byte at a time.
fn decode_with_smithy(bytes: &[u8]) -> Vec<Frame> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[*b]);
        while let DecodedFrame::Complete(m) = decoder.decode_frame(&mut buf).unwrap() {
            frames.push(Frame::from_message(&m));
        }
    }
    frames
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn event_round_trip() {
    let bytes = encode_event(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
    );
    let frames = FrameDecoder::new().feed(&bytes).unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(
        f.headers,
        vec![
            (":event-type".to_string(), "contentBlockDelta".to_string()),
            (":content-type".to_string(), "application/json".to_string()),
            (":message-type".to_string(), "event".to_string()),
        ]
    );
    assert_eq!(f.message_type(), Some("event"));
    assert_eq!(f.event_type(), Some("contentBlockDelta"));
    assert_eq!(f.exception_type(), None);
    assert_eq!(
        &f.payload[..],
        br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#
    );
    assert_eq!(f.encode(), bytes);
    // The prelude: total length, headers length, CRC; the frame ends with the message CRC.
    let total = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(total, bytes.len());
    let crc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    assert_eq!(crc, crc32(&bytes[..8]));
    let n = bytes.len();
    let msg_crc = u32::from_be_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
    assert_eq!(msg_crc, crc32(&bytes[..n - 4]));
}

#[test]
fn exception_round_trip() {
    let bytes = encode_exception("ThrottlingException", "Too many requests, slow down.");
    let frames = FrameDecoder::new().feed(&bytes).unwrap();
    let f = &frames[0];
    assert_eq!(f.message_type(), Some("exception"));
    assert_eq!(f.exception_type(), Some("ThrottlingException"));
    assert_eq!(f.event_type(), None);
    assert_eq!(f.header(":content-type"), Some("application/json"));
    let body: crate::bedrock::BedrockErrorBody = serde_json::from_slice(&f.payload).unwrap();
    assert_eq!(body.message, "Too many requests, slow down.");
}

#[test]
fn corrupted_prelude_crc_is_rejected() {
    let mut bytes = encode_event("chunk", br#"{"bytes":"e30="}"#).to_vec();
    bytes[9] ^= 0x40;
    let err = FrameDecoder::new().feed(&bytes).unwrap_err();
    assert!(matches!(err, BedrockError::EventStream(_)));
    assert!(err.to_string().contains("prelude checksum"), "{err}");
    // Detected from the prelude alone, without waiting for the rest.
    assert!(FrameDecoder::new().feed(&bytes[..12]).is_err());
}

#[test]
fn corrupted_message_crc_is_rejected() {
    let mut bytes = encode_event("chunk", br#"{"bytes":"e30="}"#).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let err = FrameDecoder::new().feed(&bytes).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("checksum"), "{err}");
}

#[test]
fn a_flip_of_any_bit_is_detected() {
    let good = encode_event("messageStop", br#"{"stopReason":"end_turn"}"#);
    for i in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = good.to_vec();
            bytes[i] ^= bit;
            let (frames, failed) = decode_chunks([&bytes[..]]);
            assert!(failed && frames.is_empty(), "byte {i} bit {bit:#x}");
        }
    }
}

#[test]
fn implausible_lengths_fail_at_the_prelude() {
    let prelude = |total: u32, headers: u32| {
        let mut p = Vec::new();
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&headers.to_be_bytes());
        let crc = crc32(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        p
    };
    for (total, headers) in [
        (0, 0),
        (15, 0),
        (u32::MAX, 0),
        (100, 90),
        (17 * 1024 * 1024, 0),
    ] {
        let bytes = prelude(total, headers);
        assert!(
            FrameDecoder::new().feed(&bytes).is_err(),
            "{total} {headers}"
        );
    }
    // A plausible prelude waits for the rest.
    let mut d = FrameDecoder::new();
    assert_eq!(d.feed(&prelude(100, 10)).unwrap(), vec![]);
    assert_eq!(d.buffered(), 12);
    assert!(d.finish().is_err());
}

#[test]
fn frames_before_an_error_are_delivered_and_the_error_follows() {
    let mut bytes = sample_stream();
    let good = bytes.len();
    let mut bad = encode_event("chunk", b"{}").to_vec();
    bad[5] ^= 1;
    bytes.extend_from_slice(&bad);
    let mut d = FrameDecoder::new();
    let frames = d.feed(&bytes).unwrap();
    assert_eq!(frames, decode_chunks([&bytes[..good]]).0);
    assert!(d.finish().is_err());
    assert!(
        d.feed(&encode_event("chunk", b"{}")).is_err(),
        "failed for good"
    );
}

#[test]
fn truncated_stream_is_reported_by_finish() {
    let bytes = sample_stream();
    let (frames, failed) = decode_chunks([&bytes[..bytes.len() - 3]]);
    assert!(failed);
    assert_eq!(frames.len(), 8);
}

#[test]
fn every_split_point_decodes_the_same() {
    let bytes = sample_stream();
    let (whole, failed) = decode_chunks([&bytes[..]]);
    assert!(!failed);
    assert_eq!(whole.len(), 9);
    assert_eq!(whole[6].event_type(), Some("chunk"));
    assert_eq!(whole[7].payload, Bytes::new());
    assert_eq!(whole[8].exception_type(), Some("ThrottlingException"));
    for cut in 0..=bytes.len() {
        let (frames, failed) = decode_chunks([&bytes[..cut], &bytes[cut..]]);
        assert!(!failed, "cut {cut}");
        assert_eq!(frames, whole, "cut {cut}");
    }
    let (frames, failed) = decode_chunks(bytes.chunks(1));
    assert!(!failed);
    assert_eq!(frames, whole);
}

#[test]
fn smithy_decoder_agrees() {
    let bytes = sample_stream();
    assert_eq!(decode_with_smithy(&bytes), decode_chunks([&bytes[..]]).0);
}

#[test]
fn non_string_headers_are_dropped() {
    let message = Message::new(Bytes::from_static(b"{}"))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new("n", HeaderValue::Int32(7)))
        .add_header(Header::new("b", HeaderValue::Bool(true)))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String("chunk".into()),
        ));
    let mut bytes = Vec::new();
    write_message_to(&message, &mut bytes).unwrap();
    let frames = FrameDecoder::new().feed(&bytes).unwrap();
    assert_eq!(
        frames[0].headers,
        vec![
            (":message-type".to_string(), "event".to_string()),
            (":event-type".to_string(), "chunk".to_string()),
        ]
    );
}

#[test]
fn oversized_header_value_falls_back_to_an_exception() {
    let long = "x".repeat(40_000);
    assert!(try_encode(&[(":event-type", &long)], b"{}").is_err());
    let frames = FrameDecoder::new()
        .feed(&encode_event(&long, b"{}"))
        .unwrap();
    assert_eq!(frames[0].exception_type(), Some("InternalServerException"));
}

proptest! {
    #[test]
    fn random_splits_decode_the_same(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut bytes = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            bytes.extend_from_slice(&encode_event(&format!("ev{i}"), p));
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for p in points {
            chunks.push(&bytes[at..p]);
            at = p;
        }
        chunks.push(&bytes[at..]);
        let (frames, failed) = decode_chunks(chunks);
        prop_assert!(!failed);
        prop_assert_eq!(frames.len(), payloads.len());
        for (i, (f, p)) in frames.iter().zip(&payloads).enumerate() {
            let name = format!("ev{i}");
            prop_assert_eq!(f.event_type(), Some(name.as_str()));
            prop_assert_eq!(&f.payload[..], &p[..]);
        }
        prop_assert_eq!(decode_with_smithy(&bytes), frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_the_same(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(bytes.len() + 1);
        let whole = decode_chunks([&bytes[..]]);
        let split = decode_chunks([&bytes[..cut], &bytes[cut..]]);
        prop_assert_eq!(whole, split);
    }
}

//! The binary seeds (event-stream frames, signed requests) are made by the real encoders and
//! signer; these tests check that the checked-in files are still what those seeds must be, and
//! `cargo test -p spillway-fuzz --test seeds -- --ignored` writes them again.
#![allow(clippy::unwrap_used)]
use std::path::PathBuf;

use serde_json::json;
use spillway_fuzz::runner::crate_dir;
use spillway_fuzz::targets::sigv4::{
    FUZZ_SECRET, SEED_SECRET, parse_text_request, signed_seed, t0, verify_text,
};
use spillway_proto::bedrock::{FrameDecoder, encode_event, encode_exception, encode_invoke_chunk};

const CONVERSE_BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;

fn corpus(target: &str) -> PathBuf {
    crate_dir().join("corpus").join(target)
}

/// A ConverseStream answer with text and a tool call, as a `bedrock` upstream streams it.
fn converse_stream() -> Vec<u8> {
    let events = [
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "abcdefgh"}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12},
                   "metrics": {"latencyMs": 42}}),
        ),
    ];
    events
        .iter()
        .flat_map(|(t, p)| encode_event(t, p.to_string().as_bytes()))
        .collect()
}

fn eventstream_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("converse_stream.bin", converse_stream()),
        (
            "throttling.bin",
            encode_exception("throttlingException", "Too many requests").to_vec(),
        ),
        (
            "invoke_chunk.bin",
            encode_invoke_chunk(br#"{"type":"content_block_delta","delta":{"text":"Hi"}}"#)
                .to_vec(),
        ),
    ]
}

fn sigv4_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let converse = "/model/us.demo.chat-small-v1%3A0/converse";
    let arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.demo.chat-small-v1%3A0/converse-stream";
    vec![
        (
            "converse.txt",
            signed_seed(converse, "", CONVERSE_BODY, None).unwrap(),
        ),
        (
            "arn_stream_token.txt",
            signed_seed(arn, "", CONVERSE_BODY, Some("FwoGZXIvYXdzEJr//token")).unwrap(),
        ),
        (
            "invoke_query.txt",
            signed_seed(
                "/model/demo.chat-small-v1%3A0/invoke",
                "b=2&a=1&a=%20",
                b"{}",
                None,
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn eventstream_seeds_are_whole_streams() {
    for (name, _) in eventstream_seeds() {
        let bytes = std::fs::read(corpus("eventstream").join(name)).unwrap();
        let mut d = FrameDecoder::new();
        let frames = d.feed(&bytes).unwrap();
        assert!(!frames.is_empty() && d.finish().is_ok(), "{name}");
    }
}

#[test]
fn sigv4_seeds_are_signed_with_the_seed_secret_only() {
    for (name, _) in sigv4_seeds() {
        let text = std::fs::read(corpus("sigv4_verify").join(name)).unwrap();
        let req = parse_text_request(&text);
        assert!(verify_text(&req, t0(), SEED_SECRET).is_ok(), "{name}");
        assert!(verify_text(&req, t0(), FUZZ_SECRET).is_err(), "{name}");
    }
}

#[test]
#[ignore = "writes the corpus; run by hand after changing the encoders or the signer"]
fn write_binary_seeds() {
    for (target, seeds) in [
        ("eventstream", eventstream_seeds()),
        ("sigv4_verify", sigv4_seeds()),
    ] {
        std::fs::create_dir_all(corpus(target)).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(corpus(target).join(name), bytes).unwrap();
        }
    }
}

//! Stream conversions, both ways, and a round trip through event-stream frames.
use serde_json::{Value, json};

use super::tests::{delta_chunk, usage_chunk};
use super::*;
use crate::bedrock::converse::{ConverseMetrics, ConverseStreamEvent, TokenUsage};
use crate::bedrock::eventstream::FrameDecoder;
use crate::openai::ChatChunk;

fn text_events(index: u32, texts: &[&str]) -> Vec<ConverseStreamEvent> {
    texts
        .iter()
        .map(|t| ConverseStreamEvent::ContentBlockDelta {
            content_block_index: index,
            delta: json!({"text": t}),
        })
        .collect()
}

#[test]
fn openai_stream_to_converse_events() {
    let mut conv = ChunksToConverse::new();
    let mut events = Vec::new();
    for c in [
        delta_chunk(json!({"role": "assistant", "content": ""}), None),
        delta_chunk(json!({"content": "Hel"}), None),
        delta_chunk(json!({"content": "lo"}), None),
        delta_chunk(json!({}), Some("stop")),
        usage_chunk(9, 2),
    ] {
        events.extend(conv.on_chunk(&c));
    }
    events.extend(conv.finish(77));
    assert!(conv.finish(78).is_empty());
    let mut expected = vec![ConverseStreamEvent::MessageStart {
        role: "assistant".into(),
    }];
    expected.extend(text_events(0, &["Hel", "lo"]));
    expected.extend([
        ConverseStreamEvent::ContentBlockStop {
            content_block_index: 0,
        },
        ConverseStreamEvent::MessageStop {
            stop_reason: "end_turn".into(),
        },
        ConverseStreamEvent::Metadata {
            usage: TokenUsage {
                input_tokens: 9,
                output_tokens: 2,
                total_tokens: 11,
                ..TokenUsage::default()
            },
            metrics: ConverseMetrics { latency_ms: 77 },
        },
    ]);
    assert_eq!(events, expected);
}

#[test]
fn openai_tool_stream_to_converse_events() {
    let mut conv = ChunksToConverse::new();
    let mut events = Vec::new();
    for c in [
        delta_chunk(json!({"role": "assistant", "content": "Checking."}), None),
        delta_chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                           "function": {"name": "top_song", "arguments": ""}}]}),
            None,
        ),
        delta_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"sign\":"}}]}),
            None,
        ),
        delta_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"WZPZ\"}"}}]}),
            None,
        ),
        delta_chunk(json!({}), Some("tool_calls")),
    ] {
        events.extend(conv.on_chunk(&c));
    }
    events.extend(conv.finish(5));
    let tool_delta = |s: &str| ConverseStreamEvent::ContentBlockDelta {
        content_block_index: 1,
        delta: json!({"toolUse": {"input": s}}),
    };
    let mut expected = vec![ConverseStreamEvent::MessageStart {
        role: "assistant".into(),
    }];
    expected.extend(text_events(0, &["Checking."]));
    expected.extend([
        ConverseStreamEvent::ContentBlockStop {
            content_block_index: 0,
        },
        ConverseStreamEvent::ContentBlockStart {
            content_block_index: 1,
            start: json!({"toolUse": {"toolUseId": "call_1", "name": "top_song"}}),
        },
        tool_delta("{\"sign\":"),
        tool_delta("\"WZPZ\"}"),
        ConverseStreamEvent::ContentBlockStop {
            content_block_index: 1,
        },
        ConverseStreamEvent::MessageStop {
            stop_reason: "tool_use".into(),
        },
        ConverseStreamEvent::Metadata {
            usage: TokenUsage::default(),
            metrics: ConverseMetrics { latency_ms: 5 },
        },
    ]);
    assert_eq!(events, expected);
}

#[test]
fn a_stream_cut_short_still_ends_properly() {
    let mut conv = ChunksToConverse::new();
    let mut events = conv.on_chunk(&delta_chunk(json!({"content": "partial"}), None));
    events.extend(conv.finish(3));
    let names: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        names,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    let mut empty = ChunksToConverse::new();
    let names: Vec<&str> = empty.finish(0).iter().map(|e| e.event_type()).collect();
    assert_eq!(names, ["messageStart", "messageStop", "metadata"]);
}

/// What a client accumulates from an OpenAI stream.
#[derive(Debug, Default, PartialEq)]
struct Accumulated {
    text: String,
    reasoning: String,
    /// (id, name, arguments) per tool-call index.
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<crate::openai::Usage>,
}

fn accumulate(chunks: &[ChatChunk]) -> Accumulated {
    let mut acc = Accumulated::default();
    for c in chunks {
        acc.usage = c.usage.or(acc.usage);
        for ch in &c.choices {
            let d = &ch.delta;
            acc.text.push_str(d.content.as_deref().unwrap_or(""));
            let reasoning = d.extra.get("reasoning_content").and_then(Value::as_str);
            acc.reasoning.push_str(reasoning.unwrap_or(""));
            let calls = d.extra.get("tool_calls").and_then(Value::as_array);
            for call in calls.into_iter().flatten() {
                let i = call["index"].as_u64().unwrap() as usize;
                if acc.calls.len() <= i {
                    acc.calls.resize(i + 1, Default::default());
                }
                let slot = &mut acc.calls[i];
                if let Some(id) = call["id"].as_str() {
                    slot.0 = id.into();
                }
                if let Some(n) = call["function"]["name"].as_str() {
                    slot.1 = n.into();
                }
                slot.2
                    .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
            acc.finish = ch.finish_reason.clone().or(acc.finish.take());
        }
    }
    acc
}

#[test]
fn converse_events_to_openai_chunks() {
    let mut conv = ConverseToChunks::new("m", "chatcmpl-9", 5);
    let mut events = vec![ConverseStreamEvent::MessageStart {
        role: "assistant".into(),
    }];
    events.push(ConverseStreamEvent::ContentBlockDelta {
        content_block_index: 0,
        delta: json!({"reasoningContent": {"text": "thinking"}}),
    });
    events.push(ConverseStreamEvent::ContentBlockStop {
        content_block_index: 0,
    });
    events.extend(text_events(1, &["Let me ", "check."]));
    events.extend([
        ConverseStreamEvent::ContentBlockStop {
            content_block_index: 1,
        },
        ConverseStreamEvent::ContentBlockStart {
            content_block_index: 2,
            start: json!({"toolUse": {"toolUseId": "t1", "name": "top_song"}}),
        },
        ConverseStreamEvent::ContentBlockDelta {
            content_block_index: 2,
            delta: json!({"toolUse": {"input": "{\"sign\":"}}),
        },
        ConverseStreamEvent::ContentBlockDelta {
            content_block_index: 2,
            delta: json!({"toolUse": {"input": "\"WZPZ\"}"}}),
        },
        ConverseStreamEvent::ContentBlockStop {
            content_block_index: 2,
        },
        ConverseStreamEvent::MessageStop {
            stop_reason: "tool_use".into(),
        },
        ConverseStreamEvent::Metadata {
            usage: TokenUsage {
                input_tokens: 4,
                output_tokens: 6,
                total_tokens: 10,
                ..TokenUsage::default()
            },
            metrics: ConverseMetrics { latency_ms: 9 },
        },
    ]);
    let chunks: Vec<ChatChunk> = events.iter().flat_map(|e| conv.on_event(e)).collect();
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "chatcmpl-9" && c.model == "m" && c.object == "chat.completion.chunk")
    );
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let acc = accumulate(&chunks);
    assert_eq!(acc.text, "Let me check.");
    assert_eq!(acc.reasoning, "thinking");
    assert_eq!(
        acc.calls,
        vec![(
            "t1".to_string(),
            "top_song".to_string(),
            "{\"sign\":\"WZPZ\"}".to_string()
        )]
    );
    assert_eq!(acc.finish.as_deref(), Some("tool_calls"));
    assert_eq!(acc.usage.unwrap().total_tokens, 10);
}

/// OpenAI chunks → Converse events → event-stream frames (split everywhere) → events → chunks:
/// the client-visible result is the same.
#[test]
fn stream_round_trip_through_frames() {
    let original = vec![
        delta_chunk(json!({"role": "assistant", "content": ""}), None),
        delta_chunk(json!({"content": "Hello"}), None),
        delta_chunk(json!({"content": ", world"}), None),
        delta_chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            None,
        ),
        delta_chunk(json!({}), Some("tool_calls")),
        usage_chunk(20, 7),
    ];
    let mut to_converse = ChunksToConverse::new();
    let mut wire = Vec::new();
    for c in &original {
        for ev in to_converse.on_chunk(c) {
            wire.extend_from_slice(&ev.to_frame());
        }
    }
    for ev in to_converse.finish(100) {
        wire.extend_from_slice(&ev.to_frame());
    }
    let mut decoder = FrameDecoder::new();
    let mut back = ConverseToChunks::new("m", "c1", 1);
    let mut chunks = Vec::new();
    for piece in wire.chunks(7) {
        for frame in decoder.feed(piece).unwrap() {
            assert_eq!(frame.message_type(), Some("event"));
            let ev = ConverseStreamEvent::from_frame(frame.event_type().unwrap(), &frame.payload)
                .unwrap();
            chunks.extend(back.on_event(&ev));
        }
    }
    decoder.finish().unwrap();
    assert_eq!(accumulate(&chunks), accumulate(&original));
}

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::openai::{ChatChunk, ChunkChoice, Delta, Usage};

fn chunk(delta: Value, finish: Option<&str>) -> ChatChunk {
    let delta: Delta = serde_json::from_value(delta).unwrap();
    ChatChunk {
        id: "c".into(),
        object: "chat.completion.chunk".into(),
        created: 0,
        model: "m".into(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_string),
            extra: Map::new(),
        }],
        usage: None,
        extra: Map::new(),
    }
}

fn usage_chunk(p: u64, c: u64) -> ChatChunk {
    ChatChunk {
        choices: Vec::new(),
        usage: Some(Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
            prompt_tokens_details: None,
        }),
        ..chunk(json!({}), None)
    }
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn text_then_tool_call_stream_in_anthropics_order() {
    let mut enc = ChunksToAnthropic::new("msg_1", "us.m", 5);
    let mut ev = Vec::new();
    for c in [
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Hi"}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                      "function": {"name": "f", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(7, 9),
    ] {
        ev.extend(enc.on_chunk(&c));
    }
    ev.extend(enc.finish());
    assert!(enc.finish().is_empty());
    assert_eq!(
        types(&ev),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[0]["message"]["id"], "msg_1");
    assert_eq!(ev[0]["message"]["usage"]["input_tokens"], 5);
    assert_eq!(ev[3]["delta"], json!({"type": "text_delta", "text": "Hi"}));
    assert_eq!(
        ev[5]["content_block"],
        json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
    );
    assert_eq!(ev[5]["index"], 1);
    assert_eq!(ev[7]["delta"]["partial_json"], "1}");
    assert_eq!(ev[9]["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        ev[9]["usage"],
        json!({"input_tokens": 7, "output_tokens": 9})
    );
    let sse = String::from_utf8(encode_sse_event(&ev[10]).to_vec()).unwrap();
    assert_eq!(
        sse,
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
}

#[test]
fn an_empty_stream_still_is_a_whole_message() {
    let mut enc = ChunksToAnthropic::new("msg_1", "m", 0);
    let ev = enc.finish();
    assert_eq!(
        types(&ev),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
    assert_eq!(ev[2]["delta"]["stop_reason"], "end_turn");
}

/// A random canonical chunk: text, reasoning, a tool call's start or fragment, a finish, usage.
fn any_chunk() -> impl Strategy<Value = ChatChunk> {
    prop_oneof![
        "[a-z ]{0,6}".prop_map(|t| chunk(json!({ "content": t }), None)),
        "[a-z]{0,4}".prop_map(|t| chunk(json!({ "reasoning_content": t }), None)),
        (0u64..3, proptest::option::of("[a-c]{1,2}"), "[{}a:1]{0,4}").prop_map(|(i, id, a)| {
            let mut call = json!({ "index": i, "function": { "arguments": a } });
            if let Some(id) = id {
                call["id"] = json!(id);
                call["function"]["name"] = json!("f");
            }
            chunk(json!({ "tool_calls": [call] }), None)
        }),
        prop_oneof![Just("stop"), Just("length"), Just("tool_calls")]
            .prop_map(|r| chunk(json!({}), Some(r))),
        (0u64..100, 0u64..100).prop_map(|(p, c)| usage_chunk(p, c)),
    ]
}

proptest! {
    /// Any chunk sequence gives one well-formed message: `message_start` first and once, every
    /// block started once with the next index, deltas only to the open block, every start
    /// stopped before the next start and before `message_delta`, `message_stop` last.
    #[test]
    fn any_chunk_sequence_encodes_to_a_well_formed_event_sequence(
        chunks in proptest::collection::vec(any_chunk(), 0..24)
    ) {
        let mut enc = ChunksToAnthropic::new("msg", "m", 1);
        let mut ev = Vec::new();
        for c in &chunks {
            ev.extend(enc.on_chunk(c));
        }
        ev.extend(enc.finish());
        let t = types(&ev);
        prop_assert_eq!(t.first().map(String::as_str), Some("message_start"));
        prop_assert_eq!(t.last().map(String::as_str), Some("message_stop"));
        prop_assert_eq!(t.iter().filter(|x| *x == "message_start").count(), 1);
        prop_assert_eq!(t.iter().filter(|x| *x == "message_delta").count(), 1);
        let mut open: Option<u64> = None;
        let mut next = 0u64;
        let mut after_delta = false;
        for e in &ev {
            match e["type"].as_str().unwrap() {
                "content_block_start" => {
                    prop_assert!(open.is_none() && !after_delta);
                    prop_assert_eq!(e["index"].as_u64(), Some(next));
                    open = Some(next);
                    next += 1;
                }
                "content_block_delta" => prop_assert_eq!(e["index"].as_u64(), open),
                "content_block_stop" => {
                    prop_assert_eq!(e["index"].as_u64(), open);
                    open = None;
                }
                "message_delta" => {
                    prop_assert!(open.is_none());
                    after_delta = true;
                }
                _ => {}
            }
        }
        prop_assert!(after_delta && open.is_none());
    }
}

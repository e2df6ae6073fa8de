//! Converse fixtures in Bedrock's shape (from the API reference's request and response syntax).
use serde_json::{Value, json};

use super::*;

/// A Converse request using every field `ConverseRequest` names, plus fields it keeps in `extra`.
pub(crate) const REQUEST: &str = r#"{
  "messages": [
    {"role": "user", "content": [{"text": "What is the most popular song on WZPZ?"}]},
    {"role": "assistant", "content": [
      {"text": "Let me look that up."},
      {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
                   "input": {"sign": "WZPZ"}}}
    ]},
    {"role": "user", "content": [
      {"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                      "content": [{"json": {"song": "Elemental Hotel", "artist": "8 Storey Hike"}}],
                      "status": "success"}}
    ]}
  ],
  "system": [{"text": "You are a radio DJ."}, {"cachePoint": {"type": "default"}}],
  "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9,
                      "stopSequences": ["\n\nHuman:"]},
  "toolConfig": {
    "tools": [{"toolSpec": {"name": "top_song",
                            "description": "Get the most popular song played on a radio station.",
                            "inputSchema": {"json": {"type": "object",
                              "properties": {"sign": {"type": "string"}},
                              "required": ["sign"]}}}}],
    "toolChoice": {"auto": {}}
  },
  "additionalModelRequestFields": {"top_k": 200},
  "additionalModelResponseFieldPaths": ["/stop_sequence"],
  "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1", "trace": "enabled"},
  "requestMetadata": {"team": "radio"}
}"#;

/// A Converse response that asks for a tool.
pub(crate) const RESPONSE: &str = r#"{
  "output": {"message": {"role": "assistant", "content": [
    {"text": "I'll check the station."},
    {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}}
  ]}},
  "stopReason": "tool_use",
  "usage": {"inputTokens": 375, "outputTokens": 64, "totalTokens": 439},
  "metrics": {"latencyMs": 1337}
}"#;

#[test]
fn request_fixture_parses_and_serialises_back() {
    let req: ConverseRequest = serde_json::from_str(REQUEST).unwrap();
    assert_eq!(req.messages.len(), 3);
    assert_eq!(
        req.messages[0].content[0],
        ContentBlock::Text("What is the most popular song on WZPZ?".into())
    );
    assert!(matches!(
        req.messages[1].content[1],
        ContentBlock::ToolUse(_)
    ));
    assert!(matches!(
        req.messages[2].content[0],
        ContentBlock::ToolResult(_)
    ));
    let system = req.system.as_ref().unwrap();
    assert_eq!(system[0].text.as_deref(), Some("You are a radio DJ."));
    assert!(system[1].extra.contains_key("cachePoint"));
    let cfg = req.inference_config.as_ref().unwrap();
    assert_eq!(cfg.max_tokens, Some(512));
    assert_eq!(cfg.temperature, Some(0.5));
    assert_eq!(cfg.top_p, Some(0.9));
    assert_eq!(
        cfg.stop_sequences.as_deref(),
        Some(&["\n\nHuman:".to_string()][..])
    );
    assert!(req.extra.contains_key("guardrailConfig"));
    assert!(req.extra.contains_key("additionalModelResponseFieldPaths"));

    let back = serde_json::to_value(&req).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(REQUEST).unwrap());
}

#[test]
fn response_fixture_parses_and_serialises_back() {
    let r: ConverseResponse = serde_json::from_str(RESPONSE).unwrap();
    assert_eq!(r.stop_reason, "tool_use");
    assert_eq!(r.usage.total_tokens, 439);
    assert_eq!(r.metrics.latency_ms, 1337);
    assert_eq!(
        r.output.message.content[0].as_text(),
        Some("I'll check the station.")
    );
    assert_eq!(r.output.message.content[1].kind(), "toolUse");
    let back = serde_json::to_value(&r).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(RESPONSE).unwrap());
}

#[test]
fn response_fields_not_named_are_dropped() {
    let mut v: Value = serde_json::from_str(RESPONSE).unwrap();
    v["additionalModelResponseFields"] = json!({"stop_sequence": null});
    v["usage"]["cacheDetails"] = json!([]);
    let r: ConverseResponse = serde_json::from_value(v).unwrap();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::from_str::<Value>(RESPONSE).unwrap()
    );
    // The cache counts are named: kept.
    let mut v: Value = serde_json::from_str(RESPONSE).unwrap();
    v["usage"]["cacheReadInputTokens"] = json!(0);
    let r: ConverseResponse = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&r).unwrap(), v);
}

#[test]
fn other_blocks_are_kept_as_is() {
    let image = json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}});
    let b: ContentBlock = serde_json::from_value(image.clone()).unwrap();
    assert_eq!(b, ContentBlock::Other(image.clone()));
    assert_eq!(b.kind(), "image");
    assert_eq!(serde_json::to_value(&b).unwrap(), image);
}

#[test]
fn a_block_needs_exactly_one_key() {
    for bad in [
        json!({}),
        json!({"text": "a", "image": {}}),
        json!("text"),
        json!({"text": 3}),
    ] {
        assert!(
            serde_json::from_value::<ContentBlock>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn missing_messages_parse_as_empty() {
    let req: ConverseRequest = serde_json::from_str(r#"{"system":[{"text":"x"}]}"#).unwrap();
    assert!(req.messages.is_empty());
}

/// ConverseStream frame payloads as Bedrock sends them (with its `p` padding field).
#[test]
fn stream_events_parse_from_bedrock_payloads() {
    let cases: Vec<(&str, &str, ConverseStreamEvent)> = vec![
        (
            "messageStart",
            r#"{"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM","role":"assistant"}"#,
            ConverseStreamEvent::MessageStart {
                role: "assistant".into(),
            },
        ),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":1,"p":"abcd","start":{"toolUse":{"name":"top_song","toolUseId":"tooluse_1"}}}"#,
            ConverseStreamEvent::ContentBlockStart {
                content_block_index: 1,
                start: json!({"toolUse": {"name": "top_song", "toolUseId": "tooluse_1"}}),
            },
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"abcdefghijklmnopq"}"#,
            ConverseStreamEvent::ContentBlockDelta {
                content_block_index: 0,
                delta: json!({"text": "Hello"}),
            },
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"sign\":"}},"p":"ab"}"#,
            ConverseStreamEvent::ContentBlockDelta {
                content_block_index: 1,
                delta: json!({"toolUse": {"input": "{\"sign\":"}}),
            },
        ),
        (
            "contentBlockStop",
            r#"{"contentBlockIndex":0,"p":"abcdefghijklmnopqrstu"}"#,
            ConverseStreamEvent::ContentBlockStop {
                content_block_index: 0,
            },
        ),
        (
            "messageStop",
            r#"{"p":"abcdefghijklmnop","stopReason":"end_turn"}"#,
            ConverseStreamEvent::MessageStop {
                stop_reason: "end_turn".into(),
            },
        ),
        (
            "metadata",
            r#"{"metrics":{"latencyMs":512},"p":"abc","usage":{"inputTokens":10,"outputTokens":5,"totalTokens":15}}"#,
            ConverseStreamEvent::Metadata {
                usage: TokenUsage {
                    input_tokens: 10,
                    output_tokens: 5,
                    total_tokens: 15,
                    ..TokenUsage::default()
                },
                metrics: ConverseMetrics { latency_ms: 512 },
            },
        ),
    ];
    for (event_type, payload, expected) in cases {
        let ev = ConverseStreamEvent::from_frame(event_type, payload.as_bytes()).unwrap();
        assert_eq!(ev, expected, "{event_type}");
        assert_eq!(ev.event_type(), event_type);
        // payload() is the same JSON without the padding.
        let mut orig: Value = serde_json::from_str(payload).unwrap();
        orig.as_object_mut().unwrap().remove("p");
        assert_eq!(ev.payload(), orig, "{event_type}");
        // and it parses back.
        let again =
            ConverseStreamEvent::from_frame(event_type, ev.payload().to_string().as_bytes())
                .unwrap();
        assert_eq!(again, ev);
    }
}

#[test]
fn text_delta_payload_is_exact() {
    let ev = ConverseStreamEvent::ContentBlockDelta {
        content_block_index: 0,
        delta: json!({"text": "hi"}),
    };
    assert_eq!(
        ev.payload().to_string(),
        r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#
    );
}

#[test]
fn bad_stream_events_are_errors() {
    assert!(matches!(
        ConverseStreamEvent::from_frame("somethingElse", b"{}"),
        Err(BedrockError::EventStream(_))
    ));
    assert!(ConverseStreamEvent::from_frame("messageStop", b"{}").is_err());
    assert!(ConverseStreamEvent::from_frame("contentBlockDelta", b"not json").is_err());
    assert!(
        ConverseStreamEvent::from_frame("contentBlockStop", br#"{"contentBlockIndex":-1}"#)
            .is_err()
    );
}

#[test]
fn usage_converts_both_ways() {
    let u = crate::openai::Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
        total_tokens: 7,
        prompt_tokens_details: None,
    };
    let t = TokenUsage::from(u);
    assert_eq!((t.input_tokens, t.output_tokens, t.total_tokens), (3, 4, 7));
    assert_eq!(crate::openai::Usage::from(t), u);
}

#[test]
fn cached_prompt_tokens_convert_both_ways() {
    // Bedrock counts cache reads and writes beside `inputTokens`; the canonical prompt holds all.
    let t: TokenUsage = serde_json::from_str(
        r#"{"inputTokens":100,"outputTokens":10,"totalTokens":1060,
            "cacheReadInputTokens":900,"cacheWriteInputTokens":50}"#,
    )
    .expect("a Bedrock usage");
    let u = crate::openai::Usage::from(t);
    assert_eq!((u.prompt_tokens, u.completion_tokens), (1050, 10));
    assert_eq!((u.total_tokens, u.cached_tokens()), (1060, Some(900)));
    // Back to a Bedrock client: the cache read apart from the uncached input.
    let back = serde_json::to_value(TokenUsage::from(u)).expect("serialises");
    assert_eq!(
        back,
        serde_json::json!({"inputTokens": 150, "outputTokens": 10, "totalTokens": 1060,
                           "cacheReadInputTokens": 900})
    );
    // A malformed count is no count, and the usage still parses.
    let odd: TokenUsage = serde_json::from_str(
        r#"{"inputTokens":5,"outputTokens":1,"totalTokens":6,"cacheReadInputTokens":"x","cacheWriteInputTokens":null}"#,
    )
    .expect("still a usage");
    assert_eq!(
        (odd.cache_read_input_tokens, odd.cache_write_input_tokens),
        (None, None)
    );
    // No cache report: no cache members, as before.
    let plain = serde_json::to_value(TokenUsage::from(crate::openai::Usage::new(3, 4)))
        .expect("serialises");
    assert_eq!(
        plain,
        serde_json::json!({"inputTokens": 3, "outputTokens": 4, "totalTokens": 7})
    );
}

//! Request and response conversions, both ways.
use serde_json::{Value, json};

use super::*;
use crate::bedrock::converse::{ContentBlock, ConverseRequest, ConverseResponse, TokenUsage};
use crate::bedrock::error::BedrockError;
use crate::openai::{ChatChunk, ChatCompletion, ChatRequest, MessageContent};

const REQUEST: &str = crate::bedrock::converse::tests::REQUEST;
const RESPONSE: &str = crate::bedrock::converse::tests::RESPONSE;

fn converse(v: Value) -> ConverseRequest {
    serde_json::from_value(v).unwrap()
}

pub(super) fn chunk(v: Value) -> ChatChunk {
    let mut base =
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"});
    base.as_object_mut()
        .unwrap()
        .extend(v.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

pub(super) fn delta_chunk(delta: Value, finish: Option<&str>) -> ChatChunk {
    chunk(json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
}

pub(super) fn usage_chunk(p: u64, c: u64) -> ChatChunk {
    chunk(
        json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}),
    )
}

#[test]
fn converse_request_to_chat() {
    let req: ConverseRequest = serde_json::from_str(REQUEST).unwrap();
    let chat = converse_to_chat("demo.chat-small-v1:0", &req, true).unwrap();
    let v = serde_json::to_value(&chat).unwrap();
    assert_eq!(
        v,
        json!({
            "model": "demo.chat-small-v1:0",
            "messages": [
                {"role": "system", "content": "You are a radio DJ."},
                {"role": "user", "content": "What is the most popular song on WZPZ?"},
                {"role": "assistant", "content": "Let me look that up.", "tool_calls": [
                    {"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
                     "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}}]},
                {"role": "tool", "tool_call_id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                 "content": "{\"artist\":\"8 Storey Hike\",\"song\":\"Elemental Hotel\"}"},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 512,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["\n\nHuman:"],
            "tools": [{"type": "function", "function": {
                "name": "top_song",
                "description": "Get the most popular song played on a radio station.",
                "parameters": {"type": "object", "properties": {"sign": {"type": "string"}},
                               "required": ["sign"]}}}],
            "tool_choice": "auto",
            "top_k": 200,
        })
    );
    let plain = converse_to_chat("m", &req, false).unwrap();
    assert!(!plain.is_stream() && !plain.wants_stream_usage());
}

#[test]
fn several_text_blocks_become_parts() {
    let req = converse(
        json!({"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}],
                              "system": [{"text": "s1"}, {"text": "s2"}]}),
    );
    let chat = converse_to_chat("m", &req, false).unwrap();
    let parts = |c: &Option<MessageContent>| match c {
        Some(MessageContent::Parts(p)) => p.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        parts(&chat.messages[0].content),
        vec![
            json!({"type": "text", "text": "s1"}),
            json!({"type": "text", "text": "s2"})
        ]
    );
    assert_eq!(parts(&chat.messages[1].content).len(), 2);
}

#[test]
fn converse_requests_that_are_refused() {
    let err = |v: Value| converse_to_chat("m", &converse(v), false).unwrap_err();
    let e = err(json!({"messages": []}));
    assert_eq!(
        e,
        BedrockError::Validation("messages must not be empty".into())
    );
    let e = err(json!({"messages": [{"role": "user", "content": [
        {"text": "what is this?"},
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]}]}));
    assert!(
        e.to_string()
            .contains("content block type image is not supported"),
        "{e}"
    );
    let e = err(json!({"messages": [{"role": "user", "content": [
        {"document": {"format": "pdf", "name": "d", "source": {"bytes": "JVBE"}}}]}]}));
    assert!(
        e.to_string()
            .contains("content block type document is not supported"),
        "{e}"
    );
    let e = err(json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}));
    assert!(e.to_string().contains("role `system`"), "{e}");
    let e = err(json!({"messages": [{"role": "user", "content": []}]}));
    assert!(e.to_string().contains("no content"), "{e}");
    let e = err(
        json!({"messages": [{"role": "user", "content": [{"text": "x"}]}],
                       "additionalModelRequestFields": [1]}),
    );
    assert!(
        e.to_string().contains("additionalModelRequestFields"),
        "{e}"
    );
}

#[test]
fn cache_points_are_dropped_and_named_fields_are_not_overridden() {
    let req = converse(json!({
        "messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "default"}}]}],
        "inferenceConfig": {"temperature": 0.1},
        "additionalModelRequestFields": {"temperature": 0.9, "stream": true, "top_k": 5},
    }));
    let chat = converse_to_chat("m", &req, false).unwrap();
    assert_eq!(chat.messages.len(), 1);
    assert_eq!(chat.extra["temperature"], json!(0.1));
    assert_eq!(chat.extra["top_k"], json!(5));
    assert!(!chat.extra.contains_key("stream") && chat.stream.is_none());
}

#[test]
fn tool_choice_maps() {
    let with_choice = |choice: Value| {
        let req = converse(json!({
            "messages": [{"role": "user", "content": [{"text": "x"}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}],
                           "toolChoice": choice}}));
        converse_to_chat("m", &req, false).unwrap().extra["tool_choice"].clone()
    };
    assert_eq!(with_choice(json!({"auto": {}})), json!("auto"));
    assert_eq!(with_choice(json!({"any": {}})), json!("required"));
    assert_eq!(
        with_choice(json!({"tool": {"name": "f"}})),
        json!({"type": "function", "function": {"name": "f"}})
    );
}

fn completion(v: Value) -> ChatCompletion {
    serde_json::from_value(v).unwrap()
}

#[test]
fn completion_to_converse() {
    let c = completion(json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}));
    let r = chat_completion_to_converse(&c, 42);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hi there."}]}},
               "stopReason": "end_turn",
               "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
               "metrics": {"latencyMs": 42}})
    );
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "content_filtered"),
    ] {
        let mut c = c.clone();
        c.choices[0].finish_reason = Some(finish.into());
        assert_eq!(chat_completion_to_converse(&c, 0).stop_reason, stop);
    }
}

#[test]
fn completion_with_tool_calls_to_converse() {
    let c = completion(json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}}]}));
    let r = chat_completion_to_converse(&c, 1);
    assert_eq!(r.stop_reason, "tool_use");
    assert_eq!(r.usage, TokenUsage::default());
    assert_eq!(
        r.output.message.content,
        vec![
            ContentBlock::ToolUse(
                json!({"toolUseId": "call_1", "name": "top_song", "input": {"sign": "WZPZ"}})
            ),
            ContentBlock::ToolUse(json!({"toolUseId": "call_2", "name": "f", "input": "not json"})),
        ]
    );
}

#[test]
fn converse_response_to_completion() {
    let r: ConverseResponse = serde_json::from_str(RESPONSE).unwrap();
    let c = converse_to_chat_completion(&r, "us.demo.chat-small-v1:0", "chatcmpl-1", 1700000000);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": "us.demo.chat-small-v1:0",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "I'll check the station.",
                "tool_calls": [{"id": "tooluse_1", "type": "function",
                                "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}}]}}],
            "usage": {"prompt_tokens": 375, "completion_tokens": 64, "total_tokens": 439},
        })
    );
    // And back: the same Converse response.
    assert_eq!(chat_completion_to_converse(&c, 1337), r);
}

#[test]
fn chat_request_to_converse() {
    let req: ChatRequest = serde_json::from_value(json!({
        "model": "us.demo.chat-small-v1:0",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Top song on WZPZ?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Elemental Hotel"},
            {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
        ],
        "max_completion_tokens": 100, "temperature": 0.2, "top_p": 0.8, "stop": "END",
        "tools": [{"type": "function", "function": {"name": "top_song", "description": "d",
                   "parameters": {"type": "object"}}}],
        "tool_choice": "required", "stream": true, "seed": 7,
    }))
    .unwrap();
    let (c, stream) = chat_to_converse(&req).unwrap();
    assert!(stream);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Top song on WZPZ?"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "top_song", "input": {"sign": "WZPZ"}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "Elemental Hotel"}]}},
                    {"text": "Thanks!"}]},
            ],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "topP": 0.8, "stopSequences": ["END"]},
            "toolConfig": {"tools": [{"toolSpec": {"name": "top_song", "description": "d",
                                                   "inputSchema": {"json": {"type": "object"}}}}],
                           "toolChoice": {"any": {}}},
        })
    );
}

#[test]
fn chat_requests_that_are_refused() {
    let err = |v: Value| {
        let req: ChatRequest = serde_json::from_value(v).unwrap();
        chat_to_converse(&req).unwrap_err().to_string()
    };
    assert!(err(json!({"model": "m", "messages": []})).contains("empty"));
    assert!(
        err(json!({"model": "m", "messages": [{"role": "system", "content": "x"}]}))
            .contains("user message")
    );
    assert!(
        err(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}))
            .contains("n > 1")
    );
    assert!(
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
        )
        .contains("image_url")
    );
    assert!(
        err(
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]})
        )
        .contains("not JSON")
    );
}

#[test]
fn converse_to_chat_and_back_keeps_the_conversation() {
    let req: ConverseRequest = serde_json::from_str(REQUEST).unwrap();
    let chat = converse_to_chat("m", &req, false).unwrap();
    let (back, stream) = chat_to_converse(&chat).unwrap();
    assert!(!stream);
    assert_eq!(back.inference_config, req.inference_config);
    assert_eq!(back.messages[..2], req.messages[..2]);
    // The tool result's JSON comes back as text (lossy), with the same id.
    assert_eq!(back.messages[2].content[0].kind(), "toolResult");
    assert_eq!(
        back.system.unwrap()[0].text.as_deref(),
        Some("You are a radio DJ.")
    );
}

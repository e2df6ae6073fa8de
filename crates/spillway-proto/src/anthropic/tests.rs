use serde_json::{Value, json};

use super::*;
use crate::openai::{ChatCompletion, MessageContent};

fn parse(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

fn chat(v: Value) -> Result<crate::ChatRequest, AnthropicError> {
    parse(v).to_chat(Flavor::Api, "us.m", false)
}

#[test]
fn a_tool_round_trip_request_maps_to_openai_messages() {
    let req = chat(json!({
        "model": "us.m", "max_tokens": 64, "system": [{"type": "text", "text": "be brief"}],
        "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"},
        "tools": [{"name": "get_weather", "description": "d",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "20C"}]},
                {"type": "text", "text": "thanks"}]}
        ]
    }))
    .unwrap();
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(v["max_tokens"], 64);
    assert_eq!(v["temperature"], 0.5);
    assert_eq!(v["top_k"], 40);
    assert_eq!(v["stop"], json!(["END"]));
    assert_eq!(v["user"], "u1");
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(v["tools"][0]["function"]["parameters"]["type"], "object");
    let roles: Vec<&str> = req.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    let call = &v["messages"][2]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_1");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(v["messages"][3]["tool_call_id"], "toolu_1");
    assert_eq!(v["messages"][3]["content"], "20C");
    assert_eq!(v["messages"][4]["content"], "thanks");
    assert!(!req.is_stream());
}

#[test]
fn images_become_image_url_parts_and_errors_are_marked() {
    let req = chat(json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
            {"type": "text", "text": "what?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": true}]}
    ]}))
    .unwrap();
    let MessageContent::Parts(parts) = req.messages[0].content.clone().unwrap() else {
        panic!("parts expected");
    };
    assert_eq!(parts[0]["image_url"]["url"], "data:image/png;base64,AAA");
    assert_eq!(
        req.messages[2].content,
        Some(MessageContent::Text("Error: boom".into()))
    );
}

#[test]
fn what_cannot_be_honoured_is_refused_naming_the_field() {
    let base =
        || json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "thinking",
        ),
        (json!({"anthropic_beta": ["x"]}), "anthropic_beta"),
        (json!({"metadata": {"other": 1}}), "metadata.other"),
        (json!({"service_tier": "priority"}), "service_tier"),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "w"}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [{"name": "w", "input_schema": {}, "strict": true}]}),
            "tools[0].strict",
        ),
        (
            json!({"tool_choice": {"type": "sometimes"}}),
            "tool_choice.type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "foo": 1}]}]}),
            "messages[0].content[0].foo",
        ),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (json!({"messages": []}), "messages"),
        (json!({"max_tokens": null}), "max_tokens"),
        (json!({"model": null}), "model"),
    ];
    for (patch, field) in cases {
        let mut body = base();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let err = chat(body).unwrap_err().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
    let err = serde_json::from_value::<MessagesRequest>(json!({"messages": [], "n": 2}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `n`"), "{err}");
}

#[test]
fn the_bedrock_flavor_wants_its_version_and_no_model_or_stream() {
    let body = |extra: Value| {
        let mut b = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        parse(b).to_chat(Flavor::Bedrock, "demo.m", true)
    };
    let req = body(json!({})).unwrap();
    assert!(req.is_stream() && req.wants_stream_usage());
    assert_eq!(req.model, "demo.m");
    for (extra, field) in [
        (json!({"model": "x"}), "model"),
        (json!({"stream": true}), "stream"),
        (json!({"anthropic_version": ""}), "anthropic_version"),
        (json!({"anthropic_version": null}), "anthropic_version"),
    ] {
        let err = body(extra).unwrap_err().to_string();
        assert!(err.starts_with(field), "{err}");
    }
}

#[test]
fn a_completion_becomes_a_message_with_parsed_tool_input() {
    let c: ChatCompletion = serde_json::from_value(json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Calling.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    }))
    .unwrap();
    let m = chat_completion_to_message(&c, "us.m");
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["id"], "msg_abc");
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "us.m");
    assert_eq!(v["stop_reason"], "tool_use");
    assert!(v["stop_sequence"].is_null());
    assert_eq!(v["content"][0], json!({"type": "text", "text": "Calling."}));
    assert_eq!(
        v["content"][1],
        json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}})
    );
    assert_eq!(v["usage"], json!({"input_tokens": 7, "output_tokens": 3}));
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    let none = serde_json::Map::new();
    let mut vllm = serde_json::Map::new();
    vllm.insert("stop_reason".into(), json!("END"));
    assert_eq!(stop_reason(Some("stop"), &none), ("end_turn", None));
    assert_eq!(stop_reason(Some("length"), &none), ("max_tokens", None));
    assert_eq!(stop_reason(Some("tool_calls"), &none), ("tool_use", None));
    assert_eq!(
        stop_reason(Some("stop"), &vllm),
        ("stop_sequence", Some("END".to_string()))
    );
    assert_eq!(stop_reason(None, &none), ("end_turn", None));
}

#[test]
fn cached_prompt_tokens_are_reported_as_cache_reads() {
    let cached = crate::openai::Usage {
        prompt_tokens_details: Some(crate::openai::PromptTokensDetails {
            cached_tokens: 1536,
        }),
        ..crate::openai::Usage::new(2048, 5)
    };
    assert_eq!(
        serde_json::to_value(MessagesUsage::from(cached)).expect("serialises"),
        json!({"input_tokens": 512, "cache_read_input_tokens": 1536, "output_tokens": 5})
    );
    assert_eq!(
        serde_json::to_value(MessagesUsage::from(crate::openai::Usage::new(9, 1)))
            .expect("serialises"),
        json!({"input_tokens": 9, "output_tokens": 1})
    );
}

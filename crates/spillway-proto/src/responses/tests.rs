//! The request conversion: what maps, and what is refused by name.
use serde_json::{Value, json};

use super::*;

fn req(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

fn refused(v: Value) -> String {
    req(v).to_chat().unwrap_err().param
}

#[test]
fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
    let chat = req(
        json!({"model": "us.m", "input": "hi", "instructions": "be brief",
        "max_output_tokens": 7, "temperature": 0.5, "user": "u1", "metadata": {"k": "v"}}),
    )
    .to_chat()
    .unwrap();
    let v = serde_json::to_value(&chat).unwrap();
    assert_eq!(
        v["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(chat.output_cap(), Some(7));
    assert_eq!(v["temperature"], 0.5);
    assert_eq!(v["user"], "u1");
    assert!(
        v.get("metadata").is_none(),
        "metadata is echoed, not sent upstream"
    );
}

#[test]
fn items_map_to_chat_messages_and_tool_calls() {
    let chat = req(json!({"model": "m", "input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"}}))
    .to_chat()
    .unwrap();
    let v = serde_json::to_value(&chat).unwrap();
    let m = &v["messages"];
    assert_eq!(m[0]["role"], "system");
    assert_eq!(
        m[1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
    );
    assert_eq!(
        m[2]["tool_calls"].as_array().unwrap().len(),
        2,
        "consecutive calls are one message"
    );
    assert_eq!(m[2]["tool_calls"][1]["function"]["arguments"], "{\"a\":1}");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "42"})
    );
    assert_eq!(m[4]["content"][0], json!({"type": "text", "text": "ok"}));
    assert_eq!(v["tools"][0]["function"]["name"], "f");
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
}

#[test]
fn what_does_not_map_is_refused_by_name() {
    let base = |k: &str, val: Value| {
        let mut v = json!({"model": "m", "input": "hi"});
        v[k] = val;
        refused(v)
    };
    assert_eq!(
        base("previous_response_id", json!("resp_1")),
        "previous_response_id"
    );
    assert_eq!(base("store", json!(true)), "store");
    assert_eq!(base("background", json!(true)), "background");
    assert_eq!(base("reasoning", json!({"effort": "high"})), "reasoning");
    assert_eq!(
        base("include", json!(["file_search_call.results"])),
        "include"
    );
    assert_eq!(base("frobnicate", json!(1)), "frobnicate");
    assert_eq!(
        base("tools", json!([{"type": "web_search"}])),
        "tools[0].type"
    );
    assert_eq!(
        base("tool_choice", json!({"type": "web_search"})),
        "tool_choice"
    );
    assert_eq!(
        refused(json!({"model": "m", "input": [{"type": "reasoning", "summary": []}]})),
        "input[0].type"
    );
    assert_eq!(
        refused(
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]})
        ),
        "input[0].content[0].type"
    );
    assert_eq!(refused(json!({"model": "m", "input": []})), "input");
    // Harmless values are accepted.
    let ok = req(
        json!({"model": "m", "input": "hi", "store": false, "truncation": "disabled", "text": {"format": {"type": "text"}}}),
    );
    assert!(ok.to_chat().is_ok());
}

#[test]
fn a_whole_completion_becomes_a_response_object() {
    let c: crate::ChatCompletion = serde_json::from_value(json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "hel",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}))
    .unwrap();
    let echo = req(json!({"model": "m", "input": "hi"})).echo("resp_abc".into(), 9);
    let r = response_object(&echo, &c);
    assert_eq!(
        (r["object"].as_str(), r["status"].as_str()),
        (Some("response"), Some("incomplete"))
    );
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(
        r["output"][0]["content"][0],
        json!({"type": "output_text", "text": "hel", "annotations": []})
    );
    assert_eq!(r["output"][1]["type"], "function_call");
    assert_eq!(r["output"][1]["call_id"], "c1");
    assert_eq!(r["usage"]["total_tokens"], 5);
    assert_eq!(r["created_at"], 9);
}

#[test]
fn usage_carries_the_cached_prompt_tokens() {
    let cached = crate::openai::Usage {
        prompt_tokens_details: Some(crate::openai::PromptTokensDetails {
            cached_tokens: 1024,
        }),
        ..crate::openai::Usage::new(2048, 5)
    };
    let u = output::usage_of(&cached);
    assert_eq!(
        (
            &u["input_tokens"],
            &u["input_tokens_details"]["cached_tokens"]
        ),
        (&json!(2048), &json!(1024))
    );
    let plain = output::usage_of(&crate::openai::Usage::new(9, 1));
    assert_eq!(plain["input_tokens_details"]["cached_tokens"], 0);
}

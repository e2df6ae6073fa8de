//! Streams folded into the completion the upstream would have answered.
#![allow(clippy::unwrap_used)]
use serde_json::{Value, json};
use spillway_proto::ChatChunk;

use super::Assembly;

fn fold(chunks: &[Value]) -> Value {
    let mut a = Assembly::new();
    for c in chunks {
        let chunk: ChatChunk = serde_json::from_value(c.clone()).unwrap();
        a.add(&chunk);
    }
    serde_json::to_value(a.finish()).unwrap()
}

fn chunk(choices: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7,
           "model": "m", "system_fingerprint": "fp", "choices": choices})
}

#[test]
fn text_usage_and_the_finish_reason() {
    let got = fold(&[
        chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}}])),
        chunk(json!([{"index": 0, "delta": {"content": "Hel"}}])),
        chunk(json!([{"index": 0, "delta": {"content": "lo"}}])),
        chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
               "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
    ]);
    assert_eq!(
        got,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
            "system_fingerprint": "fp",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        })
    );
}

#[test]
fn tool_calls_merge_by_index_and_content_stays_null() {
    let got = fold(&[
        chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": null,
            "tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                            "function": {"name": "weather", "arguments": ""}}]}}]),
        ),
        chunk(json!([{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "{\"city\":"}}]}}])),
        chunk(json!([{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "call_b", "type": "function",
             "function": {"name": "time", "arguments": "{}"}},
            {"index": 0, "function": {"arguments": "\"Paris\"}"}}]}}])),
        chunk(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
    ]);
    let choice = &got["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "call_a", "type": "function",
             "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        ])
    );
    assert!(got.get("usage").is_none(), "no usage chunk, no usage");
}

#[test]
fn choices_fold_apart_and_other_fields_add_up() {
    let lp = |t: &str| json!({"token": t, "logprob": -0.5});
    let got = fold(&[
        chunk(json!([
            {"index": 1, "delta": {"content": "B"}, "logprobs": {"content": [lp("B")]}},
            {"index": 0, "delta": {"reasoning_content": "thinking ", "content": "A"},
             "logprobs": {"content": [lp("A")]}},
        ])),
        chunk(json!([
            {"index": 0, "delta": {"reasoning_content": "done", "content": "a"},
             "logprobs": {"content": [lp("a")]}},
            {"index": 1, "delta": {"content": "b"}, "logprobs": null, "finish_reason": "length"},
        ])),
    ]);
    let c = got["choices"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(
        (c[0]["index"].clone(), c[1]["index"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(c[0]["message"]["content"], "Aa");
    assert_eq!(c[0]["message"]["reasoning_content"], "thinking done");
    assert_eq!(c[0]["message"]["role"], "assistant", "the default role");
    assert_eq!(c[0]["logprobs"]["content"], json!([lp("A"), lp("a")]));
    assert_eq!(c[1]["message"]["content"], "Bb");
    assert_eq!(
        c[1]["logprobs"]["content"],
        json!([lp("B")]),
        "a null adds nothing"
    );
    assert_eq!(c[1]["finish_reason"], "length");
    assert_eq!(c[0]["finish_reason"], Value::Null);
}

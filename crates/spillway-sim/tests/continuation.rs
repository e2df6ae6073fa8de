//! Seeded text, continuations (`continue_final_message`) and the mid-answer engine error, over
//! real HTTP: what mid-stream failover tests rely on. A stitched answer (the first leg's text,
//! then a continuation's) must equal the unbroken answer token for token.
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use serde_json::{Value, json};
use spillway_proto::sse::DONE;
use spillway_proto::tokens::prompt_tokens;
use spillway_proto::{ChatChunk, ChatCompletion, ChatMessage, Usage};
use spillway_sim::{Fault, SimConfig, SimHandle, completion_text, prompt_fingerprint, seeded_text};

/// A region of a model with these weights (`text_seed`) and this fault sampler (`seed`).
fn region(name: &str, seed: u64, text_seed: Option<u64>) -> SimConfig {
    SimConfig {
        seed,
        text_seed,
        default_max_tokens: 12,
        ..fast(name)
    }
}

/// What one completion said: its text, finish reason and usage.
#[derive(Debug, PartialEq)]
struct Answer {
    text: String,
    finish: String,
    usage: Usage,
}

/// Sends `body` (streamed when `stream`, with the usage chunk) and reads the whole answer.
async fn answer(sim: &SimHandle, mut body: Value, stream: bool, id: &str) -> Answer {
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let resp = chat(sim, body)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{id}");
    if !stream {
        let c: ChatCompletion = resp.json().await.unwrap();
        let choice = &c.choices[0];
        return Answer {
            text: choice.message.content.clone().unwrap(),
            finish: choice.finish_reason.clone().unwrap(),
            usage: c.usage.unwrap(),
        };
    }
    let events = sse_events(resp).await;
    assert_eq!(events.last().map(String::as_str), Some(DONE), "{id}");
    let chunks: Vec<ChatChunk> = events[..events.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut a = Answer {
        text: String::new(),
        finish: String::new(),
        usage: Usage::default(),
    };
    for c in chunks {
        if let Some(u) = c.usage {
            a.usage = u;
        }
        for choice in c.choices {
            a.text += choice.delta.content.as_deref().unwrap_or("");
            if let Some(f) = choice.finish_reason {
                a.finish = f;
            }
        }
    }
    a
}

/// `messages` followed by the partial assistant message `prefix`.
fn with_prefix(messages: &Value, prefix: &str) -> Value {
    let mut m = messages.clone();
    m.as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": prefix}));
    m
}

/// The continuation of `messages`' answer after `prefix`, as the gateway sends it.
fn continuation(messages: &Value, prefix: &str) -> Value {
    json!({"model": MODEL, "messages": with_prefix(messages, prefix),
        "continue_final_message": true, "add_generation_prompt": false})
}

fn prompt_of(messages: &Value) -> u64 {
    let parsed: Vec<ChatMessage> = serde_json::from_value(messages.clone()).unwrap();
    prompt_tokens(&parsed)
}

/// The first `k` tokens of a sim answer (four characters each).
fn first_tokens(text: &str, k: u64) -> &str {
    &text[..4 * k as usize]
}

#[tokio::test]
async fn seeded_text_belongs_to_the_model_not_the_region() {
    let east = start(region("us-east-1", 1, Some(42))).await;
    let west = start(region("us-west-2", 2, Some(42))).await;
    let plain = start(region("eu-west-1", 1, None)).await;
    let other = json!([{"role": "user", "content": "And the second nearest?"}]);
    let mut seen = Vec::new();
    for (i, msgs) in [messages(), other].into_iter().enumerate() {
        let body = json!({"model": MODEL, "messages": msgs, "max_tokens": 24});
        let a = answer(&east, body.clone(), false, &format!("e{i}")).await;
        let b = answer(&west, body.clone(), true, &format!("w{i}")).await;
        assert_eq!(a, b, "same weights, same answer, streamed or not");
        assert_eq!(a.text, seeded_text(42, prompt_fingerprint(&msgs), 0, 24));
        assert_eq!(a.usage.completion_tokens, 24);
        let unseeded = answer(&plain, body, false, &format!("p{i}")).await;
        assert_eq!(
            unseeded.text,
            completion_text(24),
            "no text seed: today's text"
        );
        seen.push(a.text);
    }
    assert_ne!(seen[0], seen[1], "another prompt, another answer");
}

/// For every split point `k`, capped or not, streamed or not, seeded or not: the first `k`
/// tokens of the unbroken answer plus the continuation after them is the unbroken answer, with
/// the usage and the record of a continuation of `k` tokens.
#[tokio::test]
async fn every_split_point_stitches_back_to_the_unbroken_answer() {
    let msgs = messages();
    for text_seed in [Some(7), None] {
        let first = start(region("us-east-1", 1, text_seed)).await;
        let second = start(region("us-west-2", 2, text_seed)).await;
        // Uncapped: `default_max_tokens` (12) and `stop`; capped at 15 (above the default): `length`.
        for cap in [None, Some(15u64)] {
            let mut whole_req = json!({"model": MODEL, "messages": msgs});
            if let Some(c) = cap {
                whole_req["max_completion_tokens"] = json!(c);
            }
            let whole = answer(&first, whole_req, false, "whole").await;
            let n = cap.unwrap_or(12);
            assert_eq!(whole.usage.completion_tokens, n);
            for k in 0..=n {
                let prefix = first_tokens(&whole.text, k);
                let mut req = continuation(&msgs, prefix);
                if let Some(c) = cap {
                    req["max_tokens"] = json!(c - k);
                }
                for stream in [false, true] {
                    let id = format!("{text_seed:?}-{cap:?}-{k}-{stream}");
                    let rest = answer(&second, req.clone(), stream, &id).await;
                    assert_eq!(format!("{prefix}{}", rest.text), whole.text, "{id}");
                    assert_eq!(rest.finish, whole.finish, "{id}");
                    let prompt = prompt_of(&with_prefix(&msgs, prefix));
                    assert_eq!(
                        rest.usage,
                        Usage::new(prompt, n - k),
                        "{id}: the prefix is input now"
                    );
                    let rec = record(&second, &id).await;
                    assert_eq!((rec.outcome.as_str(), rec.continued_from), ("ok", Some(k)));
                    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (prompt, n - k));
                }
            }
        }
        assert_eq!(
            record(&first, "whole").await.continued_from,
            None,
            "a plain request is no continuation"
        );
    }
}

#[tokio::test]
async fn a_continuation_past_the_default_length_writes_nothing() {
    let sim = start(region("us-east-1", 1, Some(3))).await;
    let msgs = messages();
    let long = seeded_text(3, prompt_fingerprint(&msgs), 0, 20);
    let rest = answer(&sim, continuation(&msgs, &long), true, "long").await;
    assert_eq!((rest.text.as_str(), rest.finish.as_str()), ("", "stop"));
    assert_eq!(rest.usage.completion_tokens, 0);
    assert_eq!(record(&sim, "long").await.continued_from, Some(20));
}

#[tokio::test]
async fn continue_final_message_without_an_assistant_message_is_a_400() {
    let sim = start(region("us-east-1", 1, Some(3))).await;
    let body = json!({"model": MODEL, "messages": messages(), "continue_final_message": true});
    let resp = chat(&sim, body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(sim.served()[0].outcome, "invalid");
}

/// Sends a streamed request and returns its events (status 200, whatever the ending).
async fn events_of(sim: &SimHandle, body: Value, id: &str) -> Vec<String> {
    let resp = chat(sim, body)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sse_events(resp).await
}

/// The engine error set over `POST /admin/fault`: a stream gets the role chunk, three tokens and
/// one error event, then ends cleanly without `[DONE]`; a non-streamed request gets a 500. The
/// text it streamed, continued in another region, is the unbroken answer.
#[tokio::test]
async fn error_event_fault_ends_a_stream_after_k_tokens_and_the_rest_continues_elsewhere() {
    let broken = start(region("us-east-1", 1, Some(9))).await;
    let healthy = start(region("us-west-2", 2, Some(9))).await;
    let admin = format!("http://{}/admin/fault", broken.addr());
    let resp = client()
        .post(&admin)
        .json(&json!({"error_event_after_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(broken.fault().error_event_after_tokens, Some(3));

    let msgs = messages();
    let body = json!({"model": MODEL, "messages": msgs, "max_tokens": 8, "stream": true});
    let events = events_of(&broken, body.clone(), "leg1").await;
    assert_eq!(events.len(), 5, "role, 3 tokens, the error: {events:?}");
    assert!(events.iter().all(|e| e != DONE));
    let chunks: Vec<ChatChunk> = events[..4]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert!(chunks.iter().all(|c| c.choices[0].finish_reason.is_none()));
    let relayed: String = chunks[1..]
        .iter()
        .map(|c| c.choices[0].delta.content.clone().unwrap())
        .collect();
    let err: Value = serde_json::from_str(&events[4]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert_eq!(err["error"]["code"], "engine_error");
    let rec = record(&broken, "leg1").await;
    assert_eq!((rec.outcome.as_str(), rec.completion_tokens), ("error", 3));

    let mut rest_req = continuation(&msgs, &relayed);
    rest_req["max_tokens"] = json!(5);
    let rest = answer(&healthy, rest_req, true, "leg2").await;
    let unbroken = seeded_text(9, prompt_fingerprint(&msgs), 0, 8);
    assert_eq!(relayed.clone() + &rest.text, unbroken);
    assert_eq!(record(&healthy, "leg2").await.continued_from, Some(3));

    let mut unary = body;
    unary["stream"] = json!(false);
    let resp = chat(&broken, unary.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "engine_error");

    // Set in process, past the answer's end: the answer is whole.
    broken.set_fault(Fault {
        error_event_after_tokens: Some(9),
        ..Fault::default()
    });
    let fault: Value = client()
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fault["error_event_after_tokens"], 9);
    let whole = answer(&broken, unary, true, "whole").await;
    assert_eq!((whole.text, whole.finish.as_str()), (unbroken, "length"));
}

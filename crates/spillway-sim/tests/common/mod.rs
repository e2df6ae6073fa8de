//! Helpers shared by the HTTP tests: start a simulator on 127.0.0.1:0, build requests, wait for
//! observable conditions with a deadline (never sleep to guess timing).
#![allow(dead_code, clippy::unwrap_used)]
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spillway_proto::ChatMessage;
use spillway_proto::sse::SseDecoder;
use spillway_proto::tokens::prompt_tokens;
use spillway_sim::{ServedRecord, SimConfig, SimHandle};

pub const MODEL: &str = "demo.chat-small-v1:0";

pub async fn start(cfg: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spillway_sim::spawn(cfg, listener).await.unwrap()
}

pub fn fast(region: &str) -> SimConfig {
    SimConfig {
        region: region.into(),
        time_scale: 1000.0,
        ..SimConfig::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn messages() -> Value {
    json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Where is the nearest region with capacity?"}
    ])
}

pub fn expected_prompt_tokens() -> u64 {
    let msgs: Vec<ChatMessage> = serde_json::from_value(messages()).unwrap();
    prompt_tokens(&msgs)
}

pub fn chat(sim: &SimHandle, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .json(&body)
}

/// Waits (bounded) until `cond` holds; panics with `what` otherwise.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The record with this request id, once it exists.
pub async fn record(sim: &SimHandle, id: &str) -> ServedRecord {
    let find = || {
        sim.served()
            .into_iter()
            .find(|r| r.request_id.as_deref() == Some(id))
    };
    eventually(&format!("a record for {id}"), || find().is_some()).await;
    find().unwrap()
}

/// All SSE events of a complete body.
pub async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let mut dec = SseDecoder::new();
    let bytes = resp.bytes().await.unwrap();
    dec.feed(&bytes).into_iter().map(|e| e.data).collect()
}

/// Waits until a request has reached the chat handler (its model is then listed by
/// `/v1/models`), for requests that leave no other trace yet (hung ones).
pub async fn reached_handler(sim: &SimHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let models: Value = client()
            .get(format!("{}/models", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if models["data"].as_array().is_some_and(|d| !d.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "no request reached the handler");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

//! The prefix cache end to end through the chat-completions handler, on tokio's paused clock:
//! the time a request takes is its prefill plus its decode, exactly.
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::{PrefixCacheStats, SimConfig};

/// 1 ms a prompt token, 1 ms the one output token.
fn sim(prefix_cache_blocks: u64) -> (Arc<Sim>, watch::Sender<bool>) {
    let cfg = SimConfig {
        prefill_tokens_per_sec: 1000.0,
        decode_tokens_per_sec: 1000.0,
        prefix_cache_blocks,
        ..SimConfig::default()
    };
    let (tx, rx) = watch::channel(false);
    (Sim::new(cfg, rx), tx)
}

/// A user message whose canonical text (`user\n` + content + `\n`) is three full blocks, made
/// of `a`, `b` and `third`, and 101 characters more: 1564 prompt tokens.
fn content(third: char) -> String {
    let block = |c: char| c.to_string().repeat(2048);
    format!(
        "{}{}{}{}",
        &block('a')[5..],
        block('b'),
        block(third),
        "t".repeat(100)
    )
}

const PROMPT: u64 = 4 + (2043 + 2048 + 2048 + 100_u64).div_ceil(4);

fn body(content: &str, stream: bool) -> Value {
    json!({
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 1,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

/// Sends one request; returns how long it took and its usage (the streamed usage chunk's).
async fn ask(sim: &Arc<Sim>, body: Value) -> (Duration, Value) {
    let t0 = Instant::now();
    let res = chat_completions(
        State(sim.clone()),
        HeaderMap::new(),
        Bytes::from(body.to_string()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let took = t0.elapsed();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let usage = if body["stream"] == true {
        let mut dec = spillway_proto::SseDecoder::new();
        dec.feed(text.as_bytes())
            .into_iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .find(|v| v["usage"].is_object())
            .map(|v| v["usage"].clone())
            .unwrap()
    } else {
        serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
    };
    (took, usage)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn cached_blocks_shorten_the_prefill() {
    let (sim, _stop) = sim(64);
    let (cold, u) = ask(&sim, body(&content('c'), false)).await;
    assert_eq!(cold, ms(PROMPT + 1));
    assert_eq!(u["prompt_tokens"], PROMPT);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
    // The same prompt: three blocks cached, the rest (28 tokens) prefilled.
    let (warm, u) = ask(&sim, body(&content('c'), false)).await;
    assert_eq!(warm, ms(PROMPT - 3 * 512 + 1));
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 1536);
    assert_eq!(u["total_tokens"], PROMPT + 1);
    // Another third block: two blocks cached. Streamed, the usage chunk says so.
    let (other, u) = ask(&sim, body(&content('z'), true)).await;
    assert_eq!(other, ms(PROMPT - 2 * 512 + 1));
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 1024);
    assert_eq!(
        sim.prefix.stats(),
        PrefixCacheStats {
            capacity_blocks: 64,
            resident_blocks: 4,
            evicted_blocks: 0,
            requests: 3,
            hit_blocks: 5,
            miss_blocks: 4,
            cached_tokens: 2560,
            prefill_tokens: 3 * PROMPT - 2560,
        }
    );
    let cached: Vec<Option<u64>> = sim
        .recorder
        .snapshot()
        .iter()
        .map(|r| r.cached_tokens)
        .collect();
    assert_eq!(cached, vec![Some(0), Some(1536), Some(1024)]);
}

#[tokio::test(start_paused = true)]
async fn off_keeps_the_whole_prefill_and_plain_usage() {
    let (sim, _stop) = sim(0);
    for stream in [false, false, true] {
        let (took, u) = ask(&sim, body(&content('c'), stream)).await;
        assert_eq!(took, ms(PROMPT + 1));
        assert_eq!(
            u,
            json!({"prompt_tokens": PROMPT, "completion_tokens": 1, "total_tokens": PROMPT + 1})
        );
    }
    let s = sim.prefix.stats();
    assert_eq!((s.requests, s.hit_blocks, s.miss_blocks), (3, 0, 0));
    assert_eq!((s.cached_tokens, s.prefill_tokens), (0, 3 * PROMPT));
    assert!(
        sim.recorder
            .snapshot()
            .iter()
            .all(|r| r.cached_tokens.is_none())
    );
}

#[tokio::test(start_paused = true)]
async fn a_prefill_cut_short_caches_nothing() {
    let (sim, _stop) = sim(64);
    let req = chat_completions(
        State(sim.clone()),
        HeaderMap::new(),
        Bytes::from(body(&content('c'), false).to_string()),
    );
    // The client goes away half-way through the prefill.
    assert!(tokio::time::timeout(ms(PROMPT / 2), req).await.is_err());
    let s = sim.prefix.stats();
    assert_eq!((s.requests, s.miss_blocks, s.resident_blocks), (1, 3, 0));
    let (took, _) = ask(&sim, body(&content('c'), false)).await;
    assert_eq!(took, ms(PROMPT + 1), "nothing was cached");
}

//! The prefix cache over real HTTP: a repeated long prompt reports its cached tokens, and
//! `GET /admin/stats` counts hits, misses and prefill tokens (timings are tested on tokio's
//! paused clock beside the handler).
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use serde_json::{Value, json};
use spillway_sim::{PrefixCacheStats, SimConfig};

fn long_prompt() -> Value {
    // `user\n` + 4100 characters + `\n`: two full blocks.
    json!([{"role": "user", "content": "spill ".repeat(700)[..4100].to_string()}])
}

#[tokio::test]
async fn a_repeated_prompt_is_served_from_the_cache_and_counted() {
    let sim = start(SimConfig {
        prefix_cache_blocks: 16,
        ..fast("eu-west-1")
    })
    .await;
    let mut cached = Vec::new();
    for _ in 0..2 {
        let resp = chat(
            &sim,
            json!({"model": MODEL, "messages": long_prompt(), "max_tokens": 2}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["usage"]["prompt_tokens"], 4 + 4100 / 4);
        cached.push(v["usage"]["prompt_tokens_details"]["cached_tokens"].clone());
    }
    assert_eq!(cached, vec![json!(0), json!(1024)]);
    let stats: Value = client()
        .get(format!("http://{}/admin/stats", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["region"], "eu-west-1");
    let s: PrefixCacheStats = serde_json::from_value(stats["prefix_cache"].clone()).unwrap();
    assert_eq!(s, sim.stats());
    assert_eq!(
        (s.requests, s.hit_blocks, s.miss_blocks, s.resident_blocks),
        (2, 2, 2, 2)
    );
    assert_eq!(
        (s.cached_tokens, s.prefill_tokens),
        (1024, 2 * (4 + 1025) - 1024)
    );
}

#[tokio::test]
async fn without_a_cache_usage_has_no_details() {
    let sim = start(fast("eu-west-1")).await;
    for _ in 0..2 {
        let v: Value = chat(
            &sim,
            json!({"model": MODEL, "messages": long_prompt(), "max_tokens": 2}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert!(v["usage"].get("prompt_tokens_details").is_none(), "{v}");
    }
    assert_eq!(sim.stats().capacity_blocks, 0);
    assert_eq!(sim.stats().hit_blocks, 0);
}

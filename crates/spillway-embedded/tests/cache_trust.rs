//! The prefix estimate checked against the upstream's own count, from outside: every deployment
//! is configured with a prefix cache of 256 blocks (what the routing models), and the same long
//! prompt is sent again and again to one region, whose simulator reports the prompt tokens it
//! read from its own cache. Where that cache holds the prompt, its reports bear the gateway's
//! estimate out and `spillway_deployment_prefix_cache_trust` stays at 1; where it is one block
//! long (an engine whose cache is far smaller than configured), every report says one block of
//! the three expected was read and the gauge moves an eighth of the way to a third with each;
//! where it keeps no cache and reports nothing, the gauge stays at 1. Every request is checked
//! against its destination set.
mod common;

use common::*;
use serde_json::json;

/// A prompt of `blocks` full 512-token blocks (2,048 characters each) and a short tail.
fn long_body(blocks: usize) -> serde_json::Value {
    let text: String = "the same conversation again "
        .chars()
        .cycle()
        .take(2_048 * blocks + 100)
        .collect();
    json!({
        "model": M,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
    })
}

/// `spillway_deployment_prefix_cache_trust` of `M` in `region`, from a classic-text scrape.
async fn trust(h: &Harness, region: &str) -> f64 {
    let url = format!("http://{}/metrics", h.gw().admin_addr());
    let text = h
        .client
        .get(url)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let series = format!("region=\"{region}\"");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("spillway_deployment_prefix_cache_trust{")
                && l.contains(&series)
                && l.contains(&format!("model=\"{M}\""))
        })
        .unwrap_or_else(|| panic!("no trust gauge for {region} in:\n{text}"));
    let value = line.rsplit(' ').next().expect("a value");
    value.parse().expect("a number")
}

/// Sends the same three-block prompt `n` times to us-east-1 (a plain model id: served there)
/// and returns the gauge after each answer.
async fn trust_after_each(cache_blocks: Option<u64>, n: usize) -> Vec<f64> {
    let mut spec = Spec::standard();
    spec.prefix_cache_blocks = cache_blocks;
    spec.modelled_cache_blocks = Some(256);
    let h = Harness::start(spec).await;
    assert_eq!(trust(&h, "us-east-1").await, 1.0, "before any report");
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = h.chat("us-east-1", long_body(3)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.push(trust(&h, "us-east-1").await);
    }
    assert_eq!(h.assert_residency(), n);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_whose_cache_keeps_less_than_modelled_loses_that_share_of_the_credit() {
    let seen = trust_after_each(Some(1), 12).await;
    // The first request was expected to find nothing cached: it teaches nothing.
    assert_eq!(seen[0], 1.0, "{seen:?}");
    // Every later one was expected to find three blocks and was told of one: an eighth of
    // the way to a third per report.
    let third = 1.0 / 3.0;
    for pair in seen.windows(2) {
        let want = pair[0] + (third - pair[0]) / 8.0;
        assert!((pair[1] - want).abs() < 1e-9, "{seen:?}");
    }
    let last = seen[seen.len() - 1];
    assert!(last > third && last < 0.5, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_holds_the_prompt_keeps_it_and_one_that_does_not_report_teaches_nothing() {
    let held = trust_after_each(Some(256), 6).await;
    assert!(held.iter().all(|&t| t == 1.0), "{held:?}");
    let silent = trust_after_each(None, 4).await;
    assert!(silent.iter().all(|&t| t == 1.0), "{silent:?}");
}

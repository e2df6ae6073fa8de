//! The short wait in a full source (`[routing] source_wait`, `source_wait_ttft`) through the real
//! gateway and simulators: the gateway learns the source's hold time and prefill time per input
//! token from streamed answers, then, with the source full, keeps a short prompt waiting there
//! and spills a long one; with the TTFT bound lifted, the long one waits too. A source whose
//! upstream does not queue (a hard cap) refuses the first request sent to wait; the gateway falls
//! over to another region, spills the next ones straight away, and does not cool the source
//! down for it.
mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A streamed request whose prompt is about `tokens` tokens (four characters a token).
fn sized_stream(model: &str, tokens: usize, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "abcd".repeat(tokens)}],
        "max_tokens": max_tokens,
        "stream": true,
    })
}

/// Streams `body` from us-east-1 to its end; the serving region and route reason.
async fn streamed(h: &Harness, body: Value) -> (String, String, String) {
    let (id, resp) = h.stream("us-east-1", body).await;
    assert_eq!(resp.status(), StatusCode::OK, "{id}");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (region, reason) = (
        header("x-spillway-region"),
        header("x-spillway-route-reason"),
    );
    let events = Sse::new(resp).rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{id}");
    (id, region, reason)
}

async fn run(ttft_factor: &str) -> Harness {
    // No `source_queue`: the short wait stands on its own.
    let mut spec = Spec::standard()
        .routing("source_wait", "1")
        .routing("source_wait_ttft", ttft_factor);
    // One slot in the source; 1,000 prompt tokens take 100 ms to prefill there.
    let dep = spec.dep(M, "us-east-1");
    dep.max_in_flight = 1;
    dep.upstream = Upstream::SimPrefill(10_000.0);
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");

    // Learn: streamed 1,000-token prompts, one at a time (each finds the slot free).
    for _ in 0..8 {
        let (_, region, reason) = streamed(&h, sized_stream(&profile, 1_000, 2)).await;
        assert_eq!((region.as_str(), reason.as_str()), ("us-east-1", "local"));
    }
    h
}

/// Sends `body` while the source's only slot is held, expecting it to wait there: it shows as a
/// second request at the source simulator, and is served there once the slot frees.
async fn waits_in_the_source(h: &Harness, hold: Sse, body: Value) {
    let sim = h.sim("us-east-1");
    let waiting = async {
        let r = streamed(h, body).await;
        assert_eq!(
            (r.1.as_str(), r.2.as_str()),
            ("us-east-1", "local"),
            "{r:?}"
        );
    };
    let release = async {
        eventually("a request waits at the source", || sim.in_flight() == 2).await;
        drop(hold);
    };
    tokio::join!(waiting, release);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_source_keeps_a_short_prompt_and_spills_a_long_one() {
    let h = run("1.5").await;
    let profile = format!("us.{M}");
    let hold = h.hold("us-east-1", M, "us-east-1").await;

    // A long prompt (its own prefill is the mean TTFT, plus a slot's wait: 2 × the mean, over
    // the 1.5 bound) spills at once, within the profile's regions.
    let (id, region, reason) = streamed(&h, sized_stream(&profile, 1_000, 2)).await;
    assert_eq!(reason, "spill:capacity", "{id}");
    assert!(
        ["us-east-2", "us-west-2"].contains(&region.as_str()),
        "{id} in {region}"
    );

    // A short prompt (a slot's wait plus almost no prefill: about 1 × the mean) waits.
    waits_in_the_source(&h, hold, sized_stream(&profile, 10, 2)).await;
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ttft_bound_a_long_prompt_waits_too() {
    let h = run("inf").await;
    let profile = format!("us.{M}");
    let hold = h.hold("us-east-1", M, "us-east-1").await;
    waits_in_the_source(&h, hold, sized_stream(&profile, 1_000, 2)).await;
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_does_not_queue_refuses_once_then_is_spilled_from_without_a_cooldown() {
    let mut spec = Spec::standard()
        .routing("source_wait", "1")
        .routing("source_wait_ttft", "inf");
    let dep = spec.dep(M, "us-east-1");
    dep.max_in_flight = 1;
    dep.upstream = Upstream::SimCapped(10_000.0);
    let h = Harness::start(spec).await;
    let profile = format!("us.{M}");
    let throttled_at_source = || {
        h.records_in("us-east-1")
            .iter()
            .filter(|r| r.outcome == "throttled")
            .count()
    };
    let hold = h.hold("us-east-1", M, "us-east-1").await;

    // Sent to wait in the full source, refused there (429), served in another US region.
    let first = h.chat("us-east-1", body(&profile, 4)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        first.header("x-spillway-route-reason"),
        Some("failover:throttled")
    );
    let region = first.header("x-spillway-region").unwrap_or_default();
    assert!(["us-east-2", "us-west-2"].contains(&region), "{region}");
    assert_eq!(throttled_at_source(), 1);

    // The gateway learned: the next requests spill at once, the source sees none of them.
    for _ in 0..3 {
        let r = h.chat("us-east-1", body(&profile, 4)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.header("x-spillway-route-reason"), Some("spill:capacity"));
    }
    assert_eq!(throttled_at_source(), 1);

    // The refusal cost the source nothing else: once its slot frees, it serves locally again.
    drop(hold);
    eventually("the held slot is released", || {
        h.sim("us-east-1").in_flight() == 0
    })
    .await;
    let r = h.chat("us-east-1", body(&profile, 4)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("x-spillway-region"), Some("us-east-1"));
    assert_eq!(r.header("x-spillway-route-reason"), Some("local"));
    h.assert_residency();
}

//! The capacity model and every fault over real HTTP: a full queue answers 429 with
//! `Retry-After`, outage 503, error rate 500, hang until the client gives up, a break after N
//! streamed tokens, a client leaving mid-stream, RTT and brown-out latency.
//!
//! Tests stay fast through a large `time_scale` (or a slow decode where a request must stay busy
//! while another is observed), and wait for observable conditions (`in_flight`, the record)
//! rather than sleeping to guess timing.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use spillway_proto::sse::{DONE, SseDecoder};
use spillway_sim::{Fault, SimConfig};

#[tokio::test]
async fn full_queue_answers_429_with_retry_after_and_cancelled_requests_free_their_places() {
    // One slot, one queue place, and requests that would run for minutes.
    let cfg = SimConfig {
        concurrency: 1,
        queue_limit: 1,
        decode_tokens_per_sec: 1.0,
        ..fast("us-west-2")
    };
    let sim = start(cfg).await;
    let long = json!({"model": MODEL, "messages": messages(), "max_tokens": 100_000});
    let running = tokio::spawn(chat(&sim, long.clone()).header("x-request-id", "a").send());
    eventually("first request running", || sim.in_flight() == 1).await;
    let queued = tokio::spawn(chat(&sim, long.clone()).header("x-request-id", "b").send());
    eventually("second request queued", || sim.in_flight() == 2).await;

    let resp = chat(&sim, long.clone())
        .header("x-request-id", "c")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-sim-region"], "us-west-2");
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 1);
    let ms: u64 = resp.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 1000, "the running request has ~100 s to go: {ms}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(record(&sim, "c").await.outcome, "throttled");

    // The clients give up: both the running and the queued request are let go at once.
    running.abort();
    queued.abort();
    eventually("slot and queue freed", || sim.in_flight() == 0).await;
    assert_eq!(record(&sim, "a").await.outcome, "cancelled");
    assert_eq!(record(&sim, "b").await.outcome, "cancelled");

    // And the engine serves again.
    sim.clear_served();
    let short = json!({"model": MODEL, "messages": messages(), "max_tokens": 1});
    let resp = chat(&sim, short).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn outage_set_over_http_answers_503_until_cleared() {
    let sim = start(fast("eu-central-1")).await;
    let admin = format!("http://{}/admin/fault", sim.addr());
    let resp = client()
        .post(&admin)
        .json(&json!({"outage": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let f: Fault = resp.json().await.unwrap();
    assert!(f.outage);
    assert!(sim.fault().outage);
    let got: Fault = client()
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, f);

    let resp = chat(&sim, json!({"model": MODEL, "messages": messages()}))
        .header("x-request-id", "o1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-sim-region"], "eu-central-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    let rec = record(&sim, "o1").await;
    assert_eq!((rec.outcome.as_str(), rec.completion_tokens), ("outage", 0));

    let resp = client().post(&admin).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sim.fault(), Fault::default());
    let resp = chat(&sim, json!({"model": MODEL, "messages": messages()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Unknown fields and meaningless values are refused, and change nothing.
    for bad in [
        json!({"outage": true, "typo": 1}),
        json!({"error_rate": 2.0}),
    ] {
        let resp = client().post(&admin).json(&bad).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    assert_eq!(sim.fault(), Fault::default());
}

#[tokio::test]
async fn error_rate_one_answers_500() {
    let sim = start(fast("eu-west-3")).await;
    sim.set_fault(Fault {
        error_rate: 1.0,
        ..Fault::default()
    });
    for stream in [false, true] {
        let body = json!({"model": MODEL, "messages": messages(), "stream": stream});
        let resp = chat(&sim, body).send().await.unwrap();
        assert_eq!(resp.status(), 500);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
    }
    assert!(sim.served().iter().all(|r| r.outcome == "error"));
    assert_eq!(sim.served().len(), 2);
}

#[tokio::test]
async fn hang_sends_nothing_until_the_client_times_out_and_is_recorded_cancelled() {
    let sim = start(fast("us-east-1")).await;
    sim.set_fault(Fault {
        hang: true,
        ..Fault::default()
    });
    // Generous enough for the request to reach the handler on a loaded machine.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let hung = tokio::spawn(
        c.post(format!("{}/chat/completions", sim.base_url()))
            .header("x-spillway-request-id", "hung")
            .json(&json!({"model": MODEL, "messages": messages(), "stream": true}))
            .send(),
    );
    reached_handler(&sim).await;
    assert!(sim.served().is_empty(), "no answer while hanging");
    let err = hung.await.unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let rec = record(&sim, "hung").await;
    assert_eq!(
        (rec.outcome.as_str(), rec.completion_tokens),
        ("cancelled", 0)
    );
    assert_eq!(sim.in_flight(), 0, "a hung request holds no slot");
}

#[tokio::test]
async fn break_after_tokens_aborts_a_stream_after_some_chunks() {
    let sim = start(fast("us-east-2")).await;
    sim.set_fault(Fault {
        break_after_tokens: Some(3),
        ..Fault::default()
    });
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 10, "stream": true});
    let resp = chat(&sim, body)
        .header("x-request-id", "brk")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "headers were sent before the break");
    let mut dec = SseDecoder::new();
    let mut events = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => events.extend(dec.feed(&bytes)),
            Err(e) => {
                assert!(e.is_body() || e.is_decode() || e.is_request(), "{e:?}");
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "the body must end in an error, got events {events:?}"
    );
    assert_eq!(events.len(), 4, "role chunk and three tokens: {events:?}");
    assert!(events.iter().all(|e| e.data != DONE));
    let rec = record(&sim, "brk").await;
    assert_eq!((rec.outcome.as_str(), rec.completion_tokens), ("broken", 3));
    eventually("slot freed", || sim.in_flight() == 0).await;
}

#[tokio::test]
async fn break_after_tokens_aborts_a_non_streaming_request_before_any_response() {
    let sim = start(fast("us-east-2")).await;
    sim.set_fault(Fault {
        break_after_tokens: Some(2),
        ..Fault::default()
    });
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 10});
    let result = chat(&sim, body)
        .header("x-request-id", "brk-ns")
        .send()
        .await;
    // No status line reaches the client: the connection closes first.
    let err = result.expect_err("no response expected");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(record(&sim, "brk-ns").await.outcome, "broken");

    // A response shorter than the break point is not affected.
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 1});
    assert_eq!(chat(&sim, body).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn client_leaving_mid_stream_frees_the_slot_and_is_recorded_cancelled() {
    let cfg = SimConfig {
        concurrency: 1,
        decode_tokens_per_sec: 1.0,
        ..fast("eu-west-1")
    };
    let sim = start(cfg).await;
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 100_000,
        "stream": true});
    let resp = chat(&sim, body)
        .header("x-request-id", "leaver")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(sim.in_flight(), 1);
    drop(stream);
    eventually("slot freed", || sim.in_flight() == 0).await;
    let rec = record(&sim, "leaver").await;
    assert_eq!(rec.outcome, "cancelled");
    assert!(rec.completion_tokens < 100_000);
}

#[tokio::test]
async fn rtt_prefill_and_brown_out_set_lower_bounds_on_latency() {
    // time_scale 10: 16 tokens at 50/s = 32 ms of decode; brown-out ×5 = 160 ms.
    let cfg = SimConfig {
        time_scale: 10.0,
        rtt: Duration::from_millis(50),
        ..SimConfig::default()
    };
    let sim = start(cfg).await;
    let body = json!({"model": MODEL, "messages": messages()});
    let t = Instant::now();
    assert_eq!(chat(&sim, body.clone()).send().await.unwrap().status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(50 + 32),
        "{:?}",
        t.elapsed()
    );

    sim.set_fault(Fault {
        slow_factor: 5.0,
        ..Fault::default()
    });
    let t = Instant::now();
    assert_eq!(chat(&sim, body).send().await.unwrap().status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(50 + 160),
        "{:?}",
        t.elapsed()
    );
}

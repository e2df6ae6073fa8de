//! The faults a gateway's fault matrix needs beyond outage, errors, hang, brown-out and a
//! mid-stream break, over real HTTP: a 429 storm with and without `Retry-After`, a connection
//! reset before any response, and a hang after the first byte (streamed and not).
//!
//! Waits are on observable conditions (`in_flight`, the record), never sleeps.
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use spillway_proto::sse::SseDecoder;
use spillway_sim::Fault;

#[tokio::test]
async fn a_429_storm_answers_every_request_with_or_without_retry_after() {
    let sim = start(fast("us-east-1")).await;
    for retry_after_ms in [Some(1500), None] {
        sim.set_fault(Fault {
            throttle: true,
            throttle_retry_after_ms: retry_after_ms,
            ..Fault::default()
        });
        for stream in [false, true] {
            let body = json!({"model": MODEL, "messages": messages(), "stream": stream});
            let resp = chat(&sim, body).send().await.unwrap();
            assert_eq!(resp.status(), 429);
            let h = resp.headers().clone();
            match retry_after_ms {
                Some(_) => {
                    assert_eq!(h["retry-after"], "2", "1.5 s rounds up");
                    assert_eq!(h["retry-after-ms"], "1500");
                }
                None => {
                    assert!(h.get("retry-after").is_none(), "{h:?}");
                    assert!(h.get("retry-after-ms").is_none(), "{h:?}");
                }
            }
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["type"], "rate_limit_error");
        }
    }
    assert_eq!(sim.served().len(), 4);
    assert!(sim.served().iter().all(|r| r.outcome == "throttled"));
    assert_eq!(sim.in_flight(), 0, "a storm holds no slot");

    // Over the admin API, and a Retry-After without the storm is refused.
    let admin = format!("http://{}/admin/fault", sim.addr());
    let bad = json!({"throttle_retry_after_ms": 100});
    let resp = client().post(&admin).json(&bad).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_reset_closes_the_connection_without_a_response() {
    let sim = start(fast("us-east-2")).await;
    sim.set_fault(Fault {
        reset: true,
        ..Fault::default()
    });
    for (i, stream) in [false, true].into_iter().enumerate() {
        let id = format!("rst{i}");
        let body = json!({"model": MODEL, "messages": messages(), "stream": stream});
        let err = chat(&sim, body)
            .header("x-request-id", &id)
            .send()
            .await
            .expect_err("no status line");
        assert!(!err.is_timeout(), "{err:?}");
        assert_eq!(record(&sim, &id).await.outcome, "reset");
    }
    assert_eq!(sim.in_flight(), 0);
}

#[tokio::test]
async fn a_stall_after_the_first_byte_holds_the_stream_until_the_client_leaves() {
    let sim = start(fast("eu-west-1")).await;
    sim.set_fault(Fault {
        stall_after_tokens: Some(2),
        ..Fault::default()
    });
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 10, "stream": true});
    let resp = chat(&sim, body)
        .header("x-request-id", "stl")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut dec = SseDecoder::new();
    let mut events = Vec::new();
    // Role chunk and two tokens arrive; then nothing while the request holds its slot.
    while events.len() < 3 {
        events.extend(dec.feed(&stream.next().await.unwrap().unwrap()));
    }
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(sim.in_flight(), 1);
    assert!(sim.served().is_empty(), "still open");
    drop(stream);
    eventually("slot freed", || sim.in_flight() == 0).await;
    let rec = record(&sim, "stl").await;
    assert_eq!(
        (rec.outcome.as_str(), rec.completion_tokens),
        ("cancelled", 2)
    );
}

#[tokio::test]
async fn a_stall_of_a_non_streamed_answer_sends_the_head_and_no_body() {
    let sim = start(fast("eu-west-3")).await;
    sim.set_fault(Fault {
        stall_after_tokens: Some(0),
        ..Fault::default()
    });
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 10});
    let resp = chat(&sim, body)
        .header("x-request-id", "stl-ns")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the head went out");
    assert_eq!(sim.in_flight(), 1);
    let mut body = resp.bytes_stream();
    let waited = tokio::time::timeout(std::time::Duration::from_millis(200), body.next()).await;
    assert!(waited.is_err(), "no body byte");
    drop(body);
    eventually("slot freed", || sim.in_flight() == 0).await;
    assert_eq!(record(&sim, "stl-ns").await.outcome, "cancelled");

    // Graceful shutdown ends a stall instead of waiting for it.
    let body = json!({"model": MODEL, "messages": messages(), "max_tokens": 10});
    let resp = chat(&sim, body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    sim.shutdown();
    assert!(resp.bytes().await.is_err(), "the connection drops");
    tokio::time::timeout(std::time::Duration::from_secs(10), sim.stopped())
        .await
        .expect("the simulator stops");
}

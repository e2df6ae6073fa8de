//! Non-streamed requests are streamed from the upstream and assembled by the gateway, so the
//! first-byte timeout means the first token for them too: an upstream that hangs before its
//! response head fails over after `first_byte_timeout_ms`, not after the 10-minute request
//! timeout; a long but steady generation is not cut; and the client gets the answer the
//! upstream would have given whole.
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use spillway_sim::Fault;

const FIRST_BYTE: Duration = Duration::from_millis(300);

fn spec() -> Spec {
    Spec::standard().routing("first_byte_timeout_ms", &FIRST_BYTE.as_millis().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_request_to_a_hung_region_fails_over_after_the_first_byte_timeout() {
    // request_timeout_ms stays at its default, 10 minutes.
    let h = Harness::start(spec()).await;
    h.sim("us-east-1").set_fault(Fault {
        hang: true,
        ..Fault::default()
    });
    let started = Instant::now();
    let r = h.chat("us-east-1", body(&format!("us.{M}"), 8)).await;
    let took = started.elapsed();
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert_eq!(r.reason(), Some("failover:timeout"), "{r:?}");
    let served = r.region().expect("served somewhere").to_string();
    assert!(
        US.contains(&served.as_str()) && served != "us-east-1",
        "{r:?}"
    );
    assert!(
        took >= FIRST_BYTE && took < FIRST_BYTE + Duration::from_secs(2),
        "answered after {took:?}; the first-byte timeout is {FIRST_BYTE:?}"
    );
    assert_eq!(r.json["object"], "chat.completion", "{r:?}");
    assert_eq!(
        r.json["choices"][0]["message"]["content"],
        spillway_sim::completion_text(8)
    );
    assert_eq!(r.json["usage"]["completion_tokens"], 8, "{r:?}");

    // The hung attempt is recorded as cancelled once the gateway hung up; the answer came from
    // the other region of the set, and from nowhere else.
    eventually("the hung attempt is recorded", || {
        h.records_for(&r.id).len() == 2
    })
    .await;
    for rec in h.records_for(&r.id) {
        let expected = if rec.region == "us-east-1" {
            "cancelled"
        } else {
            "ok"
        };
        assert_eq!(rec.outcome, expected, "{rec:?}");
    }
    assert_eq!(h.assert_residency(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_id_on_a_hung_region_times_out_after_the_first_byte_timeout() {
    let h = Harness::start(spec().routing("max_attempts", "1")).await;
    h.sim("us-east-1").set_fault(Fault {
        hang: true,
        ..Fault::default()
    });
    let started = Instant::now();
    let r = h.chat("us-east-1", body(M, 8)).await;
    let took = started.elapsed();
    r.assert_error(504, "server_error");
    assert!(took < FIRST_BYTE + Duration::from_secs(2), "{took:?}");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_generation_longer_than_the_first_byte_timeout_is_served() {
    let h = Harness::start(spec()).await;
    // 20 tokens/s: 20 tokens take a second, each comes 50 ms after the previous one.
    h.sim("us-east-1").set_fault(Fault {
        slow_factor: 500.0,
        ..Fault::default()
    });
    let started = Instant::now();
    let r = h.chat("us-east-1", body(M, 20)).await;
    r.assert_ok_in("us-east-1", "local");
    assert!(
        started.elapsed() > FIRST_BYTE * 2,
        "the generation was slow"
    );
    assert_eq!(
        r.json["choices"][0]["message"]["content"],
        spillway_sim::completion_text(20)
    );
    h.assert_residency();
}

/// The answer without what differs between two calls.
fn comparable(mut v: Value) -> Value {
    for k in ["id", "created"] {
        v.as_object_mut().map(|o| o.remove(k));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assembled_answer_is_the_one_the_upstream_gives_whole() {
    let h = Harness::start(spec()).await;
    let b = body(M, 12);
    let r = h.chat("us-east-1", b.clone()).await;
    r.assert_ok_in("us-east-1", "local");
    let recs = h.records_for(&r.id);
    assert!(recs[0].stream, "the upstream was asked for a stream");

    // The same request straight to the simulator, unstreamed.
    let direct: Value = h
        .client
        .post(format!(
            "{}/chat/completions",
            h.sim("us-east-1").base_url()
        ))
        .header("x-request-id", &r.id)
        .json(&b)
        .send()
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(comparable(r.json.clone()), comparable(direct), "{}", r.text);
    assert_eq!(
        r.json["usage"],
        json!({"prompt_tokens": prompt(), "completion_tokens": 12, "total_tokens": prompt() + 12})
    );
    h.assert_residency();
}

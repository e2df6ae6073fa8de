//! Upstreams that stop talking: a hang before the response head (streamed and not), a hang
//! after the first byte, and a connection that breaks mid-stream.
use std::time::{Duration, Instant};

use spillway_sim::Fault;

use crate::calls::Api;
use crate::support::{Matrix, spec, us};

/// The first-byte timeout of these tests.
const FIRST_BYTE_MS: u64 = 300;

fn hang() -> Fault {
    Fault {
        hang: true,
        ..Fault::default()
    }
}

/// Fails over within the first-byte timeout plus this much (connects, the answer elsewhere, a
/// loaded CI machine); far below the request timeout.
const SLACK: Duration = Duration::from_secs(3);

async fn hung_source_fails_over(apis: &[Api], name: &str) {
    let s = spec()
        .routing("first_byte_timeout_ms", &FIRST_BYTE_MS.to_string())
        .routing("request_timeout_ms", "60000");
    let m = Matrix::start(s, name).await;
    m.fault("us-east-1", hang());
    let profile = us();
    for &api in apis {
        let t0 = Instant::now();
        let call = m.call(api, "us-east-1", &profile);
        let s = tokio::time::timeout(Duration::from_millis(FIRST_BYTE_MS) + SLACK, call)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "LOST TIME: a {api:?} call to a source hung before its head did not fail \
                     over within first_byte_timeout_ms = {FIRST_BYTE_MS} (+{SLACK:?})"
                )
            });
        s.assert_served(&m.h);
        assert_eq!(s.reason(), Some("failover:timeout"), "{s:?}");
        assert!(
            t0.elapsed() >= Duration::from_millis(FIRST_BYTE_MS),
            "{s:?}"
        );
    }
    m.fault("us-east-1", Fault::default());
    // The gateway hung up on the source: its attempts end as cancelled, holding nothing.
    crate::common::eventually("the hung attempts are let go", || {
        m.h.records_in("us-east-1").len() == apis.len()
    })
    .await;
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_hung_before_its_head_fails_over_within_the_first_byte_timeout() {
    hung_source_fails_over(&[Api::ChatStream, Api::ConverseStream], "hang-stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_call_hung_before_its_head_fails_over_within_the_first_byte_timeout() {
    hung_source_fails_over(&[Api::Chat, Api::Converse], "hang-unary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_hung_after_its_first_byte_ends_with_an_error_event() {
    // The stream committed with its first chunk: it cannot move, and ends within the
    // first-byte timeout of its last piece. A non-streamed answer whose head came but whose
    // body never does has reached nobody: it fails over when its request timeout is up.
    let s = spec()
        .routing("first_byte_timeout_ms", &FIRST_BYTE_MS.to_string())
        .routing("request_timeout_ms", "1500");
    let m = Matrix::start(s, "stall").await;
    m.fault(
        "us-east-1",
        Fault {
            stall_after_tokens: Some(3),
            ..Fault::default()
        },
    );
    for s in m.load(&Api::ALL, "us-east-1", &us(), 4).await {
        if s.api.is_stream() {
            s.assert_stream_error_after(3);
            assert_eq!(s.region(), Some("us-east-1"), "{s:?}");
        } else {
            s.assert_served(&m.h);
            assert_eq!(s.reason(), Some("failover:timeout"), "{s:?}");
        }
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_break_ends_with_an_error_event_and_settles_what_was_sent() {
    let m = Matrix::start(spec(), "break").await;
    m.fault(
        "us-east-1",
        Fault {
            break_after_tokens: Some(3),
            ..Fault::default()
        },
    );
    let seen = m.load(&Api::ALL, "us-east-1", &us(), 8).await;
    for s in &seen {
        if s.region() == Some("us-east-1") {
            // Started in the source: the client has 3 tokens, then its API's error event.
            assert!(s.api.is_stream(), "{s:?}");
            s.assert_stream_error_after(3);
        } else {
            // A non-streamed call had nothing at the client when the connection dropped: it
            // failed over. Once the breaks ejected the source, calls spill at once.
            s.assert_served(&m.h);
        }
    }
    assert!(
        seen.iter().any(|s| s.region() == Some("us-east-1")),
        "some streams broke mid-way"
    );
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_failing_before_its_first_content_token_fails_over() {
    // The upstream's first chunk carries only `role: assistant` and empty content; then it
    // hangs (a) or drops the connection (b). Nothing of the answer reached the client, and the
    // other regions of the set have room: the call should be served there.
    let faults = [
        Fault {
            stall_after_tokens: Some(0),
            ..Fault::default()
        },
        Fault {
            break_after_tokens: Some(0),
            ..Fault::default()
        },
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        let s = spec()
            .routing("first_byte_timeout_ms", &FIRST_BYTE_MS.to_string())
            .routing("failure_threshold", "1000");
        let m = Matrix::start(s, &format!("before-content-{i}")).await;
        m.fault("us-east-1", fault);
        for s in m
            .load(
                &[Api::ChatStream, Api::ConverseStream],
                "us-east-1",
                &us(),
                2,
            )
            .await
        {
            s.assert_served(&m.h);
        }
        m.verify().await;
    }
}

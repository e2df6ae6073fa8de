//! A degraded upstream that still answers: a brown-out (service times × 4, within the
//! timeouts; × 20, beyond the first-byte timeout) and half of its answers failing with 500.
use spillway_sim::Fault;

use crate::calls::Api;
use crate::common::{M, Spec, Upstream};
use crate::support::{Matrix, spec, us};

/// The source's prefill takes 50 ms for the prompt (decode 1,000 tokens/s); a stream may wait
/// 400 ms for its first byte.
fn slow_source() -> Spec {
    let mut s = spec().routing("first_byte_timeout_ms", "400");
    s.dep(M, "us-east-1").upstream = Upstream::SimPrefill(100.0);
    s
}

fn brown_out(factor: f64) -> Fault {
    Fault {
        slow_factor: factor,
        ..Fault::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brown_out_within_the_timeouts_is_served() {
    // ×4: a first byte after 200 ms, 16 tokens in 64 ms more. Slow, not failing.
    let m = Matrix::start(slow_source(), "brown-out").await;
    m.fault("us-east-1", brown_out(4.0));
    for s in m.load(&Api::ALL, "us-east-1", &us(), 12).await {
        s.assert_served(&m.h);
    }
    for api in Api::ALL {
        let s = m.call(api, "us-east-1", M).await;
        s.assert_served(&m.h);
        assert_eq!(s.region(), Some("us-east-1"), "{s:?}");
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brown_out_beyond_the_first_byte_timeout_moves_streams_elsewhere() {
    // ×20: the first byte after 1 s, beyond `first_byte_timeout_ms`. Through the profile every
    // call (streamed or not: the gateway streams from the upstream either way) times out there
    // and fails over, or, once those timeouts ejected the source, spills at once. A plain id has
    // nowhere else to go: it gets a clean timeout (504), streamed or not.
    let m = Matrix::start(slow_source(), "brown-out-severe").await;
    m.fault("us-east-1", brown_out(20.0));
    for api in [Api::Chat, Api::Converse] {
        let s = m.call(api, "us-east-1", M).await;
        s.assert_clean_refusal();
    }
    for s in m.load(&Api::ALL, "us-east-1", &us(), 12).await {
        s.assert_served(&m.h);
        {
            assert_ne!(s.region(), Some("us-east-1"), "{s:?}");
            let reason = s.reason().unwrap_or_default();
            assert!(
                reason == "failover:timeout" || reason == "spill:unhealthy",
                "{s:?}"
            );
        }
    }
    // The source failed its first-byte bound: a plain id times out cleanly there, or is refused
    // cleanly (429 with the ejection's Retry-After) while it is ejected.
    for api in Api::ALL {
        let s = m.call(api, "us-east-1", M).await;
        if s.status == 200 && !api.is_stream() {
            s.assert_served(&m.h);
        } else {
            s.assert_clean_refusal();
        }
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_answers_failing_are_all_served_elsewhere() {
    let m = Matrix::start(spec(), "errors-50").await;
    m.fault(
        "us-east-1",
        Fault {
            error_rate: 0.5,
            ..Fault::default()
        },
    );
    let seen = m.load(&Api::ALL, "us-east-1", &us(), 32).await;
    for s in &seen {
        s.assert_served(&m.h);
    }
    let failed_over = seen
        .iter()
        .filter(|s| s.reason() == Some("failover:server_error"))
        .count();
    assert!(failed_over > 0, "some calls met an injected error");
    assert!(
        m.h.records_in("us-east-1")
            .iter()
            .any(|r| r.outcome == "error"),
        "the fault was exercised"
    );
    m.verify().await;
}

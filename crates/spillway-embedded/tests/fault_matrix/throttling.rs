//! 429 storms: an upstream whose rate limiter refuses everything, with `Retry-After` (the
//! region cools down for it) and without.
use spillway_sim::Fault;

use crate::calls::Api;
use crate::common::{M, US};
use crate::support::{Matrix, Refused, spec, us};

fn storm(retry_after_ms: Option<u64>) -> Fault {
    Fault {
        throttle: true,
        throttle_retry_after_ms: retry_after_ms,
        ..Fault::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_fails_over_and_cools_the_source_down() {
    let m = Matrix::start(spec(), "storm-retry-after").await;
    m.fault("us-east-1", storm(Some(30_000)));
    for s in m.load(&Api::ALL, "us-east-1", &us(), 12).await {
        s.assert_served(&m.h);
        assert_ne!(s.region(), Some("us-east-1"), "{s:?}");
    }
    // Cooling down for the upstream's 30 s: the first calls found out, later ones went
    // elsewhere at once.
    let tried = m.h.records_in("us-east-1");
    assert!(!tried.is_empty() && tried.len() < 12, "{tried:?}");
    assert!(tried.iter().all(|r| r.outcome == "throttled"), "{tried:?}");
    // A plain id has only the cooling source: a clean 429 with Retry-After.
    for api in [Api::Chat, Api::Converse] {
        m.call(api, "us-east-1", M)
            .await
            .assert_refused(Refused::Throttled);
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_over_the_whole_set_is_a_clean_429() {
    let m = Matrix::start(spec(), "storm-everywhere").await;
    for r in US {
        m.fault(r, storm(Some(2_000)));
    }
    for s in m.load(&Api::ALL, "us-east-1", &us(), 8).await {
        s.assert_refused(Refused::Throttled);
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_without_retry_after_fails_over() {
    let m = Matrix::start(spec(), "storm-no-retry-after").await;
    m.fault("us-east-1", storm(None));
    for s in m.load(&Api::ALL, "us-east-1", &us(), 12).await {
        s.assert_served(&m.h);
        assert_ne!(s.region(), Some("us-east-1"), "{s:?}");
    }
    // The plain id's refusal still tells the client when to come back.
    for api in [Api::Chat, Api::Converse] {
        m.call(api, "us-east-1", M)
            .await
            .assert_refused(Refused::Throttled);
    }
    m.verify().await;
}

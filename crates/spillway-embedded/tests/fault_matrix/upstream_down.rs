//! An upstream that is down: a region outage (503 from the source's engine, or every region of
//! the geography) and a connection reset before any response.
use spillway_sim::Fault;

use crate::calls::Api;
use crate::common::{EU, M, US};
use crate::support::{Matrix, Refused, spec, us};

fn outage() -> Fault {
    Fault {
        outage: true,
        ..Fault::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_outage_fails_over_in_every_api() {
    let m = Matrix::start(spec(), "outage").await;
    m.fault("us-east-1", outage());
    // A plain id has only the source: a clean 503, then (ejected) a clean 429.
    for api in [Api::Chat, Api::Converse] {
        m.call(api, "us-east-1", M)
            .await
            .assert_refused(Refused::Unavailable);
    }
    for s in m.load(&Api::ALL, "us-east-1", &us(), 16).await {
        s.assert_served(&m.h);
        assert_ne!(s.region(), Some("us-east-1"), "{s:?}");
        let reason = s.reason().unwrap_or_default();
        assert!(
            reason == "failover:server_error" || reason == "spill:unhealthy",
            "{s:?}"
        );
    }
    for api in Api::ALL {
        m.call(api, "us-east-1", M).await.assert_clean_refusal();
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_geography_down_is_a_clean_error_and_never_leaves_it() {
    let m = Matrix::start(spec(), "geo-outage").await;
    for r in US {
        m.fault(r, outage());
    }
    // No region of `us.` can serve: a clean error in each API, never a call to `eu`.
    for s in m.load(&Api::ALL, "us-east-1", &us(), 8).await {
        s.assert_clean_refusal();
    }
    for r in EU {
        assert!(m.h.records_in(r).is_empty(), "a `us.` call reached {r}");
    }
    // `global.` has capacity in `eu`: served there. The `us.` calls above may have spent the
    // retry budget before each `us` region failed often enough to be ejected; a `global.` call
    // sent to a failing region not yet ejected would then be refused (429) rather than retried,
    // as designed. So every `us` region is ejected first, without retries.
    for r in US {
        m.eject(r).await;
    }
    for s in m
        .load(&Api::ALL, "us-east-1", &format!("global.{M}"), 4)
        .await
    {
        s.assert_served(&m.h);
        assert!(EU.contains(&s.region().unwrap_or_default()), "{s:?}");
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_before_the_head_fails_over() {
    let m = Matrix::start(spec(), "reset").await;
    m.fault(
        "us-east-1",
        Fault {
            reset: true,
            ..Fault::default()
        },
    );
    for s in m.load(&Api::ALL, "us-east-1", &us(), 12).await {
        s.assert_served(&m.h);
        assert_ne!(s.region(), Some("us-east-1"), "{s:?}");
    }
    assert!(
        m.h.records_in("us-east-1")
            .iter()
            .all(|r| r.outcome == "reset"),
        "the source was tried and reset"
    );
    assert!(!m.h.records_in("us-east-1").is_empty());
    m.verify().await;
}

//! `[routing] spill_reserve` through the real gateway and simulators: with a reserve of one slot,
//! a request whose source is full does not take another region's last free slot; when every
//! other region of its profile is at its reserve it gets a 429 with `Retry-After` in its API's
//! shape, while each region's own requests still take that slot; once a region has a slot to
//! spare, the spill goes there. Nothing is served outside the profile's regions.
mod common;

use common::*;

/// `spill_reserve = reserve`; the source us-east-1 with one slot, us-east-2 and us-west-2 with
/// the given slots.
async fn start(reserve: u32, east2: u32, west2: u32) -> Harness {
    let mut spec = Spec::standard()
        .routing("spill_reserve", &reserve.to_string())
        .routing("source_wait", "0");
    spec.dep(M, "us-east-1").max_in_flight = 1;
    spec.dep(M, "us-east-2").max_in_flight = east2;
    spec.dep(M, "us-west-2").max_in_flight = west2;
    Harness::start(spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_never_takes_another_region_s_last_slot() {
    let h = start(1, 2, 2).await;
    let profile = format!("us.{M}");
    // The source full; us-east-2 and us-west-2 each one request from their own users, so one
    // slot free in each: their reserve.
    let _source = h.hold("us-east-1", M, "us-east-1").await;
    let east2 = h.hold("us-east-2", M, "us-east-2").await;
    let _west2 = h.hold("us-west-2", M, "us-west-2").await;

    let refused = h.chat("us-east-1", body(&profile, 4)).await;
    refused.assert_throttled();
    assert!(
        refused.text.contains("keep theirs for their own traffic"),
        "{}",
        refused.text
    );
    let metrics = reqwest::get(format!("http://{}/metrics", h.gw().admin_addr()))
        .await
        .and_then(|r| r.error_for_status())
        .expect("/metrics");
    let text = metrics.text().await.expect("/metrics text");
    let reserve = text
        .lines()
        .find(|l| l.starts_with("spillway_throttles_total{") && l.contains("kind=\"reserve\""))
        .unwrap_or_else(|| panic!("no reserve throttle in /metrics:\n{text}"));
    let count: f64 = reserve
        .rsplit_once(' ')
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no count: {reserve}"));
    assert_eq!(count, 1.0, "{reserve}");
    assert!(
        h.records_for(&refused.id).is_empty(),
        "the refused request reached a simulator"
    );

    // A region's own request takes its reserved slot.
    let own = h.chat("us-east-2", body(&profile, 4)).await;
    own.assert_ok_in("us-east-2", "local");

    // us-east-2's own request ended, and its hold ends: two slots free there, one to spare.
    drop(east2);
    eventually("us-east-2's hold is released", || {
        h.sim("us-east-2").in_flight() == 0
    })
    .await;
    let spilled = h.chat("us-east-1", body(&profile, 4)).await;
    spilled.assert_ok_in("us-east-2", "spill:capacity");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_with_slots_to_spare_takes_the_spill() {
    // A reserve of 2: us-east-2 idle but with only its reserve (2 of 2 free), us-west-2 busier
    // with a slot to spare (3 of 4 free): without the reserve the spill would go to the idle and
    // nearer us-east-2.
    let h = start(2, 2, 4).await;
    let profile = format!("us.{M}");
    let _source = h.hold("us-east-1", M, "us-east-1").await;
    let _a = h.hold("us-west-2", M, "us-west-2").await;
    let r = h.chat("us-east-1", body(&profile, 4)).await;
    r.assert_ok_in("us-west-2", "spill:capacity");
    // A second request held in us-west-2: 2 of 4 free, its reserve; no region has one to spare.
    let _b = h.hold("us-west-2", M, "us-west-2").await;
    h.chat("us-east-1", body(&profile, 4))
        .await
        .assert_throttled();
    h.assert_residency();
}

//! Tenant quotas: in-region RPM for plain ids, the cross-region multiplier for profile ids, TPM
//! reserved as `prompt + max_tokens × burndown` and settled to actual usage (also when the
//! client goes away mid-stream).
mod common;

use common::*;

/// A model whose output is reserved at ten times `max_tokens`.
const BURN: &str = "demo.burn-v1:0";

fn spec_with(tenant: Tenant) -> Spec {
    let mut spec = Spec::standard();
    spec.add_model(BURN, false, Some(10.0));
    spec.tenants = vec![tenant];
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_region_rpm_then_twice_as_much_through_a_profile() {
    let h = Harness::start(spec_with(Tenant::new("acme", KEY).quota(M, Some(5), None))).await;
    for _ in 0..5 {
        h.chat("us-east-1", body(M, 2))
            .await
            .assert_ok_in("us-east-1", "local");
    }
    let r = h.chat("us-east-1", body(M, 2)).await;
    r.assert_throttled();
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("in-region"),
        "{r:?}"
    );
    assert!(
        h.records_for(&r.id).is_empty(),
        "a throttled request reaches no upstream"
    );

    // The cross-region quota is 2 × 5, and it is served in the source while it has headroom.
    let profile = format!("us.{M}");
    for _ in 0..10 {
        h.chat("us-east-1", body(&profile, 2))
            .await
            .assert_ok_in("us-east-1", "local");
    }
    let r = h.chat("us-east-1", body(&profile, 2)).await;
    r.assert_throttled();
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cross-region"),
        "{r:?}"
    );
    assert!(h.records_for(&r.id).is_empty());

    // Quotas are per source region: another source still has its own.
    h.chat("us-east-2", body(M, 2))
        .await
        .assert_ok_in("us-east-2", "local");
    assert_eq!(h.records().len(), 16);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_cross_region_multiplier_is_honoured() {
    let mut t = Tenant::new("acme", KEY).quota(M, Some(4), None);
    t.multiplier = Some(1.5);
    let h = Harness::start(spec_with(t)).await;
    let profile = format!("us.{M}");
    for _ in 0..6 {
        let r = h.chat("us-east-1", body(&profile, 2)).await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
    }
    h.chat("us-east-1", body(&profile, 2))
        .await
        .assert_throttled();
    for _ in 0..4 {
        let r = h.chat("us-east-1", body(M, 2)).await;
        assert_eq!(r.status.as_u16(), 200, "{r:?}");
    }
    h.chat("us-east-1", body(M, 2)).await.assert_throttled();
    assert_eq!(h.records().len(), 10);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_reserves_prompt_plus_max_tokens_times_burndown() {
    let h = Harness::start(spec_with(Tenant::new("acme", KEY).quota(
        BURN,
        None,
        Some(1000),
    )))
    .await;
    let p = prompt();
    // 5 + 100 × 10 = 1005 > 1000: more than the quota ever holds, refused (400, not a 429 to
    // retry) before anything is sent upstream.
    let r = h.chat("us-east-1", body(BURN, 100)).await;
    r.assert_error(400, "invalid_request_error");
    assert_eq!(r.json["error"]["param"], "max_tokens");
    assert!(h.records_for(&r.id).is_empty());
    // 5 + 99 × 10 = 995 fits.
    let r = h.chat("us-east-1", body(BURN, 99)).await;
    r.assert_ok_in("us-east-1", "local");
    assert_eq!(r.json["usage"]["total_tokens"], p + 99);

    // Settled to the 104 tokens used, about 896 remain (the bucket refills ~17 tokens/s):
    // 5 + 95 × 10 = 955 is more than that, 5 + 85 × 10 = 855 is not.
    let r = h.chat("us-east-1", body(BURN, 95)).await;
    r.assert_throttled();
    assert!(h.records_for(&r.id).is_empty());
    h.chat("us-east-1", body(BURN, 85))
        .await
        .assert_ok_in("us-east-1", "local");
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unused_part_of_a_reservation_is_given_back() {
    // Room for two reservations of 5 + 100 × 10 = 1005 tokens; each uses 105.
    let h = Harness::start(spec_with(Tenant::new("acme", KEY).quota(
        BURN,
        None,
        Some(2100),
    )))
    .await;
    for i in 0..4 {
        let r = h.chat("us-east-1", body(BURN, 100)).await;
        assert_eq!(r.status.as_u16(), 200, "request {i}: {r:?}");
        assert_eq!(r.json["usage"]["total_tokens"], prompt() + 100);
    }
    // Without the settlements only two would have fitted: 420 used leaves ~1680, and while one
    // full reservation is held in flight another does not fit next to it.
    let _held = h.hold_n("us-east-1", BURN, "us-east-1", 100).await;
    h.chat("us-east-1", body(BURN, 100))
        .await
        .assert_throttled();
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_mid_stream_settles_the_reservation_and_frees_the_slot() {
    let h = Harness::start(spec_with(Tenant::new("acme", KEY).quota(
        BURN,
        None,
        Some(2100),
    )))
    .await;
    let sim = h.sim_of(BURN, "us-east-1");
    // Two streams reserving 5 + 100 × 10 = 1005 tokens each, decoding slowly.
    let a = h.hold_n("us-east-1", BURN, "us-east-1", 100).await;
    let b = h.hold_n("us-east-1", BURN, "us-east-1", 100).await;
    assert_eq!(sim.in_flight(), 2);
    h.chat("us-east-1", body(BURN, 100))
        .await
        .assert_throttled();

    drop(a);
    drop(b);
    eventually("the simulator frees both slots", || sim.in_flight() == 0).await;
    let recs: Vec<_> = h.records_in("us-east-1");
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs.iter().all(|r| r.outcome == "cancelled"), "{recs:?}");

    // Both reservations were settled to the few tokens seen: two full ones fit again.
    for _ in 0..2 {
        h.chat("us-east-1", body(BURN, 100))
            .await
            .assert_ok_in("us-east-1", "local");
    }
    h.assert_residency();
}

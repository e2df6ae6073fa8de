//! `spill_reserve`: a deployment keeps its last free slots for its own region's requests. A
//! spill skips it, the admission of a spill step checks it again, its own requests still take
//! those slots, and the baselines ignore it.
use super::*;

/// Three regions of 4 slots; the source 0 full; region 1 with `free1` free slots, region 2
/// with `free2`.
fn world_with(policy: Policy, reserve: u32, free1: u32, free2: u32) -> (Router, Vec<Candidate>) {
    let cfg = RouterConfig {
        policy,
        spill_reserve: Some(reserve),
        source_wait: 0.0,
        ..RouterConfig::default()
    };
    three_regions(cfg, [4, 4 - free1, 4 - free2])
}

#[test]
fn a_spill_skips_a_region_at_its_reserve() {
    let mut rng = SmallRng::seed_from_u64(1);
    let (mut r, c) = world_with(Policy::Spillway, 1, 1, 2);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(deps(&p), vec![2], "region 1 keeps its last slot: {p:?}");
    assert_eq!(p.steps[0].reason, Reason::SpillCapacity);
    // Without the reserve both regions take the spill.
    let (mut r, c) = world_with(Policy::Spillway, 0, 1, 2);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(p.steps.len(), 2, "{p:?}");
}

#[test]
fn every_region_at_its_reserve_throttles_with_a_retry_after_of_a_second() {
    let mut rng = SmallRng::seed_from_u64(1);
    let (mut r, c) = world_with(Policy::Spillway, 2, 2, 1);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert!(p.steps.is_empty() && p.held_back, "{p:?}");
    assert_eq!(
        p.retry_after,
        Some(Duration::from_secs(1)),
        "not the 1 ms of a free slot"
    );
    // Every slot taken: refused for capacity, not for the reserve.
    let (mut r, c) = world_with(Policy::Spillway, 2, 0, 0);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert!(p.steps.is_empty() && !p.held_back, "{p:?}");
}

#[test]
fn a_region_s_own_requests_take_its_reserve() {
    let mut rng = SmallRng::seed_from_u64(1);
    let (mut r, c) = world_with(Policy::Spillway, 3, 1, 1);
    let routed = r.route(&req(1, &c), ms(1), &mut rng);
    let (i, _held) = routed.first.expect("its own last slot");
    assert_eq!(routed.plan.steps[i].deployment, DeploymentIx(1));
    assert_eq!(routed.plan.steps[i].reason, Reason::Local);
    assert_eq!(r.view(DeploymentIx(1), ms(1)).in_flight, 4);
}

#[test]
fn the_admission_of_a_spill_checks_the_reserve_again() {
    let mut rng = SmallRng::seed_from_u64(1);
    let (mut r, c) = world_with(Policy::Spillway, 1, 2, 0);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(deps(&p), vec![1]);
    // Region 1's own request takes one of its two free slots before the spill is admitted.
    let _own = r.route(&req(1, &c), ms(1), &mut rng).first.expect("local");
    assert_eq!(
        r.admit(&p.steps[0], 100, ms(1)).err(),
        Some(Rejection::InFlight)
    );
    assert!(r.admit_next(&p, 0, 100, ms(1)).is_none());
    // A bare admission is no spill: the caller knows what it admits.
    let bare = r.try_acquire(DeploymentIx(1), 100, ms(1)).expect("bare");
    r.release(bare, OK, ms(1));
    // A mid-stream continuation (every step of its plan granted a wait) finishes its answer
    // there all the same.
    let continuation = Step {
        queued: true,
        ..p.steps[0]
    };
    let a = r.admit(&continuation, 100, ms(1)).expect("a continuation");
    assert!(!a.queued, "a free slot, no wait");
}

#[test]
fn a_full_source_waits_rather_than_take_another_region_s_reserve() {
    let mut rng = SmallRng::seed_from_u64(1);
    let (mut r, c) = world_with(Policy::Spillway, 1, 1, 1);
    r.cfg.source_queue = 0.5;
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(deps(&p), vec![0], "{p:?}");
    assert!(p.steps[0].queued);
}

#[test]
fn the_baselines_ignore_the_reserve() {
    let mut rng = SmallRng::seed_from_u64(1);
    for policy in [Policy::RoundRobin, Policy::LeastLoaded] {
        let (mut r, c) = world_with(policy, 3, 1, 1);
        let p = r.plan(&req(0, &c), ms(1), &mut rng);
        assert_eq!(p.steps.len(), 2, "{policy:?}: {p:?}");
        assert!(r.admit_next(&p, 0, 100, ms(1)).is_some(), "{policy:?}");
    }
}

#[test]
fn unset_a_large_deployment_keeps_one_slot_and_a_small_one_none() {
    let mut rng = SmallRng::seed_from_u64(1);
    // Source 0 full; regions 1 and 2 with one free slot each; `slots` a deployment.
    let world = |slots: u32| {
        let cfg = RouterConfig {
            source_wait: 0.0,
            ..RouterConfig::default()
        };
        assert_eq!(
            cfg.spill_reserve, None,
            "the default is the automatic reserve"
        );
        let specs = (0..3).map(|i| spec(i, slots)).collect();
        let c: Vec<Candidate> = (0..3)
            .map(|i| cand(i, i as u16, 1 + 10 * u64::from(i)))
            .collect();
        let mut r = Router::new(cfg, specs);
        for (d, n) in (0..).zip([slots, slots - 1, slots - 1]) {
            for _ in 0..n {
                let _held = r.try_acquire(DeploymentIx(d), 100, ms(0)).unwrap();
            }
        }
        (r, c)
    };
    let (mut r, c) = world(AUTO_RESERVE_MIN_SLOTS);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert!(
        p.steps.is_empty() && p.held_back,
        "both keep their last slot: {p:?}"
    );
    // Their own requests take it.
    let own = r.route(&req(1, &c), ms(1), &mut rng);
    assert_eq!(own.plan.steps[0].reason, Reason::Local);
    assert!(own.first.is_some());
    // One slot smaller: no reserve, the spill takes a last slot.
    let (mut r, c) = world(AUTO_RESERVE_MIN_SLOTS - 1);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(p.steps.len(), 2, "{p:?}");
    // An explicit 0 turns the reserve off on a large deployment too.
    let (mut r, c) = world(AUTO_RESERVE_MIN_SLOTS);
    r.cfg.spill_reserve = Some(0);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(p.steps.len(), 2, "{p:?}");
}

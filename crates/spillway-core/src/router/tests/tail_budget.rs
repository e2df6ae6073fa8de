//! `tail_budget`: a request that no other region can take and whose wait the TTFT comparisons
//! refuse waits in its full source when its region has banked a wait (a share of each request
//! planned from it), within `source_wait_ttft` × the tail; otherwise it is throttled.
use super::source_wait::{demand, learned_full_source_with, sized};
use super::*;

/// The learned full source of `source_wait`'s tests (16 slots, the tail at 1,024 ms, the next
/// slot in about 100 ms), `source_wait` 0.2 and no `source_queue`, with regions 1 and 2 full.
fn nowhere_to_spill(tail_budget: f64) -> (Router, Vec<Candidate>) {
    let (mut r, c) = learned_full_source_with(0.0, 0.2);
    r.cfg.tail_budget = tail_budget;
    for d in 1..3 {
        for _ in 0..16 {
            let _held = r
                .try_acquire(DeploymentIx(d), demand(800), ms(1_601))
                .unwrap();
        }
    }
    (r, c)
}

/// Plan a 4,096-token request from region 0 (its prefill is the tail: no wait fits the
/// comparisons) `n` times; how many plans sent it to wait in the source, admitting each.
fn waits_of_long_prompts(r: &mut Router, c: &[Candidate], n: usize) -> usize {
    let mut rng = SmallRng::seed_from_u64(5);
    let now = ms(1_601);
    let mut waited = 0;
    for _ in 0..n {
        let p = r.plan(&sized(0, c, 4_096), now, &mut rng);
        if p.steps.is_empty() {
            assert!(p.retry_after.is_some(), "a throttle says when: {p:?}");
            continue;
        }
        assert_eq!(deps(&p), vec![0], "only the source, to wait: {p:?}");
        assert!(p.steps[0].queued && p.steps[0].reason == Reason::Local);
        let a = r.admit(&p.steps[0], demand(4_096), now).expect("the grant");
        assert!(a.queued);
        waited += 1;
    }
    waited
}

#[test]
fn one_request_in_a_hundred_may_wait_past_the_comparisons() {
    let (mut r, c) = nowhere_to_spill(0.01);
    // The first 99 requests earn 0.99 of a wait: each is throttled; the hundredth waits.
    assert_eq!(waits_of_long_prompts(&mut r, &c, 99), 0);
    assert_eq!(r.tail_waits(DeploymentIx(0)), 0);
    assert_eq!(waits_of_long_prompts(&mut r, &c, 1), 1);
    assert_eq!(waits_of_long_prompts(&mut r, &c, 99), 0, "spent");
    assert_eq!(waits_of_long_prompts(&mut r, &c, 1), 1);
    // Counted on the deployment that took them, for the metrics.
    assert_eq!(r.tail_waits(DeploymentIx(0)), 2);
    assert_eq!(r.tail_waits(DeploymentIx(1)), 0);
    assert_eq!(r.tail_waits(DeploymentIx(9)), 0, "an unknown deployment");
}

#[test]
fn without_a_budget_they_are_throttled() {
    let (mut r, c) = nowhere_to_spill(0.0);
    assert_eq!(waits_of_long_prompts(&mut r, &c, 300), 0);
}

#[test]
fn the_queue_bound_of_source_wait_still_applies() {
    // A budget of one wait a request: 0.2 × 16 = 3 may wait beyond the limit, then none.
    let (mut r, c) = nowhere_to_spill(1.0);
    assert_eq!(waits_of_long_prompts(&mut r, &c, 50), 3);
    // `source_wait = 0` lets no request wait in a full source, on the budget or not.
    let (mut r, c) = nowhere_to_spill(1.0);
    r.cfg.source_wait = 0.0;
    assert_eq!(waits_of_long_prompts(&mut r, &c, 50), 0);
}

#[test]
fn a_wait_past_the_bound_on_its_expected_ttft_is_not_taken_nor_spent() {
    let (mut r, c) = nowhere_to_spill(0.01);
    let mut rng = SmallRng::seed_from_u64(5);
    for _ in 0..99 {
        let _ = r.plan(&sized(0, &c, 100), ms(1_601), &mut rng);
    }
    // 8,000 tokens: 2,000 ms of prefill against 1.5 × the 1,024 ms tail.
    let p = r.plan(&sized(0, &c, 8_000), ms(1_601), &mut rng);
    assert!(p.steps.is_empty(), "{p:?}");
    // The banked wait was not spent on it: a 4,096-token request (1,024 + ~100 ms) takes it.
    assert_eq!(waits_of_long_prompts(&mut r, &c, 1), 1);
    // An infinite factor lifts the bound (the operator's choice).
    let (mut r, c) = nowhere_to_spill(1.0);
    r.cfg.source_wait_ttft = f64::INFINITY;
    let p = r.plan(&sized(0, &c, 8_000), ms(1_601), &mut rng);
    assert_eq!(deps(&p), vec![0]);
}

#[test]
fn each_region_spends_only_what_its_own_requests_earned() {
    let (mut r, c) = nowhere_to_spill(0.01);
    let mut rng = SmallRng::seed_from_u64(5);
    // Region 1's requests (it is full too; it has learned nothing, so they wait there by the
    // comparisons) earn its budget, not region 0's.
    for _ in 0..300 {
        let _ = r.plan(&sized(1, &c, 100), ms(1_601), &mut rng);
    }
    assert_eq!(waits_of_long_prompts(&mut r, &c, 99), 0);
}

#[test]
fn a_spill_with_room_is_not_a_budgeted_wait() {
    // Region 2 has two free slots (the automatic reserve keeps one of its 16): the request
    // spills there rather than wait on the budget.
    let (mut r, c) = learned_full_source_with(0.0, 0.2);
    r.cfg.tail_budget = 1.0;
    for _ in 0..14 {
        let _held = r
            .try_acquire(DeploymentIx(2), demand(800), ms(1_601))
            .unwrap();
    }
    for _ in 0..16 {
        let _held = r
            .try_acquire(DeploymentIx(1), demand(800), ms(1_601))
            .unwrap();
    }
    let mut rng = SmallRng::seed_from_u64(5);
    let p = r.plan(&sized(0, &c, 4_096), ms(1_601), &mut rng);
    assert_eq!(deps(&p), vec![2], "{p:?}");
    assert_eq!(p.steps[0].reason, Reason::SpillCapacity);
}

#[test]
fn the_baselines_never_wait() {
    for policy in [Policy::RoundRobin, Policy::LeastLoaded] {
        let (mut r, c) = nowhere_to_spill(1.0);
        r.cfg.policy = policy;
        assert_eq!(waits_of_long_prompts(&mut r, &c, 20), 0, "{policy:?}");
    }
}

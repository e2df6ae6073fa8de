//! The short wait in a full source is bounded by the request's expected TTFT there: the wait for
//! a slot (learned hold time / limit per request ahead) plus its own prefill (learned TTFT per
//! input token), against `source_wait_ttft` × the source's mean TTFT and the tail, or against
//! a spill's TTFT plus [`WAIT_COST`].
use super::*;
use crate::router::deployment::WAIT_COST;

/// Three regions of 16 slots; the source (0) has learned that a request holds its slot for
/// 1.6 s, that 1,600 input tokens take 400 ms to the first token and that a token takes 12 ms
/// (400 ms + 100 × 12 ms = 1.6 s). Its 16 slots were taken one every 100 ms, by requests of
/// 1,600 tokens in and 100 out, so at 1,601 ms the k-th frees in k × 100 − 1 ms, as the mean
/// rate (a slot every 100 ms) says too. Budget at the default factor 1.5: 600 ms. It has also
/// seen a 4,096-token prompt, so the tail (the longest prompt's TTFT) is 1,024 ms.
fn learned_full_source(source_wait: f64) -> (Router, Vec<Candidate>) {
    learned_full_source_with(0.5, source_wait)
}

pub(super) fn learned_full_source_with(
    source_queue: f64,
    source_wait: f64,
) -> (Router, Vec<Candidate>) {
    let cfg = RouterConfig {
        source_queue,
        source_wait,
        ..RouterConfig::default()
    };
    let specs = (0..3).map(|i| spec(i, 16)).collect();
    let c = (0..3)
        .map(|i| cand(i, i as u16, 1 + 10 * u64::from(i)))
        .collect();
    let mut r = Router::new(cfg, specs);
    let a = r
        .try_acquire(DeploymentIx(0), demand(1_600), ms(0))
        .unwrap();
    for i in 1..16 {
        let _held = r
            .try_acquire(DeploymentIx(0), demand(1_600), ms(100 * i))
            .unwrap();
    }
    let ok = Outcome::Success {
        ttft: ms(400),
        tpot: Some(ms(12)),
        tokens: 1_700,
    };
    r.release(a, ok, ms(1_600));
    r.deployments[0].longest_input = 4_096.0;
    let _held = r
        .try_acquire(DeploymentIx(0), demand(1_600), ms(1_600))
        .unwrap();
    (r, c)
}

/// Three regions of 16 slots, nothing learned yet, `source_wait` and `source_queue` 0.5.
fn unlearned_source() -> (Router, Vec<Candidate>) {
    let r = Router::new(
        RouterConfig {
            source_queue: 0.5,
            source_wait: 0.5,
            ..RouterConfig::default()
        },
        (0..3).map(|i| spec(i, 16)).collect(),
    );
    let c = (0..3)
        .map(|i| cand(i, i as u16, 1 + 10 * u64::from(i)))
        .collect();
    (r, c)
}

pub(super) fn demand(input_tokens: u64) -> Demand {
    Demand {
        est_tokens: input_tokens + 100,
        input_tokens,
    }
}

pub(super) fn sized(source: u16, candidates: &[Candidate], input_tokens: u64) -> RouteRequest<'_> {
    RouteRequest {
        source: RegionIx(source),
        candidates,
        est_tokens: input_tokens + 100,
        input_tokens,
        prefix: crate::Prefix::NONE,
    }
}

/// Plan and admit requests of `input_tokens` until one is not kept in the source; how many were.
fn kept_in_source(r: &mut Router, c: &[Candidate], input_tokens: u64) -> usize {
    kept_in_source_at(r, c, input_tokens, ms(1_601))
}

fn kept_in_source_at(r: &mut Router, c: &[Candidate], input_tokens: u64, now: Duration) -> usize {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut kept = 0;
    loop {
        let p = r.plan(&sized(0, c, input_tokens), now, &mut rng);
        if p.steps[0].deployment != DeploymentIx(0) {
            assert_eq!(p.steps[0].reason, Reason::SpillCapacity);
            return kept;
        }
        assert_eq!(p.steps[0].reason, Reason::Local);
        assert!(p.steps[0].queued);
        let _held = r.admit(&p.steps[0], demand(input_tokens), now).unwrap();
        kept += 1;
    }
}

#[test]
fn short_requests_wait_while_their_expected_ttft_fits() {
    // 800 tokens: 200 ms prefill; the k-th waiting request expects k × 100 ms: 4 fit in 600 ms.
    let (mut r, c) = learned_full_source(0.5);
    assert_eq!(kept_in_source(&mut r, &c, 800), 4);
}

#[test]
fn long_requests_spill_at_once() {
    // 2,400 tokens: 600 ms prefill already fills the budget, so any wait spills it.
    let (mut r, c) = learned_full_source(0.5);
    assert_eq!(kept_in_source(&mut r, &c, 2_400), 0);
    // An unknown input counts as the mean (400 ms): one wait of 100 ms, then 200 ms, fit.
    assert_eq!(kept_in_source(&mut r, &c, 0), 2);
}

#[test]
fn the_queue_length_bound_still_applies() {
    // 100 tokens (25 ms) would fit 5 waits by TTFT, but `source_wait` 0.125 allows 2 of 16.
    let (mut r, c) = learned_full_source(0.125);
    assert_eq!(kept_in_source(&mut r, &c, 100), 2);
}

#[test]
fn the_factor_can_lift_the_size_bound() {
    let (mut r, c) = learned_full_source(0.25);
    r.cfg.source_wait_ttft = f64::INFINITY;
    assert_eq!(kept_in_source(&mut r, &c, 2_400), 4, "the queue bound only");
}

#[test]
fn a_queued_request_does_not_teach_the_prefill_time() {
    let (mut r, c) = learned_full_source(0.5);
    let mut rng = SmallRng::seed_from_u64(5);
    // One request waits in the source and reports a 5 s TTFT (its wait included).
    let p = r.plan(&sized(0, &c, 800), ms(1_601), &mut rng);
    assert_eq!(p.steps[0].deployment, DeploymentIx(0));
    let a = r.admit(&p.steps[0], demand(800), ms(1_601)).unwrap();
    assert!(a.queued);
    let slow = Outcome::Success {
        ttft: ms(5_000),
        tpot: Some(ms(12)),
        tokens: 900,
    };
    r.release(a, slow, ms(1_601));
    // Had its TTFT been learned, the running requests' ends and the new one's prefill would
    // be expected later, and fewer would wait.
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(1_601)), 4);
}

#[test]
fn a_non_streamed_answer_does_not_teach_the_prefill_time() {
    let (mut r, c) = learned_full_source(0.5);
    // A non-streamed answer reports its whole generation as its "TTFT" (and no TPOT). It frees
    // one of the 16 slots, which the next request takes again.
    let held = Admission {
        deployment: DeploymentIx(0),
        est_tokens: 900,
        input_tokens: 800,
        cached_tokens: 0,
        reported_cached: None,
        acquired_at: ms(0),
        queued: false,
    };
    let whole = Outcome::Success {
        ttft: ms(5_000),
        tpot: None,
        tokens: 900,
    };
    r.release(held, whole, ms(1_600));
    let _again = r
        .try_acquire(DeploymentIx(0), demand(800), ms(1_600))
        .unwrap();
    assert_eq!(kept_in_source(&mut r, &c, 800), 4);
}

#[test]
fn the_short_wait_stands_without_a_source_queue() {
    // source_queue 0: a short request still waits rather than spill.
    let (mut r, c) = learned_full_source_with(0.0, 0.5);
    assert_eq!(kept_in_source(&mut r, &c, 800), 4);

    // Every region full: a long request (which does not fit) is throttled, not queued; a short
    // one still waits in the source.
    let (mut r, c) = learned_full_source_with(0.0, 0.5);
    for d in 1..3 {
        for _ in 0..16 {
            let _held = r
                .try_acquire(DeploymentIx(d), demand(800), ms(1_601))
                .unwrap();
        }
    }
    let mut rng = SmallRng::seed_from_u64(5);
    let p = r.plan(&sized(0, &c, 2_400), ms(1_601), &mut rng);
    assert!(p.steps.is_empty() && p.retry_after.is_some(), "{p:?}");
    let p = r.plan(&sized(0, &c, 800), ms(1_601), &mut rng);
    assert_eq!(deps(&p), vec![0], "only the source, to wait");
    assert!(r.admit(&p.steps[0], demand(800), ms(1_601)).is_ok());
}

#[test]
fn a_refused_wait_stops_waiting_there_for_a_while_and_costs_nothing_else() {
    let (mut r, c) = learned_full_source(0.5);
    let mut rng = SmallRng::seed_from_u64(5);
    let now = ms(1_601);
    let p = r.plan(&sized(0, &c, 800), now, &mut rng);
    assert_eq!(p.steps[0].deployment, DeploymentIx(0), "{p:?}");
    assert!(p.steps.len() > 1, "the regions with headroom follow: {p:?}");
    let a = r
        .admit(&p.steps[0], demand(800), now)
        .expect("the plan's grant");
    assert!(a.queued);
    // The upstream caps at its limit: 429 for the request sent to wait.
    let refused = Outcome::Failure(FailureKind::Throttled {
        retry_after: Some(ms(2_000)),
    });
    r.release(a, refused, now);
    let v = r.view(DeploymentIx(0), now);
    assert_eq!(
        v.cooldown_until, None,
        "no cooldown: within its limit it is fine"
    );
    assert_eq!(v.limit, 16, "the limit is not lowered");
    assert!(v.healthy);
    // No more waiting there for a minute: full means spill.
    assert_eq!(kept_in_source_at(&mut r, &c, 800, now), 0);
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(61_600)), 0);
    // Then it is tried again. By then every running request is long overdue, each expected a
    // mean hold (1.6 s) from now; with the TTFT bounds lifted only the queue's, 8 of 16, stops
    // the waits.
    r.cfg.source_wait_ttft = f64::INFINITY;
    r.deployments[0].longest_input = f64::INFINITY;
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(61_600)), 0);
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(61_601)), 8);

    // A 429 for a request within the limit still cools the deployment down.
    let (mut r, _) = learned_full_source(0.5);
    let a = r.try_acquire(DeploymentIx(1), demand(800), now).unwrap();
    r.release(a, refused, now);
    assert!(r.view(DeploymentIx(1), now).cooldown_until.is_some());
}

/// A wait in the source belongs to the plan that was granted it. Request B planned while the
/// source had a free slot; C took that slot; then A's plan was granted a wait in the (now full)
/// source. B's admission, which comes next, finds the source at its limit: it must not slip in
/// beyond the limit on A's grant, and A must still be admitted to wait.
#[test]
fn a_wait_granted_to_one_plan_is_not_taken_by_another_request() {
    let (mut r, c) = learned_full_source(0.5);
    let now = ms(1_601);
    let mut rng = SmallRng::seed_from_u64(5);
    let freed = Admission {
        deployment: DeploymentIx(0),
        est_tokens: 1_700,
        input_tokens: 1_600,
        cached_tokens: 0,
        reported_cached: None,
        acquired_at: ms(1_600),
        queued: false,
    };
    r.release(freed, Outcome::Failure(FailureKind::Cancelled), now);
    let plan_b = r.plan(&sized(0, &c, 800), now, &mut rng);
    assert_eq!(plan_b.steps[0].deployment, DeploymentIx(0), "{plan_b:?}");
    let _c = r.try_acquire(DeploymentIx(0), demand(800), now).unwrap();
    let plan_a = r.plan(&sized(0, &c, 800), now, &mut rng);
    assert_eq!(plan_a.steps[0].deployment, DeploymentIx(0), "{plan_a:?}");
    assert_eq!(r.view(DeploymentIx(0), now).in_flight, 16);

    let b = r.try_acquire(plan_b.steps[0].deployment, demand(800), now);
    assert_eq!(b.err(), Some(Rejection::InFlight), "B took A's wait");
    assert!(plan_a.steps[0].queued && !plan_b.steps[0].queued);
    let b = r.clone().admit(&plan_b.steps[0], demand(800), now);
    assert_eq!(
        b.err(),
        Some(Rejection::InFlight),
        "nor by admitting its own step"
    );
    let a = r
        .admit(&plan_a.steps[0], demand(800), now)
        .expect("A's own wait");
    assert!(a.queued);
    assert_eq!(r.view(DeploymentIx(0), now).in_flight, 17);
}

/// The longest wait (ms) a 600 ms prefill may pay in the source against a spill `rtt_ms` away:
/// a spill gives `rtt + 600` ms, and waiting may add [`WAIT_COST`] of that.
fn wait_allowed(rtt_ms: f64) -> f64 {
    (rtt_ms + 600.0) * (1.0 + WAIT_COST) - 600.0
}

#[test]
fn a_long_prompt_waits_while_waiting_costs_little_against_a_spill() {
    // 2,400 tokens: 600 ms prefill fills the typical budget, so only the spill's cost keeps it
    // local. The first running request ends at 1,700 ms, the second at 1,800 ms; the nearest
    // other region is 11 ms away.
    let at = |wait: f64| ms(1_700 - wait as u64);
    let (mut r, c) = learned_full_source(0.5);
    assert_eq!(
        kept_in_source_at(&mut r, &c, 2_400, at(wait_allowed(11.0).floor())),
        1
    );
    // A wait just beyond it spills.
    let (mut r, c) = learned_full_source(0.5);
    let beyond = wait_allowed(11.0).ceil() + 1.0;
    assert_eq!(kept_in_source_at(&mut r, &c, 2_400, at(beyond)), 0);
    // With the nearest region full too, the spill is 21 ms away: the same wait now fits.
    let (mut r, c) = learned_full_source(0.5);
    for _ in 0..16 {
        let _held = r
            .try_acquire(DeploymentIx(1), demand(800), ms(1_600))
            .unwrap();
    }
    assert!(beyond <= wait_allowed(21.0));
    assert_eq!(kept_in_source_at(&mut r, &c, 2_400, at(beyond)), 1);
}

#[test]
fn a_wait_never_reaches_the_tail() {
    // The longest prompt seen is the 1,600-token one: the tail is its 400 ms, below the 600 ms
    // budget, so an 800-token prompt (200 ms) waits only while wait + 200 <= 400: behind the
    // first two ends (99 and 199 ms), not the four the budget alone allows.
    let (mut r, c) = learned_full_source(0.5);
    r.deployments[0].longest_input = 1_600.0;
    assert_eq!(kept_in_source(&mut r, &c, 800), 2);
    let (mut r, c) = learned_full_source(0.5);
    assert_eq!(kept_in_source(&mut r, &c, 800), 4);
}

#[test]
fn the_wait_is_read_from_when_the_running_requests_end() {
    // The same learned shape, but all 16 slots were taken at once, at 1,600 ms: none frees for
    // 1.6 s, although the mean rate says a slot every 100 ms. A short prompt does not wait.
    let (mut r, c) = unlearned_source();
    let a = r
        .try_acquire(DeploymentIx(0), demand(1_600), ms(0))
        .unwrap();
    let ok = Outcome::Success {
        ttft: ms(400),
        tpot: Some(ms(12)),
        tokens: 1_700,
    };
    r.release(a, ok, ms(1_600));
    for _ in 0..16 {
        let _held = r
            .try_acquire(DeploymentIx(0), demand(1_600), ms(1_600))
            .unwrap();
    }
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(1_601)), 0);
    // 1.5 s later all 16 are 100 ms from their end: each wait is 100 ms (+ 200 ms prefill,
    // within 600), so only the queue's bound, 8 of 16, stops them.
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(3_100)), 8);
}

#[test]
fn a_request_long_overdue_is_not_expected_to_end_now() {
    // At 1,700 ms the first running request is due; 16 ms past it (within the 400 ms mean
    // TTFT) it is taken to be ending, and a short prompt waits for it. At 10 s every running
    // request is seconds
    // overdue (a stall, a slow upstream): each is expected a mean hold (1.6 s) from now, so
    // nobody waits on them.
    let (mut r, c) = learned_full_source(0.5);
    assert!(kept_in_source_at(&mut r, &c, 800, ms(1_716)) >= 1);
    let (mut r, c) = learned_full_source(0.5);
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(10_000)), 0);
}

#[test]
fn the_fixed_part_of_a_ttft_is_not_read_as_slot_time() {
    // The TTFTs measured here are 100 ms of round trip and handling plus 0.25 ms a token: 300
    // ms for 800 tokens, 500 ms for 1,600. Slot time is the prefill and the decode only: a
    // request of 1,600 in and 100 out at 12 ms a token ends 400 + 1,200 = 1,600 ms after it took
    // its slot. The ratio (306 ms / 825 tokens) would say 1,794 ms.
    let (mut r, c) = unlearned_source();
    for (input, ttft) in [(800, 300), (1_600, 500)] {
        let a = r
            .try_acquire(DeploymentIx(0), demand(input), ms(0))
            .unwrap();
        let ok = Outcome::Success {
            ttft: ms(ttft),
            tpot: Some(ms(12)),
            tokens: input + 100,
        };
        r.release(a, ok, ms(ttft + 1_200));
    }
    for _ in 0..16 {
        let _held = r
            .try_acquire(DeploymentIx(0), demand(1_600), ms(2_000))
            .unwrap();
    }
    // 1,550 ms on, every slot frees in 50 ms: an 800-token prompt's expected TTFT is 50 + 297
    // ms, within 1.5 × the mean TTFT (459 ms), so the queue's bound (8 of 16) is what stops
    // the waits. Read with the ratio, each would be 244 ms away, and none would wait.
    assert_eq!(kept_in_source_at(&mut r, &c, 800, ms(3_550)), 8);
}

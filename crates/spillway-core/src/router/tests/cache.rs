//! Cache affinity: the prefill a region's prefix cache saves, in the spill's ranking and (for
//! `on`) against a source with headroom; never beyond a region's headroom.
use super::*;
use crate::prefix::{CacheAffinity, Prefix, PrefixConfig};

const BLOCKS: [u64; 3] = [11, 12, 13];

/// Three regions of 16 slots (round trips `rtt_ms` from the source); each has learned that
/// 1,600 input tokens take 400 ms to the first token past the round trip (about 0.25 ms a
/// token, so a cached 512-token block saves about 128 ms).
/// Region 2 holds `BLOCKS`.
fn cached_in_region_2(rtt_ms: [u64; 3]) -> (Router, Vec<Candidate>) {
    let specs = (0..3).map(|i| spec(i, 16)).collect();
    let c = (0..3u32)
        .map(|i| cand(i, i as u16, rtt_ms[i as usize]))
        .collect();
    // The move budget apart (its own tests are below): every request that gains may move.
    let cfg = RouterConfig {
        cache_min_locality: 0.0,
        ..RouterConfig::default()
    };
    let mut r = Router::new(cfg, specs);
    r.set_prefix_cache(Some(PrefixConfig {
        max_entries: 10_000,
        ttl: Duration::from_secs(600),
        capacity_blocks: vec![1_000; 3],
    }));
    for (d, rtt) in (0..3).zip(rtt_ms) {
        let demand = Demand {
            est_tokens: 1_700,
            input_tokens: 1_600,
        };
        let a = r.try_acquire(DeploymentIx(d), demand, ms(0)).unwrap();
        let ok = Outcome::Success {
            ttft: ms(400 + rtt),
            tpot: Some(ms(12)),
            tokens: 1_700,
        };
        r.release(a, ok, ms(1_600));
    }
    r.record_prefix(DeploymentIx(2), &BLOCKS, ms(1_600));
    (r, c)
}

fn request<'a>(c: &'a [Candidate], blocks: &'a [u64], affinity: CacheAffinity) -> RouteRequest<'a> {
    RouteRequest {
        source: RegionIx(0),
        candidates: c,
        est_tokens: 1_700,
        input_tokens: 1_600,
        prefix: Prefix { blocks, affinity },
    }
}

fn first(r: &mut Router, req: &RouteRequest<'_>) -> Step {
    let mut rng = SmallRng::seed_from_u64(3);
    r.plan(req, ms(2_000), &mut rng).steps[0]
}

#[test]
fn on_leaves_a_source_with_headroom_for_a_region_that_saves_more_than_it_costs() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    // Source: ~400 ms. Region 2: 21 ms + 400 − 384 ms saved.
    let step = first(&mut r, &request(&c, &BLOCKS, CacheAffinity::On));
    assert_eq!(step.deployment, DeploymentIx(2));
    assert_eq!(step.reason, Reason::SpillCache);
}

#[test]
fn prefer_source_and_off_keep_a_source_with_headroom() {
    for affinity in [CacheAffinity::PreferSource, CacheAffinity::Off] {
        let (mut r, c) = cached_in_region_2([1, 11, 21]);
        let step = first(&mut r, &request(&c, &BLOCKS, affinity));
        assert_eq!(step.deployment, DeploymentIx(0), "{affinity:?}");
        assert_eq!(step.reason, Reason::Local);
    }
}

#[test]
fn a_small_saving_does_not_move_a_request() {
    // One cached block saves 128 ms; region 2 is 150 ms away: 150 + 400 − 128 = 422 ms
    // against the source's ~400.
    let (mut r, c) = cached_in_region_2([1, 11, 150]);
    let step = first(&mut r, &request(&c, &BLOCKS[..1], CacheAffinity::On));
    assert_eq!(step.deployment, DeploymentIx(0));
    // Only a leading run counts: blocks 12 and 13 after another first block save nothing,
    // even from the nearby region.
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    let step = first(&mut r, &request(&c, &[99, 12, 13], CacheAffinity::On));
    assert_eq!(step.deployment, DeploymentIx(0));
}

#[test]
fn a_spill_goes_where_the_prefix_is() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    for _ in 0..16 {
        let _held = r.try_acquire(DeploymentIx(0), 1_700, ms(2_000)).unwrap();
    }
    let cfg_no_wait = |r: &mut Router| r.cfg.source_wait = 0.0;
    cfg_no_wait(&mut r);
    for _ in 0..20 {
        let step = first(&mut r, &request(&c, &BLOCKS, CacheAffinity::PreferSource));
        assert_eq!(step.deployment, DeploymentIx(2));
        assert_eq!(step.reason, Reason::SpillCapacity);
    }
    // Cache-blind, the nearer region 1 is the better spill.
    let step = first(&mut r, &request(&c, &BLOCKS, CacheAffinity::Off));
    assert_ne!(step.deployment, DeploymentIx(2));
}

#[test]
fn a_cached_region_without_headroom_takes_nothing() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    for _ in 0..16 {
        let _held = r.try_acquire(DeploymentIx(2), 1_700, ms(2_000)).unwrap();
    }
    let step = first(&mut r, &request(&c, &BLOCKS, CacheAffinity::On));
    assert_eq!(step.deployment, DeploymentIx(0));
    assert_eq!(step.reason, Reason::Local);
}

#[test]
fn route_records_where_the_prompt_went() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    let blocks = [21, 22];
    let mut rng = SmallRng::seed_from_u64(3);
    let routed = r.route(
        &request(&c, &blocks, CacheAffinity::Off),
        ms(2_000),
        &mut rng,
    );
    let (i, a) = routed.first.unwrap();
    assert_eq!(routed.plan.steps[i].deployment, DeploymentIx(0));
    assert_eq!(a.cached_tokens, 0, "nothing was cached yet");
    assert_eq!(r.cached_blocks(DeploymentIx(0), &blocks, ms(2_001)), 2);
    assert_eq!(r.cached_blocks(DeploymentIx(1), &blocks, ms(2_001)), 0);
    // The next turn is admitted with the 1,024 tokens its source holds: what the source
    // learns its prefill rate from is the 576 it prefills.
    let routed = r.route(
        &request(&c, &blocks, CacheAffinity::Off),
        ms(2_002),
        &mut rng,
    );
    let (_, a) = routed.first.unwrap();
    assert_eq!((a.deployment, a.cached_tokens), (DeploymentIx(0), 1_024));
}

#[test]
fn without_a_cache_model_nothing_is_weighed() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    r.set_prefix_cache(None);
    let step = first(&mut r, &request(&c, &BLOCKS, CacheAffinity::On));
    assert_eq!(step.deployment, DeploymentIx(0));
}

#[test]
fn a_full_source_that_holds_the_prefix_keeps_the_request_waiting() {
    // The source's 16 slots taken at 2 s by requests expected to end at 3.6 s; at 3.5 s the
    // first frees in 100 ms. A 1,600-token prompt: waiting, 100 + 400 ms, against a spill of
    // 11 + 400 ms: cache-blind it spills. The source holds its prefix (384 ms of prefill
    // saved; the spill would prefill it all): it waits, 116 ms against 411.
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    for _ in 0..16 {
        let demand = Demand {
            est_tokens: 1_700,
            input_tokens: 1_600,
        };
        let _held = r.try_acquire(DeploymentIx(0), demand, ms(2_000)).unwrap();
    }
    r.record_prefix(DeploymentIx(0), &[31, 32, 33], ms(2_000));
    let mut rng = SmallRng::seed_from_u64(3);
    let blind = r.plan(
        &request(&c, &[31, 32, 33], CacheAffinity::Off),
        ms(3_500),
        &mut rng,
    );
    assert_ne!(blind.steps[0].region, RegionIx(0));
    for affinity in [CacheAffinity::PreferSource, CacheAffinity::On] {
        let p = r.plan(&request(&c, &[31, 32, 33], affinity), ms(3_500), &mut rng);
        assert_eq!(p.steps[0].deployment, DeploymentIx(0), "{affinity:?}");
        assert!(p.steps[0].queued);
        assert_eq!(p.steps[0].reason, Reason::Local);
    }
}

#[test]
fn the_upstream_s_own_cached_count_is_what_the_prefill_rate_is_learned_from() {
    let (mut r, _) = cached_in_region_2([1, 11, 21]);
    let learned = |r: &Router| r.deployments[0].prefill.map(|line| line.mean_input());
    // Every request so far prefilled its 1,600 tokens.
    assert_eq!(learned(&r), Some(1_600.0));
    let demand = Demand {
        est_tokens: 1_700,
        input_tokens: 1_600,
    };
    let ok = Outcome::Success {
        ttft: ms(150),
        tpot: Some(ms(12)),
        tokens: 1_700,
    };
    // Expected uncached, but the upstream read 1,024 from its cache: it prefilled 576.
    let mut a = r.try_acquire(DeploymentIx(0), demand, ms(2_000)).unwrap();
    assert_eq!(a.cached_tokens, 0);
    a.report_cached(1_024);
    assert_eq!(a.prefilled_tokens(), 576);
    r.release(a, ok, ms(3_000));
    let after = learned(&r).unwrap();
    assert!(after < 1_600.0 && after > 576.0, "{after}");
    // Without a report the estimate stands; a report above the input is capped to it.
    let a = r.try_acquire(DeploymentIx(1), demand, ms(2_000)).unwrap();
    assert_eq!(a.prefilled_tokens(), 1_600);
    r.release(a, ok, ms(3_000));
    assert_eq!(
        r.deployments[1].prefill.map(|line| line.mean_input()),
        Some(1_600.0)
    );
    let mut a = r.try_acquire(DeploymentIx(2), demand, ms(2_000)).unwrap();
    a.report_cached(99_999);
    assert_eq!((a.reported_cached, a.prefilled_tokens()), (Some(1_600), 0));
    r.release(a, ok, ms(3_000));
}

#[test]
fn a_failover_is_admitted_with_its_cache_and_expected_to_hold_the_prompt_after() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    let mut rng = SmallRng::seed_from_u64(3);
    // A prompt nobody holds: admitted in the source, which is then expected to hold it.
    let fresh = [41, 42];
    let routed = r.route(
        &request(&c, &fresh, CacheAffinity::Off),
        ms(2_000),
        &mut rng,
    );
    let (i, a) = routed.first.unwrap();
    assert_eq!(routed.plan.prefix, fresh);
    assert_eq!(a.deployment, DeploymentIx(0));
    // The source fails it; the failover region prefills it, and holds it from then on.
    r.release(a, Outcome::Failure(FailureKind::ServerError), ms(2_010));
    let (j, b) = r
        .admit_next(&routed.plan, i + 1, routed_demand(), ms(2_011))
        .unwrap();
    let region = routed.plan.steps[j].deployment;
    assert_ne!(region, DeploymentIx(0));
    assert_eq!(b.cached_tokens, 0);
    assert_eq!(r.cached_blocks(region, &fresh, ms(2_012)), 2);
    r.release(b, Outcome::Failure(FailureKind::ServerError), ms(2_020));
    // A failover to where the prefix is counts its cached tokens.
    let plan = Plan {
        steps: vec![Step {
            deployment: DeploymentIx(2),
            region: RegionIx(2),
            reason: Reason::Failover(FailureKind::ServerError),
            queued: false,
        }],
        retry_after: None,
        held_back: false,
        prefix: BLOCKS.to_vec(),
    };
    let (_, held) = r.admit_next(&plan, 0, routed_demand(), ms(2_030)).unwrap();
    assert_eq!(
        (held.deployment, held.cached_tokens),
        (DeploymentIx(2), 1_536)
    );
    r.release(held, Outcome::Failure(FailureKind::Cancelled), ms(2_040));
}

fn routed_demand() -> Demand {
    Demand {
        est_tokens: 1_700,
        input_tokens: 1_600,
    }
}

/// Sends `n` requests for `BLOCKS` (affinity `on`, so they go to region 2 while it is expected
/// to save their prefill) and has each upstream report `reported` cached tokens where some were
/// expected. Returns where each request went.
fn served_with_reports(r: &mut Router, c: &[Candidate], n: u64, reported: u64) -> Vec<u32> {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut served = Vec::new();
    for k in 0..n {
        let now = ms(2_000 + 10 * k);
        let routed = r.route(&request(c, &BLOCKS, CacheAffinity::On), now, &mut rng);
        let (_, mut a) = routed.first.unwrap();
        served.push(a.deployment.0);
        a.report_cached(if a.cached_tokens > 0 { reported } else { 0 });
        let ok = Outcome::Success {
            ttft: ms(421),
            tpot: Some(ms(12)),
            tokens: 1_700,
        };
        r.release(a, ok, now + ms(5));
    }
    served
}

#[test]
fn a_deployment_whose_reports_show_no_cache_stops_drawing_requests_for_it() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    // Region 2 is expected to hold the prompt, but its engine reads nothing from a cache: after
    // a dozen reports of nothing (the saving it was credited with, 384 ms against 20 ms of
    // round trip, has to shrink twentyfold), the source keeps the conversation.
    let served = served_with_reports(&mut r, &c, 30, 0);
    let drawn = served.iter().take_while(|&&d| d == 2).count();
    assert!((1..=16).contains(&drawn), "{served:?}");
    assert!(served[drawn..].iter().all(|&d| d == 0), "{served:?}");
    assert!(r.deployments[2].cache_trust() < 0.3);
    // It is still expected to hold the prompt: only the saving credited to it shrank.
    assert_eq!(r.cached_blocks(DeploymentIx(2), &BLOCKS, ms(3_000)), 3);
}

#[test]
fn reports_that_bear_the_estimate_out_keep_its_pull() {
    // Whole reports, and reports of half: a saving of 192 ms still beats the source by more
    // than the margin (21 + 400 − 192 ms against ~400).
    for (reported, trust) in [(1_536, 1.0), (768, 0.5)] {
        let (mut r, c) = cached_in_region_2([1, 11, 21]);
        let served = served_with_reports(&mut r, &c, 40, reported);
        assert!(served.iter().all(|&d| d == 2), "{reported}: {served:?}");
        let t = r.deployments[2].cache_trust();
        assert!((t - trust).abs() < 0.01, "{reported}: {t}");
        let step = first(&mut r, &request(&c, &BLOCKS, CacheAffinity::On));
        assert_eq!(step.deployment, DeploymentIx(2), "{reported}");
    }
    // A request expected to find nothing, or an upstream that does not report, teaches nothing.
    let (mut r, _) = cached_in_region_2([1, 11, 21]);
    let demand = routed_demand();
    let mut a = r.try_acquire(DeploymentIx(1), demand, ms(2_000)).unwrap();
    a.report_cached(0);
    let ok = Outcome::Success {
        ttft: ms(411),
        tpot: Some(ms(12)),
        tokens: 1_700,
    };
    r.release(a, ok, ms(2_500));
    assert_eq!(r.deployments[1].cache_trust(), 1.0);
}

/// A prompt of three blocks of its own (`k`), recorded as held by region 2 at `now`.
fn held_in_region_2(r: &mut Router, k: u64, now: Duration) -> [u64; 3] {
    let blocks = [1_000 * k + 1, 1_000 * k + 2, 1_000 * k + 3];
    r.record_prefix(DeploymentIx(2), &blocks, now);
    blocks
}

/// Sends `n` requests with affinity `on` from region 0, which has room for each, each for a
/// prompt of its own that region 2 holds (so each would gain more than the margin by
/// leaving); returns whether each left, for the cache.
fn moves(r: &mut Router, c: &[Candidate], from: u64, n: u64) -> Vec<bool> {
    let mut rng = SmallRng::seed_from_u64(9);
    (from..from + n)
        .map(|k| {
            let now = ms(2_000 + 10 * k);
            let blocks = held_in_region_2(r, k + 1, now);
            let routed = r.route(&request(c, &blocks, CacheAffinity::On), now, &mut rng);
            let (i, a) = routed.first.unwrap();
            let step = routed.plan.steps[i];
            let moved = step.deployment != DeploymentIx(0);
            let want = if moved {
                Reason::SpillCache
            } else {
                Reason::Local
            };
            assert_eq!(step.reason, want);
            // Each answers at once, so the slots stay free.
            r.release(a, Outcome::Failure(FailureKind::Cancelled), now + ms(1));
            moved
        })
        .collect()
}

fn moved_of(min_locality: f64, n: u64) -> usize {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    r.cfg.cache_min_locality = min_locality;
    moves(&mut r, &c, 0, n).into_iter().filter(|&m| m).count()
}

#[test]
fn the_move_budget_keeps_the_share_of_requests_with_room_that_stay() {
    // Without a budget every request leaves for the cache; with the default, one in ten (a
    // move is earned over ten requests, none banked at the start); with 1, none.
    assert_eq!(moved_of(0.0, 100), 100);
    assert_eq!(moved_of(0.9, 100), 10);
    assert_eq!(moved_of(0.75, 100), 25);
    assert_eq!(moved_of(1.0, 100), 0);
}

#[test]
fn moves_not_taken_are_banked_up_to_a_burst() {
    let (mut r, c) = cached_in_region_2([1, 11, 21]);
    r.cfg.cache_min_locality = 0.5;
    let mut rng = SmallRng::seed_from_u64(9);
    // Twenty requests no other region holds bank moves (half a move each, four at most)...
    for k in 0..20 {
        let fresh = [500_000 + k];
        let now = ms(1_700 + k);
        let routed = r.route(&request(&c, &fresh, CacheAffinity::On), now, &mut rng);
        let (_, a) = routed.first.unwrap();
        assert_eq!(a.deployment, DeploymentIx(0));
        r.release(a, Outcome::Failure(FailureKind::Cancelled), now);
    }
    // ...so the next ones may move: four banked and half a move each, then one in two.
    let moved = moves(&mut r, &c, 0, 10);
    assert!(moved[..7].iter().all(|&m| m), "{moved:?}");
    assert_eq!(moved.iter().filter(|&&m| m).count(), 8, "{moved:?}");
}

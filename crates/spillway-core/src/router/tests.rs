use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn spec(region: u16, max_in_flight: u32) -> DeploymentSpec {
    DeploymentSpec {
        region: RegionIx(region),
        max_in_flight,
        rpm: None,
        tpm: None,
    }
}

fn cand(d: u32, region: u16, rtt_ms: u64) -> Candidate {
    Candidate {
        deployment: DeploymentIx(d),
        region: RegionIx(region),
        rtt: ms(rtt_ms),
    }
}

/// Deployment i in region i, rtt from region 0: 1, 12, 50, 70, 80, 90 ms.
fn world(n: usize) -> (Router, Vec<Candidate>) {
    let rtts = [1, 12, 50, 70, 80, 90];
    let specs = (0..n).map(|i| spec(i as u16, 4)).collect();
    let cands = (0..n).map(|i| cand(i as u32, i as u16, rtts[i])).collect();
    (Router::new(RouterConfig::default(), specs), cands)
}

/// Deployment i in region i with 4 slots, rtt 1, 11 and 21 ms, `busy[i]` of them held.
fn three_regions(cfg: RouterConfig, busy: [u32; 3]) -> (Router, Vec<Candidate>) {
    let specs = (0..3).map(|i| spec(i, 4)).collect();
    let cands = (0..3)
        .map(|i| cand(i, i as u16, 1 + 10 * u64::from(i)))
        .collect();
    let mut r = Router::new(cfg, specs);
    for (d, n) in (0..).zip(busy) {
        for _ in 0..n {
            let _held = r.try_acquire(DeploymentIx(d), 100, ms(0)).unwrap();
        }
    }
    (r, cands)
}

fn req(source: u16, candidates: &[Candidate]) -> RouteRequest<'_> {
    RouteRequest {
        source: RegionIx(source),
        candidates,
        est_tokens: 100,
        input_tokens: 0,
        prefix: crate::Prefix::NONE,
    }
}

fn deps(p: &Plan) -> Vec<u32> {
    p.steps.iter().map(|s| s.deployment.0).collect()
}

const OK: Outcome = Outcome::Success {
    ttft: Duration::from_millis(60),
    tpot: None,
    tokens: 100,
};

fn fail(r: &mut Router, d: u32, kind: FailureKind, now: Duration) {
    let a = r.try_acquire(DeploymentIx(d), 100, now).unwrap();
    r.release(a, Outcome::Failure(kind), now);
}

#[test]
fn strings_and_retryability() {
    use FailureKind::*;
    let kinds = [
        Connect,
        Timeout,
        Throttled { retry_after: None },
        ServerError,
        ClientError,
        Cancelled,
    ];
    let names: Vec<_> = kinds
        .iter()
        .map(|k| Reason::Failover(*k).as_str())
        .collect();
    assert_eq!(
        names,
        [
            "failover:connect",
            "failover:timeout",
            "failover:throttled",
            "failover:server_error",
            "failover:client_error",
            "failover:cancelled"
        ]
    );
    assert_eq!(
        kinds.map(|k| k.is_retryable()),
        [true, true, true, true, false, false]
    );
    assert_eq!(Timeout.as_str(), "timeout");
    assert_eq!(Reason::Local.as_str(), "local");
    assert_eq!(Reason::SpillCapacity.as_str(), "spill:capacity");
    assert_eq!(Reason::SpillUnhealthy.as_str(), "spill:unhealthy");
    let s = Step {
        deployment: DeploymentIx(1),
        region: RegionIx(1),
        reason: Reason::Local,
        queued: false,
    };
    assert_eq!(s.after_failure(Connect).reason, Reason::Failover(Connect));
}

#[test]
fn default_config() {
    let c = RouterConfig::default();
    assert_eq!(c.max_attempts, 3);
    assert_eq!(c.health.failure_threshold, 3);
    assert_eq!(
        (c.health.base_ejection, c.health.max_ejection),
        (ms(1000), ms(30_000))
    );
    assert_eq!((c.aimd.min_limit, c.aimd.decrease_factor), (1, 0.75));
    let b = &c.retry_budget;
    assert_eq!((b.ratio, b.min_per_sec, b.max_balance), (0.2, 10.0, 100.0));
    assert_eq!((c.near_equal_ratio, c.near_equal_slack), (1.25, ms(5)));
    assert_eq!((c.prior_service_ttft, c.ewma_alpha), (ms(50), 0.2));
}

#[test]
fn source_first_then_ascending_score_capped_at_max_attempts() {
    let (mut r, c) = world(6);
    let mut rng = SmallRng::seed_from_u64(1);
    let p = r.plan(&req(0, &c), ms(0), &mut rng);
    assert_eq!(deps(&p), [0, 1, 2]);
    assert_eq!(p.steps[0].reason, Reason::Local);
    assert_eq!(p.steps[1].reason, Reason::SpillCapacity);
    assert_eq!(p.retry_after, None);
    // The source is first even when it is the farthest candidate and not listed first.
    let p = r.plan(&req(5, &c), ms(0), &mut rng);
    assert_eq!(p.steps[0].deployment.0, 5);
    assert_eq!(p.steps[0].reason, Reason::Local);
}

#[test]
fn full_source_spills_for_capacity_and_failover_follows() {
    let (mut r, c) = world(3);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(r.try_acquire(DeploymentIx(0), 100, ms(0)).unwrap());
    }
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 100, ms(0)).unwrap_err(),
        Rejection::InFlight
    );
    let p = r.plan(&req(0, &c), ms(0), &mut SmallRng::seed_from_u64(1));
    // 12 ms vs 50 ms + prior: not near-equal, so the nearer one is first.
    assert_eq!(deps(&p), [1, 2]);
    assert!(p.steps.iter().all(|s| s.reason == Reason::SpillCapacity));
    // Step 0 fails: step 1 is a different destination, and still admits.
    fail(&mut r, 1, FailureKind::Connect, ms(0));
    assert!(r.try_acquire(p.steps[1].deployment, 100, ms(0)).is_ok());
    for a in held {
        r.release(a, OK, ms(0));
    }
}

#[test]
fn failures_eject_then_half_open_probe_backs_off() {
    let (mut r, c) = world(3);
    let mut rng = SmallRng::seed_from_u64(2);
    for _ in 0..3 {
        fail(&mut r, 0, FailureKind::ServerError, ms(0));
    }
    let v = r.view(DeploymentIx(0), ms(0));
    assert!(!v.healthy);
    assert_eq!(v.ejected_until, Some(ms(1000)));
    let p = r.plan(&req(0, &c), ms(10), &mut rng);
    assert_eq!(deps(&p), [1, 2]);
    assert_eq!(p.steps[0].reason, Reason::SpillUnhealthy);
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 100, ms(10)).unwrap_err(),
        Rejection::Unavailable
    );
    // Ejection over: half-open, the source is first again and takes the single probe.
    let p = r.plan(&req(0, &c), ms(1000), &mut rng);
    assert_eq!(
        p.steps[0],
        Step {
            deployment: DeploymentIx(0),
            region: RegionIx(0),
            reason: Reason::Local,
            queued: false,
        }
    );
    let probe = r.try_acquire(DeploymentIx(0), 100, ms(1000)).unwrap();
    assert_eq!(
        deps(&r.plan(&req(0, &c), ms(1001), &mut rng)),
        [1, 2],
        "one probe at a time"
    );
    r.release(probe, Outcome::Failure(FailureKind::Timeout), ms(1100));
    assert_eq!(
        r.view(DeploymentIx(0), ms(1100)).ejected_until,
        Some(ms(3100)),
        "doubled"
    );
    let probe = r.try_acquire(DeploymentIx(0), 100, ms(3100)).unwrap();
    r.release(probe, OK, ms(3200));
    assert!(r.view(DeploymentIx(0), ms(3200)).healthy);
    assert_eq!(deps(&r.plan(&req(0, &c), ms(3200), &mut rng))[0], 0);
}

#[test]
fn neutral_outcomes_leave_health_alone_but_free_the_probe() {
    let (mut r, c) = world(2);
    for _ in 0..10 {
        fail(&mut r, 0, FailureKind::ClientError, ms(0));
        fail(&mut r, 0, FailureKind::Cancelled, ms(0));
    }
    assert!(r.view(DeploymentIx(0), ms(0)).healthy);
    assert_eq!(r.view(DeploymentIx(0), ms(0)).limit, 4);
    for _ in 0..3 {
        fail(&mut r, 0, FailureKind::Connect, ms(0));
    }
    fail(&mut r, 0, FailureKind::Cancelled, ms(1000)); // the probe's client went away
    let p = r.plan(&req(0, &c), ms(1000), &mut SmallRng::seed_from_u64(0));
    assert_eq!(p.steps[0].deployment.0, 0, "probe slot is free again");
}

#[test]
fn cooldown_from_retry_after_is_honoured() {
    let (mut r, c) = world(1);
    let throttled = |ra| FailureKind::Throttled { retry_after: ra };
    fail(&mut r, 0, throttled(Some(ms(5000))), ms(0));
    assert_eq!(
        r.view(DeploymentIx(0), ms(0)).cooldown_until,
        Some(ms(5000))
    );
    let p = r.plan(&req(0, &c), ms(2000), &mut SmallRng::seed_from_u64(0));
    assert_eq!(
        p,
        Plan {
            steps: vec![],
            retry_after: Some(ms(3000)),
            held_back: false,
            prefix: Vec::new(),
        }
    );
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 1, ms(4999)).unwrap_err(),
        Rejection::Unavailable
    );
    // Without Retry-After: one second.
    fail(&mut r, 0, throttled(None), ms(5000));
    assert_eq!(
        r.view(DeploymentIx(0), ms(5000)).cooldown_until,
        Some(ms(6000))
    );
    assert!(r.try_acquire(DeploymentIx(0), 1, ms(6000)).is_ok());
    assert_eq!(r.view(DeploymentIx(0), ms(6000)).cooldown_until, None);
}

#[test]
fn aimd_decreases_on_overload_and_recovers_on_success() {
    let mut r = Router::new(RouterConfig::default(), vec![spec(0, 16)]);
    fail(
        &mut r,
        0,
        FailureKind::Throttled {
            retry_after: Some(ms(1)),
        },
        ms(0),
    );
    assert_eq!(r.view(DeploymentIx(0), ms(0)).limit, 12);
    fail(&mut r, 0, FailureKind::Timeout, ms(10));
    assert_eq!(r.view(DeploymentIx(0), ms(10)).limit, 9);
    fail(&mut r, 0, FailureKind::ServerError, ms(10));
    assert_eq!(
        r.view(DeploymentIx(0), ms(10)).limit,
        9,
        "5xx is not an overload signal"
    );
    // Three failures in a row ejected it; after the ejection the probe and the rest succeed.
    let later = ms(1010);
    for _ in 0..100 {
        let a = r.try_acquire(DeploymentIx(0), 1, later).unwrap();
        r.release(a, OK, later);
    }
    assert_eq!(r.view(DeploymentIx(0), later).limit, 16);
}

#[test]
fn retry_budget_exhausts_and_refills() {
    let (mut r, _) = world(1);
    let mut n = 0;
    while r.try_retry(ms(0)) {
        n += 1;
    }
    assert_eq!(n, 10);
    for _ in 0..10 {
        r.record_request(ms(0));
    }
    assert!(r.try_retry(ms(0)) && r.try_retry(ms(0)) && !r.try_retry(ms(0)));
    assert!(r.try_retry(ms(100)));
    assert!(r.retry_balance(ms(100)) < 1.0);
}

#[test]
fn unknown_deployments_are_harmless() {
    let (mut r, _) = world(1);
    assert_eq!(r.deployment_count(), 1);
    assert!(r.spec(DeploymentIx(0)).is_some() && r.spec(DeploymentIx(7)).is_none());
    assert_eq!(
        r.try_acquire(DeploymentIx(7), 1, ms(0)).unwrap_err(),
        Rejection::Unavailable
    );
    r.release(
        Admission {
            deployment: DeploymentIx(7),
            est_tokens: 1,
            input_tokens: 0,
            cached_tokens: 0,
            reported_cached: None,
            acquired_at: Duration::ZERO,
            queued: false,
        },
        OK,
        ms(0),
    );
    assert!(!r.view(DeploymentIx(7), ms(0)).healthy);
    let c = [cand(7, 0, 1)];
    let p = r.plan(&req(0, &c), ms(0), &mut SmallRng::seed_from_u64(0));
    assert_eq!(
        p,
        Plan {
            steps: vec![],
            retry_after: Some(ms(60_000)),
            held_back: false,
            prefix: Vec::new(),
        }
    );
    // A duplicated candidate appears once.
    let c = [cand(0, 0, 1), cand(0, 0, 1)];
    assert_eq!(
        r.plan(&req(0, &c), ms(0), &mut SmallRng::seed_from_u64(0))
            .steps
            .len(),
        1
    );
}

mod cache;
mod capacity;
mod props;

#[test]
fn router_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Router>();
}

mod policies {
    use super::*;
    use crate::Policy;

    fn router(policy: Policy) -> Router {
        let cfg = RouterConfig {
            policy,
            ..RouterConfig::default()
        };
        let specs = (0..3)
            .map(|r| DeploymentSpec {
                region: RegionIx(r),
                max_in_flight: 10,
                rpm: None,
                tpm: None,
            })
            .collect();
        Router::new(cfg, specs)
    }

    fn cands() -> Vec<Candidate> {
        (0..3)
            .map(|r| Candidate {
                deployment: DeploymentIx(r),
                region: RegionIx(r as u16),
                rtt: Duration::from_millis(1 + 10 * u64::from(r)),
            })
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_ignores_the_source() {
        let mut r = router(Policy::RoundRobin);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let c = cands();
        let req = RouteRequest {
            source: RegionIx(0),
            candidates: &c,
            est_tokens: 1,
            input_tokens: 0,
            prefix: crate::Prefix::NONE,
        };
        let plans: Vec<Plan> = (0..6)
            .map(|_| r.plan(&req, Duration::ZERO, &mut rng))
            .collect();
        let firsts: Vec<u16> = plans.iter().map(|p| p.steps[0].region.0).collect();
        // A baseline away from a source with room spilled by choice, not for capacity or a
        // cache.
        for p in &plans {
            let want = if p.steps[0].region == RegionIx(0) {
                Reason::Local
            } else {
                Reason::SpillBalance
            };
            assert_eq!(p.steps[0].reason, want, "{p:?}");
        }
        let mut seen = firsts.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![0, 1, 2], "{firsts:?}");
    }

    #[test]
    fn least_loaded_picks_the_emptiest() {
        let mut r = router(Policy::LeastLoaded);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let c = cands();
        let _a = r.try_acquire(DeploymentIx(0), 1, Duration::ZERO).unwrap();
        let _b = r.try_acquire(DeploymentIx(2), 1, Duration::ZERO).unwrap();
        let req = RouteRequest {
            source: RegionIx(0),
            candidates: &c,
            est_tokens: 1,
            input_tokens: 0,
            prefix: crate::Prefix::NONE,
        };
        let plan = r.plan(&req, Duration::ZERO, &mut rng);
        assert_eq!(plan.steps[0].region, RegionIx(1));
        // The source had room: a choice of the policy, not a spill for capacity.
        assert_eq!(plan.steps[0].reason, Reason::SpillBalance);
        // With the source full, leaving it is a spill for capacity.
        let held: Vec<_> =
            std::iter::from_fn(|| r.try_acquire(DeploymentIx(0), 1, Duration::ZERO).ok())
                .take(64)
                .collect();
        assert!(!held.is_empty());
        let plan = r.plan(&req, Duration::ZERO, &mut rng);
        assert_ne!(plan.steps[0].region, RegionIx(0));
        assert_eq!(plan.steps[0].reason, Reason::SpillCapacity);
        assert!(
            plan.steps
                .iter()
                .all(|s| c.iter().any(|x| x.deployment == s.deployment))
        );
    }
}

mod source_queue;
mod source_wait;
mod spill_reserve;
mod tail_budget;

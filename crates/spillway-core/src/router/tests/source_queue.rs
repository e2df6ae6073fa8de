//! Spillway queues in the source, and only there, when nothing has headroom; the baselines and a
//! zero `source_queue` throttle.
use super::*;

fn full_world(policy: Policy, source_queue: f64) -> (Router, Vec<Candidate>) {
    let cfg = RouterConfig {
        policy,
        source_queue,
        ..RouterConfig::default()
    };
    three_regions(cfg, [4, 4, 4])
}

#[test]
fn waits_in_the_source_up_to_the_queue_bound() {
    let (mut r, c) = full_world(Policy::Spillway, 0.5);
    let mut rng = SmallRng::seed_from_u64(3);
    for _ in 0..2 {
        let p = r.plan(&req(1, &c), ms(1), &mut rng);
        assert_eq!(deps(&p), vec![1]);
        assert_eq!(p.steps[0].reason, Reason::Local);
        assert!(p.steps[0].queued);
        let _held = r.admit(&p.steps[0], 100, ms(1)).unwrap();
    }
    assert_eq!(r.view(DeploymentIx(1), ms(1)).in_flight, 6, "4 + 4 × 0.5");
    let p = r.plan(&req(1, &c), ms(1), &mut rng);
    assert!(p.steps.is_empty() && p.retry_after.is_some(), "{p:?}");
    assert_eq!(
        r.try_acquire(DeploymentIx(1), 100, ms(1)).err(),
        Some(Rejection::InFlight)
    );
}

#[test]
fn the_grant_is_the_planned_steps_and_bounded() {
    let (mut r, c) = full_world(Policy::Spillway, 1.0);
    let mut rng = SmallRng::seed_from_u64(3);
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(deps(&p), vec![0]);
    assert!(p.steps[0].queued);
    assert_eq!(
        r.try_acquire(DeploymentIx(2), 100, ms(1)).err(),
        Some(Rejection::InFlight),
        "not another deployment"
    );
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 100, ms(1)).err(),
        Some(Rejection::InFlight),
        "not an admission without the step"
    );
    let a = r.admit(&p.steps[0], 100, ms(1)).unwrap();
    assert!(a.queued);
    // Re-checked at every admission: never more than 4 + 4 × 1.0 in flight.
    let _held: Vec<_> = (0..3)
        .map(|_| r.admit(&p.steps[0], 100, ms(1)).unwrap())
        .collect();
    assert_eq!(
        r.admit(&p.steps[0], 100, ms(1)).err(),
        Some(Rejection::InFlight)
    );
    assert_eq!(r.view(DeploymentIx(0), ms(1)).in_flight, 8);
    // A step that was not granted a wait stops at the limit.
    let unqueued = Step {
        queued: false,
        ..p.steps[0]
    };
    r.release(a, OK, ms(2));
    assert_eq!(
        r.admit(&unqueued, 100, ms(2)).err(),
        Some(Rejection::InFlight)
    );
    assert!(r.admit(&p.steps[0], 100, ms(2)).is_ok());
}

#[test]
fn spills_before_it_queues_and_never_queues_remotely() {
    let (mut r, c) = full_world(Policy::Spillway, 0.5);
    let mut rng = SmallRng::seed_from_u64(3);
    // Region 2 frees a slot: the request spills there rather than wait at home.
    r.release(
        Admission {
            deployment: DeploymentIx(2),
            est_tokens: 100,
            input_tokens: 0,
            cached_tokens: 0,
            reported_cached: None,
            acquired_at: Duration::ZERO,
            queued: false,
        },
        OK,
        ms(1),
    );
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_eq!(deps(&p), vec![2]);
    assert_eq!(p.steps[0].reason, Reason::SpillCapacity);
    // A source outside the candidates (no deployment there) does not queue anywhere.
    let remote: Vec<Candidate> = c[1..2].to_vec();
    let p = r.plan(&req(0, &remote), ms(1), &mut rng);
    assert!(p.steps.is_empty());
}

#[test]
fn an_unhealthy_source_or_the_baselines_do_not_queue() {
    let mut rng = SmallRng::seed_from_u64(3);
    for policy in [Policy::RoundRobin, Policy::LeastLoaded] {
        let (mut r, c) = full_world(policy, 0.5);
        assert!(
            r.plan(&req(0, &c), ms(1), &mut rng).steps.is_empty(),
            "{policy:?}"
        );
    }
    let (mut r, c) = full_world(Policy::Spillway, 0.0);
    assert!(
        r.plan(&req(0, &c), ms(1), &mut rng).steps.is_empty(),
        "source_queue 0"
    );
    let (mut r, c) = full_world(Policy::Spillway, f64::NAN);
    assert!(
        r.plan(&req(0, &c), ms(1), &mut rng).steps.is_empty(),
        "NaN is 0"
    );
    let (mut r, c) = full_world(Policy::Spillway, 0.5);
    let a = Admission {
        deployment: DeploymentIx(0),
        est_tokens: 100,
        input_tokens: 0,
        cached_tokens: 0,
        reported_cached: None,
        acquired_at: Duration::ZERO,
        queued: false,
    };
    let throttled = FailureKind::Throttled {
        retry_after: Some(ms(500)),
    };
    r.release(a, Outcome::Failure(throttled), ms(1));
    assert!(
        r.plan(&req(0, &c), ms(2), &mut rng).steps.is_empty(),
        "cooling down"
    );
}

#[test]
fn a_short_source_queue_is_preferred_to_a_spill() {
    let cfg = RouterConfig {
        source_queue: 0.5,
        source_wait: 0.25, // 4 of 16
        ..RouterConfig::default()
    };
    let specs = (0..3).map(|i| spec(i, 16)).collect();
    let c: Vec<Candidate> = (0..3)
        .map(|i| cand(i, i as u16, 1 + 10 * u64::from(i)))
        .collect();
    let mut r = Router::new(cfg, specs);
    let mut rng = SmallRng::seed_from_u64(3);
    for _ in 0..16 {
        let _held = r.try_acquire(DeploymentIx(0), 100, ms(0)).unwrap();
    }
    for _ in 0..4 {
        let p = r.plan(&req(0, &c), ms(1), &mut rng);
        assert_eq!(p.steps[0].deployment, DeploymentIx(0), "{p:?}");
        assert_eq!(p.steps[0].reason, Reason::Local);
        assert_eq!(
            p.steps.len(),
            3,
            "the regions with headroom follow, for failover"
        );
        assert!(p.steps[0].queued);
        let _held = r.admit(&p.steps[0], 100, ms(1)).unwrap();
    }
    let p = r.plan(&req(0, &c), ms(1), &mut rng);
    assert_ne!(
        p.steps[0].deployment,
        DeploymentIx(0),
        "20 in flight: spill"
    );
    assert_eq!(p.steps[0].reason, Reason::SpillCapacity);
}

//! Quota headroom, retry-after, expected-TTFT scoring and p2c.
use super::*;

#[test]
fn rpm_and_tpm_headroom_and_settlement() {
    let s = DeploymentSpec {
        region: RegionIx(0),
        max_in_flight: 10,
        rpm: Some(3),
        tpm: Some(1000),
    };
    let mut r = Router::new(RouterConfig::default(), vec![s]);
    let c = [cand(0, 0, 1)];
    let big = RouteRequest {
        source: RegionIx(0),
        candidates: &c,
        est_tokens: 1500,
        input_tokens: 0,
        prefix: crate::Prefix::NONE,
    };
    let p = r.plan(&big, ms(0), &mut SmallRng::seed_from_u64(0));
    assert_eq!(
        p,
        Plan {
            steps: vec![],
            retry_after: Some(ms(60_000)),
            held_back: false,
            prefix: Vec::new(),
        },
        "can never fit"
    );
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 1500, ms(0)).unwrap_err(),
        Rejection::Tpm
    );
    let a = r.try_acquire(DeploymentIx(0), 800, ms(0)).unwrap();
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 300, ms(0)).unwrap_err(),
        Rejection::Tpm
    );
    r.release(
        a,
        Outcome::Success {
            ttft: ms(50),
            tpot: Some(ms(10)),
            tokens: 500,
        },
        ms(0),
    );
    // 300 unused tokens refunded (500 left): 300 fits now.
    let a = r.try_acquire(DeploymentIx(0), 300, ms(0)).unwrap();
    r.release(a, Outcome::Failure(FailureKind::ServerError), ms(0));
    // The failed request's 300 tokens came back (500 left), its request did not.
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 501, ms(0)).unwrap_err(),
        Rejection::Tpm
    );
    let _a = r.try_acquire(DeploymentIx(0), 500, ms(0)).unwrap();
    assert_eq!(
        r.try_acquire(DeploymentIx(0), 1, ms(0)).unwrap_err(),
        Rejection::Rpm
    );
    let p = r.plan(&req(0, &c), ms(0), &mut SmallRng::seed_from_u64(0));
    // RPM: one request per 20 s; TPM: 100 tokens in 6 s. Both must clear.
    assert_eq!(p.retry_after, Some(ms(20_000)));
    assert!(r.try_acquire(DeploymentIx(0), 100, ms(20_000)).is_ok());
}

#[test]
fn excess_usage_is_charged_as_debt() {
    let s = DeploymentSpec {
        region: RegionIx(0),
        max_in_flight: 10,
        rpm: None,
        tpm: Some(600),
    };
    let mut r = Router::new(RouterConfig::default(), vec![s]);
    let a = r.try_acquire(DeploymentIx(0), 100, ms(0)).unwrap();
    r.release(
        a,
        Outcome::Success {
            ttft: ms(50),
            tpot: None,
            tokens: 1200,
        },
        ms(0),
    );
    // -600 tokens: one token needs 60.1 s of refill at 10/s.
    let c = [cand(0, 0, 1)];
    let one = RouteRequest {
        source: RegionIx(0),
        candidates: &c,
        est_tokens: 1,
        input_tokens: 0,
        prefix: crate::Prefix::NONE,
    };
    let p = r.plan(&one, ms(0), &mut SmallRng::seed_from_u64(0));
    assert_eq!(p.retry_after, Some(ms(60_000)), "capped at 60 s");
    assert!(r.try_acquire(DeploymentIx(0), 1, ms(60_100)).is_ok());
}

#[test]
fn retry_after_is_the_earliest_candidate() {
    let (mut r, c) = world(3);
    let throttled = |s| FailureKind::Throttled {
        retry_after: Some(ms(s)),
    };
    fail(&mut r, 0, throttled(7000), ms(0));
    fail(&mut r, 1, throttled(3000), ms(0));
    let mut held = Vec::new();
    while let Ok(a) = r.try_acquire(DeploymentIx(2), 1, ms(0)) {
        held.push(a);
    }
    let p = r.plan(&req(0, &c), ms(0), &mut SmallRng::seed_from_u64(0));
    assert_eq!(p.retry_after, Some(ms(1000)), "in-flight bound guesses 1 s");
    for a in held {
        r.release(a, Outcome::Failure(FailureKind::ClientError), ms(0));
    }
    let p = r.plan(&req(0, &c[..2]), ms(1000), &mut SmallRng::seed_from_u64(0));
    assert_eq!(p.retry_after, Some(ms(2000)));
    assert_eq!(
        r.plan(&req(0, &[]), ms(0), &mut SmallRng::seed_from_u64(0))
            .retry_after,
        None
    );
}

#[test]
fn spill_prefers_expected_ttft_over_distance() {
    let (mut r, c) = world(3);
    // Region 1 is 12 ms away but slow (observed TTFT 400 ms); region 2 is 50 ms away and fast.
    for _ in 0..30 {
        let a = r.try_acquire(DeploymentIx(1), 1, ms(0)).unwrap();
        r.release(
            a,
            Outcome::Success {
                ttft: ms(400),
                tpot: None,
                tokens: 1,
            },
            ms(0),
        );
        let a = r.try_acquire(DeploymentIx(2), 1, ms(0)).unwrap();
        r.release(
            a,
            Outcome::Success {
                ttft: ms(70),
                tpot: None,
                tokens: 1,
            },
            ms(0),
        );
    }
    assert_eq!(r.view(DeploymentIx(2), ms(0)).ewma_ttft, Some(ms(70)));
    fail(
        &mut r,
        0,
        FailureKind::Throttled {
            retry_after: Some(ms(10_000)),
        },
        ms(0),
    );
    for seed in 0..20 {
        let p = r.plan(&req(0, &c), ms(1), &mut SmallRng::seed_from_u64(seed));
        assert_eq!(deps(&p), [2, 1]);
        assert_eq!(p.steps[0].reason, Reason::SpillUnhealthy);
    }
}

#[test]
fn ewma_follows_alpha() {
    let (mut r, _) = world(1);
    let ok = |t| Outcome::Success {
        ttft: ms(t),
        tpot: Some(ms(t / 10)),
        tokens: 1,
    };
    let a = r.try_acquire(DeploymentIx(0), 1, ms(0)).unwrap();
    r.release(a, ok(100), ms(0));
    let a = r.try_acquire(DeploymentIx(0), 1, ms(0)).unwrap();
    r.release(a, ok(200), ms(0));
    let v = r.view(DeploymentIx(0), ms(0));
    assert_eq!((v.ewma_ttft, v.ewma_tpot), (Some(ms(120)), Some(ms(12))));
}

#[test]
fn p2c_among_near_equals_picks_the_less_utilised() {
    // Three regions at the same distance from source 9 (no source candidate), one far away.
    let specs = vec![spec(0, 10), spec(1, 10), spec(2, 10), spec(3, 10)];
    let mut r = Router::new(RouterConfig::default(), specs);
    let c = [
        cand(0, 0, 10),
        cand(1, 1, 10),
        cand(2, 2, 10),
        cand(3, 3, 200),
    ];
    let mut held = Vec::new();
    for (d, n) in [(0, 1), (1, 2), (2, 3)] {
        for _ in 0..n {
            held.push(r.try_acquire(DeploymentIx(d), 1, ms(0)).unwrap());
        }
    }
    let mut firsts = [0; 4];
    let mut rng = SmallRng::seed_from_u64(42);
    for _ in 0..600 {
        let p = r.plan(&req(9, &c), ms(0), &mut rng);
        assert_eq!(p.steps.len(), 3);
        assert!(p.steps.iter().all(|s| s.reason == Reason::SpillCapacity));
        firsts[p.steps[0].deployment.0 as usize] += 1;
    }
    // Pairs {0,1} {0,2} {1,2}, equally likely: 0 wins two, 1 wins one, 2 never.
    assert_eq!(firsts[2] + firsts[3], 0, "{firsts:?}");
    assert!(
        (350..450).contains(&firsts[0]) && (150..250).contains(&firsts[1]),
        "{firsts:?}"
    );
    for a in held {
        r.release(a, OK, ms(0));
    }
}

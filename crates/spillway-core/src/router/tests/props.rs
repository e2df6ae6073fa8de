//! Property tests: residency, source-first, plan shape, and determinism under random histories.
use super::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    /// Route a request like the gateway does: plan, then try steps in order.
    Route {
        source: u16,
        denied: u8,
        est: u64,
        outcomes: Vec<u8>,
        hold: bool,
    },
    /// Release a held admission.
    Release {
        idx: usize,
        outcome: u8,
    },
}

fn outcome(code: u8, est: u64) -> Outcome {
    use FailureKind::*;
    let success = |ttft, tokens| Outcome::Success {
        ttft: ms(ttft),
        tpot: Some(ms(5)),
        tokens,
    };
    match code % 10 {
        0 => success(40, est / 2),
        1 => success(250, est.saturating_mul(2)),
        2 => success(90, est),
        3 => Outcome::Failure(Connect),
        4 => Outcome::Failure(Timeout),
        5 => Outcome::Failure(Throttled {
            retry_after: Some(ms(2000)),
        }),
        6 => Outcome::Failure(Throttled { retry_after: None }),
        7 => Outcome::Failure(ServerError),
        8 => Outcome::Failure(ClientError),
        _ => Outcome::Failure(Cancelled),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..3000).prop_map(Op::Advance),
        4 => (0u16..5, any::<u8>(), 0u64..1500, proptest::collection::vec(any::<u8>(), 1..4), any::<bool>())
            .prop_map(|(source, denied, est, outcomes, hold)| Op::Route { source, denied, est, outcomes, hold }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(idx, outcome)| Op::Release { idx, outcome }),
    ]
}

fn deployment() -> impl Strategy<Value = (DeploymentSpec, u64)> {
    (
        0u16..4,
        0u32..4,
        proptest::option::of(0u32..6),
        proptest::option::of(0u64..3000),
        1u64..100,
    )
        .prop_map(|(region, max_in_flight, rpm, tpm, rtt)| {
            (
                DeploymentSpec {
                    region: RegionIx(region),
                    max_in_flight,
                    rpm,
                    tpm,
                },
                rtt,
            )
        })
}

/// Replays `ops`, checking every plan against an oracle; returns the plans.
fn run(
    world: &[(DeploymentSpec, u64)],
    max_attempts: usize,
    seed: u64,
    ops: &[Op],
) -> Result<Vec<Plan>, TestCaseError> {
    let cfg = RouterConfig {
        max_attempts,
        // As deep as the queue itself, so that small limits exercise waiting in the source.
        source_queue: 0.5,
        source_wait: 0.5,
        ..RouterConfig::default()
    };
    let mut r = Router::new(cfg, world.iter().map(|(s, _)| s.clone()).collect());
    let all: Vec<Candidate> = world
        .iter()
        .enumerate()
        .map(|(i, (s, rtt))| cand(i as u32, s.region.0, *rtt))
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut now = Duration::ZERO;
    let mut held: Vec<(Admission, u64)> = Vec::new();
    let mut plans = Vec::new();
    for op in ops {
        match op {
            Op::Advance(t) => now += ms(*t),
            Op::Release { idx, outcome: code } if !held.is_empty() => {
                let (a, est) = held.swap_remove(idx % held.len());
                r.release(a, outcome(*code, est), now);
            }
            Op::Release { .. } => {}
            Op::Route {
                source,
                denied,
                est,
                outcomes,
                hold,
            } => {
                let is_denied = |c: &Candidate| denied & (1 << c.region.0) != 0;
                let cands: Vec<Candidate> = all.iter().filter(|c| !is_denied(c)).copied().collect();
                let req = RouteRequest {
                    source: RegionIx(*source),
                    candidates: &cands,
                    est_tokens: *est,
                    input_tokens: 0,
                };
                // Oracle: what would admit right now.
                let admits = |r: &Router, c: &Candidate| {
                    let mut r = r.clone();
                    r.queued = None; // a queue grant is the plan's, not the oracle's
                    r.try_acquire(c.deployment, *est, now).is_ok()
                };
                let eligible: Vec<&Candidate> = cands.iter().filter(|c| admits(&r, c)).collect();
                r.record_request(now);
                let p = r.plan(&req, now, &mut rng);

                prop_assert!(p.steps.len() <= max_attempts);
                // Waiting in the (full) source: it comes first, then what has headroom.
                let queued = p.steps.first().is_some_and(|s| {
                    s.region == req.source && !eligible.iter().any(|c| c.deployment == s.deployment)
                });
                if queued {
                    prop_assert_eq!(p.steps[0].reason, Reason::Local);
                    prop_assert_eq!(p.steps.len(), (1 + eligible.len()).min(max_attempts));
                } else {
                    prop_assert_eq!(p.steps.len(), eligible.len().min(max_attempts));
                }
                for (i, s) in p.steps.iter().enumerate() {
                    let c = Candidate {
                        deployment: s.deployment,
                        region: s.region,
                        rtt: Duration::ZERO,
                    };
                    prop_assert!(
                        cands
                            .iter()
                            .any(|x| x.deployment == c.deployment && x.region == c.region)
                    );
                    prop_assert!(!is_denied(&c), "denied region {:?} in plan", s.region);
                    prop_assert!(
                        (queued && i == 0) || eligible.iter().any(|x| x.deployment == s.deployment)
                    );
                    prop_assert!(p.steps[..i].iter().all(|t| t.deployment != s.deployment));
                    prop_assert_eq!(s.reason == Reason::Local, s.region == req.source);
                }
                if eligible.iter().any(|c| c.region == req.source) {
                    prop_assert_eq!(p.steps[0].region, req.source);
                    prop_assert_eq!(p.steps[0].reason, Reason::Local);
                }
                match (p.steps.is_empty(), cands.is_empty()) {
                    (true, true) => prop_assert_eq!(p.retry_after, None),
                    (true, false) => {
                        let ra = p.retry_after.unwrap_or_default();
                        prop_assert!(ra >= ms(1) && ra <= ms(60_000));
                    }
                    (false, _) => prop_assert_eq!(p.retry_after, None),
                }

                // Drive it like the gateway.
                for (i, s) in p.steps.iter().enumerate() {
                    if i > 0 && !r.try_retry(now) {
                        break;
                    }
                    let a = r.try_acquire(s.deployment, *est, now);
                    prop_assert!(a.is_ok(), "planned step {} did not admit: {:?}", i, a);
                    let Ok(a) = a else { break };
                    if *hold {
                        held.push((a, *est));
                        break;
                    }
                    let o = outcome(outcomes[i % outcomes.len()], *est);
                    r.release(a, o, now);
                    match o {
                        Outcome::Failure(k) if k.is_retryable() => {}
                        _ => break,
                    }
                }
                plans.push(p);
            }
        }
    }
    for (a, est) in held {
        r.release(a, outcome(0, est), now);
    }
    Ok(plans)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Residency (never outside the candidates, never a denied region), source first when it
    /// has headroom, every step admits, plan length and retry_after as specified.
    #[test]
    fn plans_respect_the_contract(
        world in proptest::collection::vec(deployment(), 1..7),
        max_attempts in 1usize..5,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(&world, max_attempts, seed, &ops)?;
    }

    /// Same seed, same inputs: same decisions.
    #[test]
    fn same_seed_same_decisions(
        world in proptest::collection::vec(deployment(), 1..7),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let a = run(&world, 3, seed, &ops)?;
        let b = run(&world, 3, seed, &ops)?;
        prop_assert_eq!(a, b);
    }
}

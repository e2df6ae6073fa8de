//! Property tests: residency, source-first, plan shape, and determinism under random histories.
use super::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    /// Route a request like the gateway does: `route`, then fall over along the plan.
    Route {
        source: u16,
        denied: u8,
        est: u64,
        outcomes: Vec<u8>,
        hold: bool,
    },
    /// Only plan a request, to admit it later (after other requests came and went).
    Plan {
        source: u16,
        denied: u8,
        est: u64,
    },
    /// Admit the first step of a plan kept by `Plan`, with `admit` or as a bare `try_acquire`;
    /// the plan stays kept, so a granted wait is admitted again and again, up to its bound.
    AdmitLater {
        idx: usize,
        bare: bool,
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
        1 => (0u16..5, any::<u8>(), 0u64..1500)
            .prop_map(|(source, denied, est)| Op::Plan { source, denied, est }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(idx, bare)| Op::AdmitLater { idx, bare }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(idx, outcome)| Op::Release { idx, outcome }),
    ]
}

/// Ops for a busy world: no denials, small estimates, requests mostly held, plans admitted
/// later again and again: sources fill up and waits are granted and used to their bound.
fn busy_op() -> impl Strategy<Value = Op> {
    let outcomes = || proptest::collection::vec(any::<u8>(), 1..4);
    prop_oneof![
        1 => (0u64..500).prop_map(Op::Advance),
        4 => (0u16..4, 0u64..300, outcomes(), proptest::bool::weighted(0.8))
            .prop_map(|(source, est, outcomes, hold)| Op::Route { source, denied: 0, est, outcomes, hold }),
        2 => (0u16..4, 0u64..300).prop_map(|(source, est)| Op::Plan { source, denied: 0, est }),
        3 => (any::<usize>(), proptest::bool::weighted(0.2))
            .prop_map(|(idx, bare)| Op::AdmitLater { idx, bare }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(idx, outcome)| Op::Release { idx, outcome }),
    ]
}

/// `(source_wait, source_queue, spill_reserve, tail_budget)`: the waits off, shorter, equal
/// and longer than each other; no reserve, or one or two slots kept for a region's own
/// requests; no budgeted waits, the default share, or one for every request.
fn waits() -> impl Strategy<Value = Waits> {
    let ratio = || prop_oneof![Just(0.0), Just(0.25), Just(0.5), Just(1.0)];
    let budget = prop_oneof![Just(0.0), Just(0.01), Just(1.0)];
    (ratio(), ratio(), 0u32..3, budget)
}

type Waits = (f64, f64, u32, f64);

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

/// The replay's state: the router, the clock, and what is held or kept for later.
struct Replay {
    r: Router,
    rng: SmallRng,
    now: Duration,
    /// Every deployment as a candidate (with the world's rtt), before denials.
    all: Vec<Candidate>,
    max_attempts: usize,
    /// `max(source_wait, source_queue)`: how far beyond its limit a granted wait may fill.
    queue_ratio: f64,
    /// `spill_reserve`: free slots a deployment keeps for its own region's requests.
    reserve: u32,
    held: Vec<(Admission, u64)>,
    /// Plans made by `Op::Plan`, with their candidates and estimate.
    kept: Vec<(Plan, Vec<Candidate>, u64)>,
    plans: Vec<Plan>,
}

/// Replays `ops`, checking every plan against an oracle and every admission against the
/// candidates and the in-flight bounds; returns the plans.
fn run(
    world: &[(DeploymentSpec, u64)],
    max_attempts: usize,
    (source_wait, source_queue, spill_reserve, tail_budget): Waits,
    seed: u64,
    ops: &[Op],
) -> Result<Vec<Plan>, TestCaseError> {
    let cfg = RouterConfig {
        max_attempts,
        source_queue,
        source_wait,
        spill_reserve: Some(spill_reserve),
        tail_budget,
        ..RouterConfig::default()
    };
    let mut x = Replay {
        r: cached(Router::new(
            cfg,
            world.iter().map(|(s, _)| s.clone()).collect(),
        )),
        rng: SmallRng::seed_from_u64(seed),
        now: Duration::ZERO,
        all: world
            .iter()
            .enumerate()
            .map(|(i, (s, rtt))| cand(i as u32, s.region.0, *rtt))
            .collect(),
        max_attempts,
        queue_ratio: source_wait.max(source_queue),
        reserve: spill_reserve,
        held: Vec::new(),
        kept: Vec::new(),
        plans: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Advance(t) => x.now += ms(*t),
            Op::Release { idx, outcome: code } if !x.held.is_empty() => {
                let (a, est) = x.held.swap_remove(idx % x.held.len());
                x.r.release(a, outcome(*code, est), x.now);
            }
            Op::Release { .. } => {}
            Op::Route {
                source,
                denied,
                est,
                outcomes,
                hold,
            } => x.route(*source, *denied, *est, outcomes, *hold)?,
            Op::Plan {
                source,
                denied,
                est,
            } => {
                let cands = x.candidates(*denied);
                let req = request(*source, &cands, *est);
                let p = x.r.plan(&req, x.now, &mut x.rng);
                x.kept.push((p, cands, *est));
            }
            Op::AdmitLater { idx, bare } => x.admit_later(*idx, *bare)?,
        }
    }
    for (a, est) in x.held {
        x.r.release(a, outcome(0, est), x.now);
    }
    Ok(x.plans)
}

/// Prompts of a few blocks from a small pool, so that deployments come to hold some of them;
/// the cache affinity cycles with the size (off, prefer-source, on).
const POOL: [u64; 6] = [1, 2, 3, 4, 5, 6];

fn request(source: u16, candidates: &[Candidate], est: u64) -> RouteRequest<'_> {
    use crate::prefix::{CacheAffinity, Prefix};
    let affinity = match est % 3 {
        0 => CacheAffinity::Off,
        1 => CacheAffinity::PreferSource,
        _ => CacheAffinity::On,
    };
    let from = (est % 3) as usize;
    RouteRequest {
        source: RegionIx(source),
        candidates,
        est_tokens: est,
        input_tokens: est,
        prefix: Prefix {
            blocks: &POOL[from..from + 1 + (est % 4) as usize],
            affinity,
        },
    }
}

/// `r` with a prefix cache of 4 blocks on every deployment.
fn cached(mut r: Router) -> Router {
    r.set_prefix_cache(Some(crate::prefix::PrefixConfig {
        max_entries: 1_000,
        ttl: Duration::from_secs(60),
        capacity_blocks: vec![4; r.deployments.len()],
    }));
    r
}

fn is_denied(denied: u8, region: RegionIx) -> bool {
    denied & (1 << region.0) != 0
}

impl Replay {
    fn candidates(&self, denied: u8) -> Vec<Candidate> {
        let allowed = |c: &&Candidate| !is_denied(denied, c.region);
        self.all.iter().filter(allowed).copied().collect()
    }

    /// Route one request and fall over along its plan like the gateway, checking the plan
    /// against an oracle of what admits now, and every admission.
    fn route(
        &mut self,
        source: u16,
        denied: u8,
        est: u64,
        outcomes: &[u8],
        hold: bool,
    ) -> Result<(), TestCaseError> {
        let cands = self.candidates(denied);
        let req = request(source, &cands, est);
        let now = self.now;
        // Oracle: what would admit right now (without a granted wait), and a region's last
        // `reserve` free slots only for its own requests.
        let admits =
            |r: &Router, c: &Candidate| r.clone().try_acquire(c.deployment, est, now).is_ok();
        let free = |c: &Candidate| {
            let v = self.r.view(c.deployment, now);
            v.limit.saturating_sub(v.in_flight)
        };
        let eligible: Vec<Candidate> = cands
            .iter()
            .filter(|c| admits(&self.r, c) && (c.region == req.source || free(c) > self.reserve))
            .copied()
            .collect();
        let reserved = cands
            .iter()
            .any(|c| c.region != req.source && admits(&self.r, c) && free(c) <= self.reserve);
        let Routed { plan: p, first } = self.r.route(&req, now, &mut self.rng);
        check_plan(&p, &req, &eligible, self.max_attempts, denied)?;
        // Held back: nothing planned, though some region had a slot it keeps for its own.
        prop_assert_eq!(p.held_back, p.steps.is_empty() && reserved, "{:?}", p);
        // Nothing came between the plan and the admission: its first step admits.
        prop_assert_eq!(
            first.as_ref().map(|(i, _)| *i),
            (!p.steps.is_empty()).then_some(0)
        );
        let mut next = first;
        let mut i = 0;
        while let Some((j, a)) = next {
            prop_assert_eq!(j, i, "planned step {} did not admit", i);
            self.check_admitted(&a, &cands, p.steps[j].reason != Reason::Local)?;
            prop_assert!(!a.queued || p.steps[j].queued, "queued without a grant");
            if hold {
                self.held.push((a, est));
                break;
            }
            let o = outcome(outcomes[i % outcomes.len()], est);
            self.r.release(a, o, now);
            match o {
                Outcome::Failure(k) if k.is_retryable() => {}
                _ => break,
            }
            if i + 1 >= p.steps.len() || !self.r.try_retry(now) {
                break;
            }
            i += 1;
            next = self.r.admit_next(&p, i, est, now);
            prop_assert!(next.is_some(), "planned step {} did not admit", i);
        }
        self.plans.push(p);
        Ok(())
    }

    /// Admit the first step of a plan made earlier: it may be refused (things changed), but
    /// what it admits is a candidate of that plan, and within the bounds.
    fn admit_later(&mut self, idx: usize, bare: bool) -> Result<(), TestCaseError> {
        if self.kept.is_empty() {
            return Ok(());
        }
        let (p, cands, est) = &self.kept[idx % self.kept.len()];
        let (cands, est) = (cands.clone(), *est);
        let Some(step) = p.steps.first().copied() else {
            return Ok(());
        };
        let admitted = if bare {
            self.r.try_acquire(step.deployment, est, self.now)
        } else {
            self.r.admit(&step, est, self.now)
        };
        if let Ok(a) = admitted {
            prop_assert!(
                !a.queued || (step.queued && !bare),
                "queued without a grant"
            );
            self.check_admitted(&a, &cands, !bare && step.reason != Reason::Local)?;
            self.held.push((a, est));
        }
        Ok(())
    }

    /// An admission is a candidate's; beyond the limit only to wait (`queued`), and then fewer
    /// than `limit × (1 + max(source_wait, source_queue))` were in flight before it; a spill
    /// only where more than `reserve` slots were free before it.
    fn check_admitted(
        &self,
        a: &Admission,
        cands: &[Candidate],
        spill: bool,
    ) -> Result<(), TestCaseError> {
        prop_assert!(
            cands.iter().any(|c| c.deployment == a.deployment),
            "admitted outside the candidates: {:?}",
            a.deployment
        );
        let v = self.r.view(a.deployment, self.now);
        let extra = (f64::from(v.limit) * self.queue_ratio).floor() as u32;
        let bound = if a.queued { v.limit + extra } else { v.limit };
        prop_assert!(
            v.in_flight <= bound,
            "{} in flight at limit {} (queued: {})",
            v.in_flight,
            v.limit,
            a.queued
        );
        prop_assert!(
            !spill || v.in_flight + self.reserve <= v.limit,
            "a spill took one of the last {} slots: {} in flight at limit {}",
            self.reserve,
            v.in_flight,
            v.limit
        );
        Ok(())
    }
}

/// The plan's shape against the oracle's `eligible` (what admits now without a granted wait).
fn check_plan(
    p: &Plan,
    req: &RouteRequest<'_>,
    eligible: &[Candidate],
    max_attempts: usize,
    denied: u8,
) -> Result<(), TestCaseError> {
    prop_assert!(p.steps.len() <= max_attempts);
    // Waiting in the (full) source: it comes first, then what has headroom.
    let queued = p.steps.first().is_some_and(|s| {
        s.region == req.source && !eligible.iter().any(|c| c.deployment == s.deployment)
    });
    prop_assert_eq!(p.steps.first().is_some_and(|s| s.queued), queued);
    if queued {
        prop_assert_eq!(p.steps[0].reason, Reason::Local);
        prop_assert_eq!(p.steps.len(), (1 + eligible.len()).min(max_attempts));
    } else {
        prop_assert_eq!(p.steps.len(), eligible.len().min(max_attempts));
    }
    for (i, s) in p.steps.iter().enumerate() {
        prop_assert!(
            req.candidates
                .iter()
                .any(|x| x.deployment == s.deployment && x.region == s.region)
        );
        prop_assert!(
            !is_denied(denied, s.region),
            "denied region {:?} in plan",
            s.region
        );
        prop_assert!((queued && i == 0) || eligible.iter().any(|x| x.deployment == s.deployment));
        prop_assert!(i == 0 || !s.queued, "only the first step waits");
        prop_assert!(p.steps[..i].iter().all(|t| t.deployment != s.deployment));
        prop_assert_eq!(s.reason == Reason::Local, s.region == req.source);
    }
    // Source first, unless cache affinity `on` left it for a region holding the prefix.
    if eligible.iter().any(|c| c.region == req.source) {
        let left = p.steps[0].reason == Reason::SpillCache;
        prop_assert!(!left || req.prefix.affinity == crate::prefix::CacheAffinity::On);
        prop_assert!(left || p.steps[0].region == req.source);
        prop_assert!(left || p.steps[0].reason == Reason::Local);
    }
    match (p.steps.is_empty(), req.candidates.is_empty()) {
        (true, true) => prop_assert_eq!(p.retry_after, None),
        (true, false) => {
            let ra = p.retry_after.unwrap_or_default();
            prop_assert!(ra >= ms(1) && ra <= ms(60_000));
        }
        (false, _) => prop_assert_eq!(p.retry_after, None),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Residency (never outside the candidates, never a denied region), source first when it
    /// has headroom, every step admits, plan length and retry_after as specified; `route` and
    /// later admissions never admit outside the candidates, nor beyond the limit but to wait,
    /// nor more than `limit × (1 + max(source_wait, source_queue))` in flight, nor a spill into a
    /// region's last `spill_reserve` slots.
    #[test]
    fn plans_respect_the_contract(
        world in proptest::collection::vec(deployment(), 1..7),
        max_attempts in 1usize..5,
        waits in waits(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(&world, max_attempts, waits, seed, &ops)?;
    }

    /// The same contract where sources are full most of the time: a wait granted to a plan
    /// is used by its step only, and never beyond its bound, however late it is admitted.
    #[test]
    fn granted_waits_stay_within_their_bound(
        world in proptest::collection::vec(deployment(), 1..5),
        waits in waits(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(busy_op(), 1..120),
    ) {
        run(&world, 3, waits, seed, &ops)?;
    }

    /// Same seed, same inputs: same decisions.
    #[test]
    fn same_seed_same_decisions(
        world in proptest::collection::vec(deployment(), 1..7),
        waits in waits(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let a = run(&world, 3, waits, seed, &ops)?;
        let b = run(&world, 3, waits, seed, &ops)?;
        prop_assert_eq!(a, b);
    }
}

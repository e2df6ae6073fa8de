use super::exact::optimum;
use super::*;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `slots` per region, every source reaching every region, no RTT.
fn pooled(slots: &[f64], slo: f64) -> Topology {
    let n = slots.len();
    Topology {
        slots: slots.to_vec(),
        reach: vec![vec![true; n]; n],
        rtt_secs: vec![vec![0.0; n]; n],
        ttft_slo_secs: slo,
    }
}

fn job(source: usize, at: f64, prefill: f64, service: f64) -> Job {
    Job {
        source,
        at,
        prefill,
        service,
    }
}

#[test]
fn work_carried_past_a_bucket_is_bounded_from_above() {
    // Twenty 5 s requests at once on 10 slots, SLO 6 s: ten start at 0, ten at 5, all good.
    // The per-second fluid bound served 10 / 5 = 2 per second and nothing carried: 2.
    let t = pooled(&[10.0], 6.0);
    let jobs: Vec<Job> = (0..20).map(|_| job(0, 0.0, 0.1, 5.0)).collect();
    assert_eq!(schedule(&t, &jobs), 20);
    let b = bound(&t, &jobs);
    assert!(b.value >= 20.0 - 1e-9, "{b:?}");
    assert!(b.value <= 20.0 + 1e-9, "{b:?}");
}

#[test]
fn an_overloaded_slot_is_bounded_near_what_it_can_start_in_time() {
    // One slot, ten 1 s requests at 0, SLO 2.5 s: they can start at 0, 1 and 2 (3 good); the
    // relaxation allows the 3.5 slot-seconds of the window [0, 3.5] to be shared fractionally.
    let t = pooled(&[1.0], 2.5);
    let jobs: Vec<Job> = (0..10).map(|_| job(0, 0.0, 0.0, 1.0)).collect();
    assert_eq!(optimum(&t, &jobs), 3);
    let b = bound(&t, &jobs);
    assert!(b.value >= 3.0, "{b:?}");
    assert!(b.value <= 3.6, "{b:?}");
}

#[test]
fn short_requests_fill_a_window_before_long_ones() {
    // One slot, SLO 1 s: a 3 s request and three 0.5 s ones at 0. Three short ones fit (start
    // at 0, 0.5, 1); the long one only alone.
    let t = pooled(&[1.0], 1.0);
    let mut jobs = vec![job(0, 0.0, 0.0, 3.0)];
    jobs.extend((0..3).map(|_| job(0, 0.0, 0.0, 0.5)));
    assert_eq!(optimum(&t, &jobs), 3);
    let b = bound(&t, &jobs);
    assert!((3.0..=3.5).contains(&b.value), "{b:?}");
}

#[test]
fn unreachable_regions_and_late_requests_add_nothing() {
    // Region 1 is another geography; request 2's prefill alone misses the SLO.
    let t = Topology {
        slots: vec![1.0, 100.0],
        reach: vec![vec![true, false], vec![false, true]],
        rtt_secs: vec![vec![0.0; 2]; 2],
        ttft_slo_secs: 1.0,
    };
    let jobs = vec![
        job(0, 0.0, 0.0, 2.0),
        job(0, 0.0, 0.0, 2.0),
        job(0, 0.0, 1.5, 2.0),
    ];
    assert_eq!(optimum(&t, &jobs), 1);
    let b = bound(&t, &jobs);
    assert!((1.0..=1.51).contains(&b.value), "{b:?}");
    // An RTT that eats the SLO makes the other region useless too.
    let far = Topology {
        reach: vec![vec![true; 2]; 2],
        rtt_secs: vec![vec![0.0, 1.2], vec![1.2, 0.0]],
        ..t
    };
    assert!(bound(&far, &jobs).value <= 1.51);
}

#[test]
fn everything_that_fits_is_the_bound_exactly() {
    let t = pooled(&[2.0, 2.0], 2.0);
    let jobs: Vec<Job> = (0..30u32)
        .map(|i| job(i as usize % 2, f64::from(i) * 0.5, 0.1, 0.4))
        .collect();
    let b = bound(&t, &jobs);
    assert_eq!((b.value, b.schedule, b.iterations), (30.0, 30, 0));
}

/// A random small instance: up to `n` requests, 1–3 regions of 1–2 slots, RTTs, a partial reach.
fn instance(rng: &mut SmallRng, n: usize) -> (Topology, Vec<Job>) {
    let regions = rng.random_range(1..=3);
    let slots = (0..regions)
        .map(|_| f64::from(rng.random_range(1..=2u32)))
        .collect();
    let reach = (0..regions)
        .map(|s| {
            (0..regions)
                .map(|r| r == s || rng.random_bool(0.7))
                .collect()
        })
        .collect();
    let rtt_secs = (0..regions)
        .map(|s| {
            (0..regions)
                .map(|r| {
                    if r == s {
                        0.0
                    } else {
                        rng.random_range(0.0..0.3)
                    }
                })
                .collect()
        })
        .collect();
    let t = Topology {
        slots,
        reach,
        rtt_secs,
        ttft_slo_secs: rng.random_range(0.2..3.0),
    };
    let jobs = (0..rng.random_range(1..=n))
        .map(|_| {
            let prefill = rng.random_range(0.0..0.8);
            job(
                rng.random_range(0..regions),
                rng.random_range(0.0..6.0),
                prefill,
                prefill + rng.random_range(0.0..4.0),
            )
        })
        .collect();
    (t, jobs)
}

#[test]
fn the_bound_never_undercuts_the_exact_optimum() {
    let mut rng = SmallRng::seed_from_u64(20);
    let (mut gap, mut cases) = (0.0, 0);
    for _ in 0..300 {
        let (t, jobs) = instance(&mut rng, 9);
        let best = optimum(&t, &jobs);
        let b = bound(&t, &jobs);
        assert!(b.schedule <= best, "{t:?} {jobs:?}");
        assert!(
            b.value >= best as f64 - 1e-6,
            "bound {b:?} below the optimum {best} for {t:?} {jobs:?}"
        );
        let local = bound(&t.in_region(), &jobs).value;
        assert!(local <= b.value + 1e-6 || local <= jobs.len() as f64);
        if best > 0 {
            gap += b.value / best as f64 - 1.0;
            cases += 1;
        }
    }
    // Not a proof of tightness, a guard against a bound that drifts loose.
    assert!(
        gap / f64::from(cases) < 0.25,
        "mean gap {}",
        gap / f64::from(cases)
    );
}

/// How a test policy picks a region for a request, knowing each region's slot free times.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Source,
    RoundRobin,
    LeastBusy,
    Random,
    SoonestStart,
}

/// The good requests of `pick` routing every request on arrival into its region's FIFO queue
/// (the simulator's engine: a request starts when a slot frees, in order of arrival, and is
/// never refused), as a router without a throttle would.
fn fifo_run(t: &Topology, jobs: &[Job], pick: Pick, seed: u64) -> usize {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut free: Vec<Vec<f64>> = t.slots.iter().map(|s| vec![0.0; *s as usize]).collect();
    let mut order: Vec<&Job> = jobs.iter().collect();
    order.sort_by(|a, b| a.at.total_cmp(&b.at));
    let (mut good, mut turn) = (0, 0usize);
    for j in order {
        let set: Vec<usize> = (0..free.len())
            .filter(|&r| t.reach[j.source][r] && !free[r].is_empty())
            .collect();
        if set.is_empty() {
            continue;
        }
        let first = |r: usize| free[r].iter().copied().fold(f64::INFINITY, f64::min);
        let busy = |r: usize| free[r].iter().filter(|f| **f > j.at).count();
        let r = match pick {
            Pick::Source if set.contains(&j.source) => j.source,
            Pick::Source | Pick::RoundRobin => {
                turn += 1;
                set[turn % set.len()]
            }
            Pick::LeastBusy => *set.iter().min_by_key(|&&r| busy(r)).unwrap_or(&set[0]),
            Pick::Random => set[rng.random_range(0..set.len())],
            Pick::SoonestStart => *set
                .iter()
                .min_by(|a, b| first(**a).total_cmp(&first(**b)))
                .unwrap_or(&set[0]),
        };
        let i = (0..free[r].len())
            .min_by(|a, b| free[r][*a].total_cmp(&free[r][*b]))
            .unwrap_or(0);
        let start = j.at.max(free[r][i]);
        free[r][i] = start + j.service;
        let ttft = start - j.at + j.prefill + t.rtt_secs[j.source][r];
        if ttft <= t.ttft_slo_secs {
            good += 1;
        }
    }
    good
}

fn arb_case() -> impl Strategy<Value = (Topology, Vec<Job>)> {
    (any::<u64>(), 1usize..60).prop_map(|(seed, n)| {
        let mut rng = SmallRng::seed_from_u64(seed);
        let (mut t, mut jobs) = instance(&mut rng, n);
        // Longer queues than the exact search can take: more requests, more slots.
        t.slots
            .iter_mut()
            .for_each(|s| *s += f64::from(rng.random_range(0..3u32)));
        jobs.iter_mut().for_each(|j| j.at *= n as f64 / 10.0);
        (t, jobs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// No policy, on any trace, serves more good requests than the bound.
    #[test]
    fn no_policy_beats_the_bound((t, jobs) in arb_case(), seed in any::<u64>()) {
        let b = bound(&t, &jobs);
        let picks = [Pick::Source, Pick::RoundRobin, Pick::LeastBusy, Pick::Random, Pick::SoonestStart];
        for pick in picks {
            let good = fifo_run(&t, &jobs, pick, seed);
            prop_assert!(good as f64 <= b.value + 1e-6, "{pick:?}: {good} > {b:?}");
        }
        prop_assert!(b.schedule as f64 <= b.value + 1e-6);
        let local = bound(&t.in_region(), &jobs);
        let in_region = fifo_run(&t.in_region(), &jobs, Pick::Source, seed);
        prop_assert!(in_region as f64 <= local.value + 1e-6, "{in_region} > {local:?}");
    }
}

#[test]
fn the_oracle_reports_both_bounds_and_the_schedule() {
    let t = pooled(&[1.0, 1.0], 1.0);
    // Source 0 gets four 1 s requests at once: one starts at 0 and one at 1 locally (SLO 1 s),
    // the others in region 1.
    let jobs: Vec<Job> = (0..4).map(|_| job(0, 0.0, 0.0, 1.0)).collect();
    let o = oracle(&t, &jobs, 2.0);
    assert_eq!(o.schedule_served, 4.0);
    assert!((4.0..=4.0 + 1e-9).contains(&o.served), "{o:?}");
    assert!((2.0..=2.5).contains(&o.in_region_served), "{o:?}");
    assert!((o.local_share - o.in_region_served / o.served).abs() < 1e-12);
    assert_eq!((o.offered, o.goodput_rps), (4.0, o.served / 2.0));
}

#[test]
fn cached_jobs_prefill_only_what_no_earlier_request_carried() {
    use crate::workload::{Offered, Workload};
    use std::sync::Arc;
    use std::time::Duration;
    let offered = |at: u64, ids: &[u64]| Offered {
        source: 0,
        at: Duration::from_secs(at),
        input_tokens: 1_600,
        output_tokens: 10,
        hash_ids: Some(Arc::from(ids)),
    };
    let w = Workload {
        requests: vec![
            offered(0, &[1, 2, 3, 4]),
            offered(1, &[1, 2, 9, 4]),
            offered(2, &[5, 1, 2]),
            offered(3, &[1, 2, 3, 4]),
        ],
        description: "t".into(),
    };
    let jobs = cached_jobs(&w, 1_000.0, 10.0, 512);
    let prefill: Vec<f64> = jobs.iter().map(|j| j.prefill).collect();
    // 1,600 tokens; two leading blocks (1,024 tokens) carried before; none (another first
    // block); all four blocks, but one token is always prefilled.
    assert_eq!(prefill, [1.6, 0.576, 1.6, 0.001]);
    assert!((jobs[1].service - (0.576 + 1.0)).abs() < 1e-12);
    let plain = jobs_of(&w);
    assert!(jobs.iter().zip(&plain).all(|(c, p)| c.service <= p.service));
}

fn jobs_of(w: &crate::workload::Workload) -> Vec<Job> {
    jobs(w, 1_000.0, 10.0)
}

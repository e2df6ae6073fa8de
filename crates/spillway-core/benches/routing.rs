//! Hot-path costs of the routing core: `plan`, `try_acquire` + `release`, quota reserve + settle.
#![allow(clippy::unwrap_used)]
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_core::{
    Candidate, DeploymentIx, DeploymentSpec, Outcome, QuotaBucket, QuotaLimits, RegionIx,
    RouteRequest, Router, RouterConfig,
};

fn setup(n: usize) -> (Router, Vec<Candidate>) {
    let specs = (0..n)
        .map(|i| DeploymentSpec {
            region: RegionIx(i as u16),
            max_in_flight: 64,
            rpm: Some(u32::MAX),
            tpm: Some(u64::MAX / 4),
        })
        .collect();
    let mut router = Router::new(RouterConfig::default(), specs);
    // Some load, so utilisations differ and p2c has something to compare.
    let mut held = Vec::new();
    for i in 0..n {
        for _ in 0..i {
            held.push(
                router
                    .try_acquire(DeploymentIx(i as u32), 1000, Duration::ZERO)
                    .unwrap(),
            );
        }
    }
    std::mem::forget(held);
    let cands = (0..n)
        .map(|i| Candidate {
            deployment: DeploymentIx(i as u32),
            region: RegionIx(i as u16),
            rtt: Duration::from_millis(10 + 2 * i as u64),
        })
        .collect();
    (router, cands)
}

fn plan(c: &mut Criterion) {
    for n in [3, 6] {
        let (mut router, cands) = setup(n);
        let mut rng = SmallRng::seed_from_u64(1);
        // No candidate in the source region: the spill path (scoring, near-equal set, p2c).
        let source_full = RegionIx(u16::MAX);
        let req = RouteRequest {
            source: source_full,
            candidates: &cands,
            est_tokens: 1000,
            input_tokens: 0,
            prefix: spillway_core::Prefix::NONE,
        };
        c.bench_function(&format!("plan/spill/{n}"), |b| {
            b.iter(|| black_box(router.plan(black_box(&req), Duration::from_secs(1), &mut rng)))
        });
        let req = RouteRequest {
            source: RegionIx(0),
            candidates: &cands,
            est_tokens: 1000,
            input_tokens: 0,
            prefix: spillway_core::Prefix::NONE,
        };
        c.bench_function(&format!("plan/local/{n}"), |b| {
            b.iter(|| black_box(router.plan(black_box(&req), Duration::from_secs(1), &mut rng)))
        });
    }
}

fn acquire_release(c: &mut Criterion) {
    let (mut router, _) = setup(3);
    let mut now = Duration::from_secs(1);
    let outcome = Outcome::Success {
        ttft: Duration::from_millis(80),
        tpot: Some(Duration::from_millis(20)),
        tokens: 900,
    };
    c.bench_function("try_acquire+release", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            let a = router
                .try_acquire(black_box(DeploymentIx(1)), 1000, now)
                .unwrap();
            router.release(a, black_box(outcome), now);
        })
    });
}

fn quota(c: &mut Criterion) {
    let limits = QuotaLimits {
        rpm: Some(1 << 40),
        tpm: Some(1 << 60),
    };
    let mut q = QuotaBucket::new(limits, Duration::ZERO);
    let mut now = Duration::ZERO;
    c.bench_function("quota/reserve+settle", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            let r = q.reserve(black_box(1000), now).unwrap();
            q.settle(r, black_box(700), now);
        })
    });
}

criterion_group!(benches, plan, acquire_release, quota);
criterion_main!(benches);

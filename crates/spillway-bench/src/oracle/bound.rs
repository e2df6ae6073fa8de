//! The Lagrangian bound of [`super`]'s module docs, and the subgradient method that tightens it.
//!
//! The cells are `(region, bucket)` pairs of the regions some source reaches. For prices `λ` on
//! the cells, [`Cells::evaluate`] computes `bound(λ)` and, as its subgradient, what each cell is
//! asked for beyond its slot-seconds. The method starts from `λ = 0` (the bound is then the
//! number of requests that could be good at all) and steps against the subgradient with
//! Polyak's step `θ (bound − target) / ‖g‖²`, the target being a feasible schedule's count
//! (below the optimum, so steps err long; `θ` halves after [`PATIENCE`] steps without a new
//! best). It stops when the best bound is within [`TOLERANCE`] of the schedule (the optimum is
//! then pinned), when the subgradient vanishes (λ is optimal), or after [`MAX_STEPS`]. Every λ
//! gives a valid bound, so the best value seen is reported.
//!
//! Cost: each step prices every request's cells and sorts them, `O(Σ_j cells_j log cells_j)`;
//! `Δ` is chosen so that the cells of all requests stay under [`MAX_CELLS`].
use super::{Job, Topology, schedule};

/// Subgradient steps at most.
const MAX_STEPS: u32 = 600;
/// Steps without a new best before `θ` halves.
const PATIENCE: u32 = 8;
/// Stop when the bound is within this share of a feasible schedule.
const TOLERANCE: f64 = 0.001;
/// The cells priced per step, over all requests, at most (this picks `Δ`).
const MAX_CELLS: f64 = 3.0e6;
/// Shares below this are zero.
const EPS: f64 = 1e-12;

/// What [`bound`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The bound on good requests.
    pub value: f64,
    /// Good requests of the feasible schedule it was steered by.
    pub schedule: usize,
    /// `Δ`.
    pub bucket_secs: f64,
    pub buckets: usize,
    pub iterations: u32,
}

/// The bound on good requests for `jobs` on `topology` (see the module docs).
pub fn bound(topology: &Topology, jobs: &[Job]) -> Bound {
    let scheduled = schedule(topology, jobs);
    let Some(mut cells) = Cells::new(topology, jobs) else {
        return Bound {
            value: 0.0,
            schedule: scheduled,
            bucket_secs: 0.0,
            buckets: 0,
            iterations: 0,
        };
    };
    let target = scheduled as f64;
    let mut lambda = vec![0.0; cells.capacity.len()];
    let mut asked = vec![0.0; cells.capacity.len()];
    let mut current = cells.evaluate(&lambda, &mut asked);
    let mut best = current;
    let (mut theta, mut stall, mut steps) = (1.0, 0, 0);
    while steps < MAX_STEPS && best - target > TOLERANCE * best.max(1.0) && theta > 1e-4 {
        let g = projected_gradient(&cells.capacity, &asked, &lambda);
        let norm2: f64 = g.iter().map(|x| x * x).sum();
        if norm2 < EPS {
            break;
        }
        let step = theta * (current - target).max(EPS) / norm2;
        for (l, gi) in lambda.iter_mut().zip(&g) {
            *l = (*l - step * gi).max(0.0);
        }
        current = cells.evaluate(&lambda, &mut asked);
        steps += 1;
        if current < best - 1e-9 * best.max(1.0) {
            best = current;
            stall = 0;
        } else {
            stall += 1;
            if stall >= PATIENCE {
                theta *= 0.5;
                stall = 0;
            }
        }
    }
    Bound {
        value: best,
        schedule: scheduled,
        bucket_secs: cells.delta,
        buckets: cells.buckets,
        iterations: steps,
    }
}

/// `capacity − asked`, with the components that would push a zero price below zero dropped.
fn projected_gradient(capacity: &[f64], asked: &[f64], lambda: &[f64]) -> Vec<f64> {
    capacity
        .iter()
        .zip(asked)
        .zip(lambda)
        .map(|((c, a), l)| {
            let g = c - a;
            if *l <= 0.0 && g > 0.0 { 0.0 } else { g }
        })
        .collect()
}

/// A request's windows, one per region it can be good in.
#[derive(Debug, Clone)]
struct Windows {
    at: f64,
    service: f64,
    /// `(region's position among the cells' regions, window end)`.
    ends: Vec<(usize, f64)>,
    /// The end of the union of its windows.
    union_end: f64,
}

/// One cell a request may buy slot-seconds in.
#[derive(Debug, Clone, Copy)]
struct Item {
    cell: usize,
    /// Bucket, relative to the request's first.
    group: usize,
    cap: f64,
    price: f64,
    take: f64,
}

/// The time-expanded cells and the requests' windows over them.
struct Cells {
    delta: f64,
    buckets: usize,
    /// Slot-seconds of each cell, `region position × buckets + bucket`.
    capacity: Vec<f64>,
    windows: Vec<Windows>,
    items: Vec<Item>,
    groups: Vec<f64>,
}

impl Cells {
    /// `None` when no request can be good anywhere.
    fn new(topology: &Topology, jobs: &[Job]) -> Option<Cells> {
        let regions: Vec<usize> = (0..topology.slots.len())
            .filter(|&r| (0..topology.reach.len()).any(|s| topology.reaches(s, r)))
            .collect();
        let windows: Vec<Windows> = jobs
            .iter()
            .filter_map(|j| windows(topology, &regions, j))
            .collect();
        let horizon = windows.iter().map(|w| w.union_end).fold(0.0, f64::max);
        if windows.is_empty() || horizon <= 0.0 {
            return None;
        }
        let delta = bucket_secs(&windows);
        let buckets = (horizon / delta).floor() as usize + 1;
        let capacity = regions
            .iter()
            .flat_map(|&r| std::iter::repeat_n(topology.slots[r] * delta, buckets))
            .collect();
        Some(Cells {
            delta,
            buckets,
            capacity,
            windows,
            items: Vec::new(),
            groups: Vec::new(),
        })
    }

    fn bucket(&self, t: f64) -> usize {
        ((t / self.delta).floor().max(0.0) as usize).min(self.buckets - 1)
    }

    /// Of `[from, to]`, the part inside bucket `k`.
    fn overlap(&self, from: f64, to: f64, k: usize) -> f64 {
        let (lo, hi) = (k as f64 * self.delta, (k + 1) as f64 * self.delta);
        (to.min(hi) - from.max(lo)).max(0.0)
    }

    /// `bound(λ)`; `asked` receives the slot-seconds each cell is asked for at these prices.
    fn evaluate(&mut self, lambda: &[f64], asked: &mut [f64]) -> f64 {
        asked.iter_mut().for_each(|a| *a = 0.0);
        let mut value: f64 = self.capacity.iter().zip(lambda).map(|(c, l)| c * l).sum();
        for j in 0..self.windows.len() {
            let cost = self.cheapest(j, lambda);
            if cost < 1.0 {
                value += 1.0 - cost;
                for it in self.items.iter().filter(|it| it.take > 0.0) {
                    asked[it.cell] += it.take;
                }
            }
        }
        value
    }

    /// The cheapest way for request `j` to buy its service time at prices `λ` within its caps:
    /// greedy by price, which is optimal for caps per cell nested in caps per bucket. Leaves
    /// what it bought in `self.items`.
    fn cheapest(&mut self, j: usize, lambda: &[f64]) -> f64 {
        let w = &self.windows[j];
        let first = self.bucket(w.at);
        let (mut items, mut groups) = (
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.groups),
        );
        items.clear();
        groups.clear();
        groups
            .extend((first..=self.bucket(w.union_end)).map(|k| self.overlap(w.at, w.union_end, k)));
        for &(pos, end) in &w.ends {
            for k in first..=self.bucket(end) {
                let cap = self.overlap(w.at, end, k);
                if cap > EPS {
                    let cell = pos * self.buckets + k;
                    let (group, price) = (k - first, lambda[cell]);
                    items.push(Item {
                        cell,
                        group,
                        cap,
                        price,
                        take: 0.0,
                    });
                }
            }
        }
        items.sort_unstable_by(|a, b| a.price.total_cmp(&b.price));
        let (mut need, mut cost) = (w.service, 0.0);
        for it in items.iter_mut() {
            if need <= EPS {
                break;
            }
            let take = it.cap.min(groups[it.group]).min(need);
            if take > 0.0 {
                it.take = take;
                groups[it.group] -= take;
                need -= take;
                cost += take * it.price;
            }
        }
        self.items = items;
        self.groups = groups;
        if need > 1e-9 { f64::INFINITY } else { cost }
    }
}

/// `job`'s windows in the regions it can be good in, if any.
fn windows(topology: &Topology, regions: &[usize], job: &Job) -> Option<Windows> {
    let ends: Vec<(usize, f64)> = regions
        .iter()
        .enumerate()
        .filter_map(|(pos, &r)| Some((pos, topology.latest_start(job, r)? + job.service)))
        .collect();
    let union_end = ends.iter().map(|e| e.1).fold(f64::NEG_INFINITY, f64::max);
    (!ends.is_empty() && job.service >= 0.0).then_some(Windows {
        at: job.at,
        service: job.service,
        ends,
        union_end,
    })
}

/// `Δ`: a quarter of the mean service time (so a request spans a few cells and the fluid
/// within a cell is short next to it), between 10 ms and 1 s, and larger if the cells of all
/// requests would exceed [`MAX_CELLS`].
fn bucket_secs(windows: &[Windows]) -> f64 {
    let n = windows.len() as f64;
    let mean = windows.iter().map(|w| w.service).sum::<f64>() / n;
    let spans: f64 = windows
        .iter()
        .map(|w| w.ends.iter().map(|(_, e)| e - w.at).sum::<f64>())
        .sum();
    (mean / 4.0).clamp(0.01, 1.0).max(spans / MAX_CELLS)
}

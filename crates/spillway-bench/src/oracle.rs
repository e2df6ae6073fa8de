//! The oracle bound: the most requests any router could have served, given the same arrivals.
//!
//! Time is cut into buckets (one second of trace time). In each bucket, a flow network is built:
//!
//! ```text
//!   S ──d_s──▶ source s ──────────────∞──────────────▶ region s ──c_s──▶ T
//!                 │                                      ▲
//!                 └──x_s──▶ cross s ──∞──▶ region r ≠ s ─┘ (r reachable from s)
//! ```
//!
//! * `d_s`: requests arriving from source region `s` in the bucket (its demand);
//! * `c_r`: requests region `r` can complete in a bucket, its concurrency divided by the mean
//!   service time of the offered requests (a fluid approximation: no queue carries work from
//!   one bucket to the next);
//! * `x_s`: the cap on what `s` may send to other regions in a bucket, twice its in-region
//!   quota (Bedrock's cross-region allowance), with the quota set to one region's capacity;
//! * a region `r` is reachable from `s` only when the profile allows it (same geography).
//!
//! The maximum flow of each bucket is what a clairvoyant router would serve in it; their sum over
//! the window is the oracle's served count, and divided by the window the **oracle goodput**.
//! A real router is measured against it as `goodput_vs_oracle`.
//!
//! The same buckets bound locality. In a bucket, at most `min(d_s, c_s)` of source `s`'s
//! requests are served in `s`, so a router that serves the oracle's count serves at least
//! `served − Σ min(d_s, c_s)` of it away from its source: `local_share`, the in-region sum over
//! the oracle's served count, is the most locality a router can keep at the oracle's goodput.
//! It keeps more only by carrying work over, holding requests in their source's queue until a
//! later bucket, which the caller pays for in TTFT.
//!
//! It is a bound under the fluid model, not an absolute one: a request that arrives late in a
//! bucket and is served in the next still counts for the real router, while the oracle serves
//! each bucket's demand within that bucket only. On smooth load a router can therefore reach a
//! hair above 100%; on bursts, where the bound matters, the carry-over is small next to the
//! burst.
//!
//! The max-flow is Dinic's algorithm on `f64` capacities (tiny graphs: a dozen nodes per bucket).

/// A flow network with `f64` capacities, solved with Dinic's algorithm.
#[derive(Debug, Clone)]
pub struct MaxFlow {
    adj: Vec<Vec<usize>>,
    /// Edge `i` and its reverse `i ^ 1`.
    to: Vec<usize>,
    cap: Vec<f64>,
    level: Vec<i64>,
    next: Vec<usize>,
}

/// Flows below this are treated as zero.
const EPS: f64 = 1e-9;

impl MaxFlow {
    pub fn new(nodes: usize) -> MaxFlow {
        MaxFlow {
            adj: vec![Vec::new(); nodes],
            to: Vec::new(),
            cap: Vec::new(),
            level: vec![-1; nodes],
            next: vec![0; nodes],
        }
    }

    /// Adds the edge `u → v` with capacity `cap` (negative or NaN counts as 0); returns its id.
    pub fn add_edge(&mut self, u: usize, v: usize, cap: f64) -> usize {
        let id = self.to.len();
        let cap = if cap > 0.0 { cap } else { 0.0 };
        self.to.extend([v, u]);
        self.cap.extend([cap, 0.0]);
        self.adj[u].push(id);
        self.adj[v].push(id + 1);
        id
    }

    /// Flow through edge `id` after [`MaxFlow::run`].
    pub fn flow(&self, id: usize) -> f64 {
        self.cap.get(id ^ 1).copied().unwrap_or(0.0)
    }

    /// The maximum flow from `s` to `t`.
    pub fn run(&mut self, s: usize, t: usize) -> f64 {
        let mut total = 0.0;
        while self.levels(s, t) {
            self.next.iter_mut().for_each(|n| *n = 0);
            loop {
                let f = self.push(s, t, f64::INFINITY);
                if f <= EPS {
                    break;
                }
                total += f;
            }
        }
        total
    }

    /// Breadth-first levels from `s`; whether `t` is reachable.
    fn levels(&mut self, s: usize, t: usize) -> bool {
        self.level.iter_mut().for_each(|l| *l = -1);
        self.level[s] = 0;
        let mut queue = std::collections::VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            for &e in &self.adj[u] {
                let v = self.to[e];
                if self.cap[e] > EPS && self.level[v] < 0 {
                    self.level[v] = self.level[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        self.level[t] >= 0
    }

    /// One blocking-flow augmentation along the level graph.
    fn push(&mut self, u: usize, t: usize, limit: f64) -> f64 {
        if u == t {
            return limit;
        }
        while self.next[u] < self.adj[u].len() {
            let e = self.adj[u][self.next[u]];
            let v = self.to[e];
            if self.cap[e] > EPS && self.level[v] == self.level[u] + 1 {
                let f = self.push(v, t, limit.min(self.cap[e]));
                if f > EPS {
                    self.cap[e] -= f;
                    self.cap[e ^ 1] += f;
                    return f;
                }
            }
            self.next[u] += 1;
        }
        0.0
    }
}

/// The network's fixed part: regions, their capacity per bucket, the cross-region caps and who
/// may reach whom.
#[derive(Debug, Clone)]
pub struct Network {
    /// Requests region `r` completes per bucket.
    pub capacity: Vec<f64>,
    /// Requests source `s` may send to other regions per bucket.
    pub cross_cap: Vec<f64>,
    /// `reach[s][r]`: requests from `s` may be served in `r` (`reach[s][s]` is implied).
    pub reach: Vec<Vec<bool>>,
}

impl Network {
    /// Maximum requests served in one bucket with `demand[s]` arrivals from each region.
    pub fn bucket(&self, demand: &[f64]) -> f64 {
        let n = self.capacity.len();
        // Nodes: S, T, sources 2.., cross nodes 2+n.., regions 2+2n..
        let (s, t) = (0, 1);
        let (src, cross, reg) = (2, 2 + n, 2 + 2 * n);
        let mut g = MaxFlow::new(2 + 3 * n);
        for i in 0..n {
            let d = demand.get(i).copied().unwrap_or(0.0);
            if d > 0.0 {
                g.add_edge(s, src + i, d);
                g.add_edge(src + i, reg + i, f64::INFINITY);
                g.add_edge(
                    src + i,
                    cross + i,
                    self.cross_cap.get(i).copied().unwrap_or(0.0),
                );
                for r in (0..n).filter(|&r| r != i) {
                    if self.reach.get(i).and_then(|x| x.get(r)).copied() == Some(true) {
                        g.add_edge(cross + i, reg + r, f64::INFINITY);
                    }
                }
            }
            g.add_edge(reg + i, t, self.capacity[i]);
        }
        g.run(s, t)
    }

    /// What in-region routing alone can serve in one bucket: `Σ min(d_s, c_s)`.
    pub fn in_region_bucket(&self, demand: &[f64]) -> f64 {
        demand
            .iter()
            .zip(&self.capacity)
            .map(|(d, c)| d.min(*c))
            .sum()
    }
}

/// The oracle's figures for a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Oracle {
    /// Served requests per second of the window: the bound a router is compared with.
    pub goodput_rps: f64,
    /// Requests the oracle serves over the window.
    pub served: f64,
    /// What in-region routing would serve under the same fluid model (for comparison).
    pub in_region_served: f64,
    /// `in_region_served / served`: the most locality a router keeps at the oracle's goodput
    /// without queueing (see the module docs); 1 when nothing is served.
    pub local_share: f64,
    /// Requests offered.
    pub offered: f64,
    pub bucket_secs: f64,
    pub buckets: usize,
}

/// The oracle over `demand[bucket][region]` with buckets of `bucket_secs`.
pub fn oracle(net: &Network, demand: &[Vec<f64>], bucket_secs: f64) -> Oracle {
    let served: f64 = demand.iter().map(|d| net.bucket(d)).sum();
    let window = (demand.len() as f64 * bucket_secs).max(1e-9);
    let in_region_served: f64 = demand.iter().map(|d| net.in_region_bucket(d)).sum();
    Oracle {
        goodput_rps: served / window,
        served,
        in_region_served,
        local_share: if served > 0.0 {
            (in_region_served / served).min(1.0)
        } else {
            1.0
        },
        offered: demand.iter().flatten().sum(),
        bucket_secs,
        buckets: demand.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn textbook_graph() {
        // CLRS figure 26.1: max flow 23.
        let mut g = MaxFlow::new(6);
        for (u, v, c) in [
            (0, 1, 16.0),
            (0, 2, 13.0),
            (1, 3, 12.0),
            (2, 1, 4.0),
            (2, 4, 14.0),
            (3, 2, 9.0),
            (3, 5, 20.0),
            (4, 3, 7.0),
            (4, 5, 4.0),
        ] {
            g.add_edge(u, v, c);
        }
        assert!((g.run(0, 5) - 23.0).abs() < 1e-9);
    }

    #[test]
    fn flows_are_reported_per_edge_and_fractional_capacities_work() {
        let mut g = MaxFlow::new(4);
        let a = g.add_edge(0, 1, 2.5);
        let b = g.add_edge(0, 2, 1.25);
        g.add_edge(1, 3, 1.0);
        g.add_edge(2, 3, 10.0);
        g.add_edge(1, 2, 0.5);
        assert!((g.run(0, 3) - 2.75).abs() < 1e-9);
        assert!((g.flow(a) - 1.5).abs() < 1e-9);
        assert!((g.flow(b) - 1.25).abs() < 1e-9);
        assert_eq!(MaxFlow::new(2).run(0, 1), 0.0);
    }

    fn three_us(cap: f64) -> Network {
        Network {
            capacity: vec![cap; 3],
            cross_cap: vec![2.0 * cap; 3],
            reach: vec![vec![true; 3]; 3],
        }
    }

    #[test]
    fn one_burst_spills_up_to_the_cross_region_cap() {
        let net = three_us(10.0);
        assert!((net.bucket(&[25.0, 0.0, 0.0]) - 25.0).abs() < 1e-9);
        // 10 local + 20 cross (the cap and the other regions' capacity agree).
        assert!((net.bucket(&[40.0, 0.0, 0.0]) - 30.0).abs() < 1e-9);
        // The cap binds before the capacity does.
        let capped = Network {
            cross_cap: vec![5.0; 3],
            ..three_us(10.0)
        };
        assert!((capped.bucket(&[40.0, 0.0, 0.0]) - 15.0).abs() < 1e-9);
        // Busy neighbours leave less room.
        assert!((net.bucket(&[40.0, 8.0, 0.0]) - 30.0).abs() < 1e-9);
        assert!((net.bucket(&[40.0, 10.0, 10.0]) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn unreachable_regions_stay_idle() {
        // Region 2 is another geography: nobody may spill there, and it has no demand.
        let net = Network {
            capacity: vec![10.0; 3],
            cross_cap: vec![20.0; 3],
            reach: vec![
                vec![true, true, false],
                vec![true, true, false],
                vec![false; 3],
            ],
        };
        assert!((net.bucket(&[40.0, 0.0, 0.0]) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn oracle_sums_buckets_and_bounds_in_region() {
        let net = three_us(10.0);
        let demand = vec![vec![40.0, 0.0, 0.0], vec![5.0, 5.0, 5.0], vec![0.0; 3]];
        let o = oracle(&net, &demand, 1.0);
        assert!((o.served - 45.0).abs() < 1e-9);
        assert!((o.goodput_rps - 15.0).abs() < 1e-9);
        assert!((o.in_region_served - 25.0).abs() < 1e-9);
        assert!((o.local_share - 25.0 / 45.0).abs() < 1e-9);
        assert_eq!((o.offered, o.buckets), (55.0, 3));
    }

    #[test]
    fn oracle_is_between_in_region_and_demand_on_random_buckets() {
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..500 {
            let n = rng.random_range(1..5);
            let net = Network {
                capacity: (0..n).map(|_| rng.random_range(0.0..20.0)).collect(),
                cross_cap: (0..n).map(|_| rng.random_range(0.0..40.0)).collect(),
                reach: (0..n)
                    .map(|_| (0..n).map(|_| rng.random_bool(0.7)).collect())
                    .collect(),
            };
            let d: Vec<f64> = (0..n)
                .map(|_| f64::from(rng.random_range(0..60u32)))
                .collect();
            let best = net.bucket(&d);
            let local = net.in_region_bucket(&d);
            assert!(best >= local - 1e-9, "{best} < {local} for {net:?} {d:?}");
            assert!(best <= d.iter().sum::<f64>() + 1e-9);
            assert!(best <= net.capacity.iter().sum::<f64>() + 1e-9);
        }
    }
}

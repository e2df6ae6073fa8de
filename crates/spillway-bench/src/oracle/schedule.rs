//! A feasible schedule under the oracle's model, to pin the optimum from below and to steer the
//! bound's subgradient method. It knows every service time in advance, as no router does:
//!
//! * a request that arrives while a region of its set has a free slot starts at once, in the
//!   free region where its TTFT is lowest (its source on a tie);
//! * otherwise it waits in one pool; when a slot frees in region `r`, the shortest waiting
//!   request that `r` may serve and that would still be good there starts on it (shortest first
//!   fits the most requests into the time there is);
//! * a request that can no longer be good anywhere leaves the pool and holds no slot.
//!
//! It is not optimal (it never holds a slot back for a shorter request about to arrive), so the
//! optimum lies between its count and the bound.
use super::{Job, Topology};

/// Good requests of the schedule described in the module docs (whole slots only: a region's
/// fractional slots are rounded down).
pub fn schedule(topology: &Topology, jobs: &[Job]) -> usize {
    let mut order: Vec<&Job> = jobs.iter().collect();
    order.sort_by(|a, b| a.at.total_cmp(&b.at));
    // Each region's slot free times.
    let mut free: Vec<Vec<f64>> = topology
        .slots
        .iter()
        .map(|s| {
            let n = if s.is_finite() && *s > 0.0 {
                s.floor() as usize
            } else {
                0
            };
            vec![0.0; n]
        })
        .collect();
    let mut waiting: Vec<&Job> = Vec::new();
    let (mut good, mut clock) = (0, f64::NEG_INFINITY);
    let mut next = order.into_iter().peekable();
    loop {
        // The next event: an arrival, or the earliest slot to free while someone waits.
        let arrival = next.peek().map(|j| j.at);
        let freeing = (!waiting.is_empty())
            .then(|| earliest_free(&free))
            .flatten();
        let event = match (arrival, freeing) {
            (Some(a), Some(f)) => a.min(f),
            (Some(a), None) => a,
            (None, Some(f)) => f,
            (None, None) => break,
        };
        let now = clock.max(event);
        clock = now;
        waiting.retain(|j| {
            (0..free.len()).any(|r| topology.latest_start(j, r).is_some_and(|l| l >= now))
        });
        while let Some(j) = next.next_if(|j| j.at <= now) {
            waiting.push(j);
        }
        good += start_what_fits(topology, &mut free, &mut waiting, now);
        // Slots still free now suit nobody waiting: they wait for the next change.
        let until = next_change(&free, now, next.peek().map(|j| j.at), &waiting, topology);
        for f in free.iter_mut().flatten().filter(|f| **f <= now) {
            *f = until;
        }
    }
    good
}

/// The earliest slot free time over all regions.
fn earliest_free(free: &[Vec<f64>]) -> Option<f64> {
    free.iter().flatten().copied().min_by(f64::total_cmp)
}

/// Starts, at `now`, waiting requests on slots free by then: for each such slot (earliest
/// first), the shortest request it may take; returns how many started.
fn start_what_fits(
    topology: &Topology,
    free: &mut [Vec<f64>],
    waiting: &mut Vec<&Job>,
    now: f64,
) -> usize {
    let mut started = 0;
    loop {
        // The waiting request and free region that start next: shortest request first, and for
        // it the free region where its TTFT is lowest.
        // Each region's slot that freed first, among those free by now (once per start, not
        // per waiting request).
        let open: Vec<Option<usize>> = free
            .iter()
            .map(|slots| {
                (0..slots.len())
                    .filter(|&i| slots[i] <= now)
                    .min_by(|&a, &b| slots[a].total_cmp(&slots[b]))
            })
            .collect();
        let mut best: Option<(usize, usize, usize, f64)> = None; // (waiting ix, region, slot, ttft)
        for (w, j) in waiting.iter().enumerate() {
            for (r, slot) in open.iter().enumerate() {
                let (Some(i), Some(latest)) = (*slot, topology.latest_start(j, r)) else {
                    continue;
                };
                if now > latest {
                    continue;
                }
                let ttft = now - j.at + j.prefill + topology.rtt(j.source, r);
                let better = best.is_none_or(|(bw, br, _, bt)| {
                    let b = waiting[bw];
                    (j.service, ttft, r != j.source).partial_cmp(&(b.service, bt, br != b.source))
                        == Some(std::cmp::Ordering::Less)
                });
                if better {
                    best = Some((w, r, i, ttft));
                }
            }
        }
        let Some((w, r, i, _)) = best else {
            return started;
        };
        let j = waiting.swap_remove(w);
        free[r][i] = now + j.service;
        started += 1;
    }
}

/// The next instant after `now` at which a slot free now could be of use: the next arrival, the
/// next slot to free (someone may wait for it elsewhere) or a waiting request's deadline.
fn next_change(
    free: &[Vec<f64>],
    now: f64,
    next_arrival: Option<f64>,
    waiting: &[&Job],
    topology: &Topology,
) -> f64 {
    let later_free = free
        .iter()
        .flatten()
        .copied()
        .filter(|f| *f > now)
        .fold(f64::INFINITY, f64::min);
    let deadline = waiting
        .iter()
        .flat_map(|j| (0..free.len()).filter_map(|r| topology.latest_start(j, r)))
        .filter(|l| *l > now)
        .fold(f64::INFINITY, f64::min);
    next_arrival
        .unwrap_or(f64::INFINITY)
        .min(later_free)
        .min(deadline)
}

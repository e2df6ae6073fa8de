//! The exact optimum of the oracle's model on small instances, by exhaustive search: the most
//! good requests of any non-preemptive schedule on the regions' whole slots.
//!
//! Any schedule can be shifted left, slot by slot, until each request starts at its arrival or
//! when the one before it on its slot ends, without making any request later. Taken in order of
//! start, such a schedule is a sequence of choices (request, region, slot), each starting at
//! `max(arrival, slot free)`; the search tries every sequence of requests that would still be
//! good, depth first. A state is the set of requests placed and each region's sorted slot free
//! times; one whose free times are all no earlier than a state already seen with the same set
//! can do nothing that one could not, and is cut.
use std::collections::HashMap;

use super::{Job, Topology};

/// The most good requests any schedule serves (`jobs.len()` at most 20).
pub(super) fn optimum(topology: &Topology, jobs: &[Job]) -> usize {
    assert!(
        jobs.len() <= 20,
        "exhaustive search on {} requests",
        jobs.len()
    );
    let free: Vec<Vec<f64>> = topology
        .slots
        .iter()
        .map(|s| vec![0.0; s.max(0.0).floor() as usize])
        .collect();
    let mut search = Search {
        topology,
        jobs,
        best: 0,
        seen: HashMap::new(),
    };
    search.go(0, &free);
    search.best
}

struct Search<'a> {
    topology: &'a Topology,
    jobs: &'a [Job],
    best: usize,
    /// By set of placed requests: the free-time states seen with it.
    seen: HashMap<u32, Vec<Vec<Vec<f64>>>>,
}

impl Search<'_> {
    fn go(&mut self, placed: u32, free: &[Vec<f64>]) {
        let count = placed.count_ones() as usize;
        self.best = self.best.max(count);
        if count + (self.jobs.len() - count) <= self.best || self.dominated(placed, free) {
            return;
        }
        for (j, job) in self.jobs.iter().enumerate() {
            if placed & (1 << j) != 0 {
                continue;
            }
            for (r, slots) in free.iter().enumerate() {
                let Some(latest) = self.topology.latest_start(job, r) else {
                    continue;
                };
                for (i, &f) in slots.iter().enumerate() {
                    if i > 0 && slots[i - 1] == f {
                        continue;
                    }
                    let start = job.at.max(f);
                    if start > latest {
                        continue;
                    }
                    let mut next = free.to_vec();
                    next[r][i] = start + job.service;
                    next[r].sort_by(f64::total_cmp);
                    self.go(placed | (1 << j), &next);
                }
            }
        }
    }

    /// Whether a state with the same requests placed and no later free times was seen; if not,
    /// this one is remembered.
    fn dominated(&mut self, placed: u32, free: &[Vec<f64>]) -> bool {
        let states = self.seen.entry(placed).or_default();
        let covers = |seen: &Vec<Vec<f64>>| {
            seen.iter()
                .zip(free)
                .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x <= y))
        };
        if states.iter().any(covers) {
            return true;
        }
        states.push(free.to_vec());
        false
    }
}

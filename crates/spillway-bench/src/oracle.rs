//! The oracle: an upper bound on the good requests (served within the TTFT SLO) that any router
//! could have served, given the same arrivals and regions. A policy's goodput is read against it
//! (`goodput_vs_oracle`), so it must be a true bound on every trace: a policy above it means the
//! bound is wrong, and the bench says so rather than print a share above 100 %.
//!
//! # The model it bounds
//!
//! The simulator's engine (`spillway-sim`'s engine model, `docs/SIMULATOR.md`): region `r` has
//! `slots[r]` continuous-batching slots; request `j` holds one slot, without preemption, for its
//! service time `p_j` = prefill + decode, and its first token comes no sooner than its prefill
//! `f_j` after it starts. Its TTFT as the bench reads it is at least `(start − arrival) + f_j +
//! rtt(source, r)`, so it is *good* in `r` only if it starts in `[a_j, d_jr]` with
//! `d_jr = a_j + SLO − f_j − rtt(source, r)`, and then occupies `[start, start + p_j]` within its
//! **window** `[a_j, d_jr + p_j]`. A router may send it to any region its source reaches (the
//! profile's set), or refuse it.
//!
//! Not modelled, each of which only lowers what a real router serves: the gateway's own time,
//! the engine queue's limit and 429s, the retry budget, TPOT (decode speed does not depend on
//! load in the simulator; the bound ignores the TPOT SLO), quotas (the bench's are above its
//! load), and the first token's own decode step.
//!
//! # The bound: a Lagrangian dual of the time-expanded relaxation
//!
//! Time is cut into buckets of `Δ` seconds; cell `(r, k)` holds `slots[r] × Δ` slot-seconds.
//! The relaxation keeps, of a real schedule, only this: request `j` served with weight
//! `x_j ∈ [0, 1]` puts `w_jrk ≥ 0` slot-seconds into cells, `p_j x_j` in all, at most `x_j ×`
//! (its window's overlap with the cell) into each cell (it runs on one slot at a time) and at
//! most `x_j ×` (the bucket's overlap with the union of its windows) into each bucket over all
//! regions (it runs in one region at a time); no cell is over its slot-seconds. Every real
//! schedule is such a solution with `x_j = 1` for its good requests, so the most `Σ x_j` of the
//! relaxation bounds them all. It keeps what the old per-second fluid bound lost: work carried
//! from one bucket to the next, up to each request's own deadline, and each request's own
//! length (within a bucket the short requests fit more of them, as shortest-first would).
//!
//! Prices `λ_rk ≥ 0` on the cells' capacity give, by weak duality, for **any** λ:
//!
//! ```text
//!   bound(λ) = Σ_rk slots_r Δ λ_rk  +  Σ_j max(0, 1 − cost_j(λ))
//! ```
//!
//! where `cost_j(λ)` is the cheapest way to buy `p_j` slot-seconds inside `j`'s windows within
//! its per-cell and per-bucket caps (greedy by price, which is exact for these nested caps). The
//! bound is valid whatever λ is; the solver only makes it tighter, by projected subgradient
//! steps (Polyak's rule against a schedule's count, [`bound`]). So an unconverged run gives a
//! looser bound, never a wrong one. The schedule ([`schedule`]: each request, in arrival order,
//! to the region where it can start soonest, refused when it would be late) is a real feasible
//! schedule, so the true optimum lies between its count and the bound; both are reported.
//!
//! # Locality
//!
//! The same bound with each source reaching only itself bounds the good requests any router can
//! serve in their source region, with waiting allowed up to the SLO (`in_region_served`).
//! At the oracle's goodput at most `in_region_served / served` of the good requests can be
//! local (`local_share`); a router that keeps more locality pays for it in goodput.
mod bound;
mod schedule;

#[cfg(test)]
mod exact;
#[cfg(test)]
mod tests;

pub use bound::{Bound, bound};
pub use schedule::schedule;

use crate::workload::Workload;

/// Regions, who may reach whom, and the TTFT objective.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Slots of each region: the slot-seconds it serves per second (may be fractional when it is
    /// derived from a request rate).
    pub slots: Vec<f64>,
    /// `reach[s][r]`: requests from source `s` may be served in region `r`.
    pub reach: Vec<Vec<bool>>,
    /// `rtt_secs[s][r]`: round trip added to the TTFT of a request from `s` served in `r`.
    pub rtt_secs: Vec<Vec<f64>>,
    /// A request is good when its TTFT is at most this (seconds).
    pub ttft_slo_secs: f64,
}

impl Topology {
    /// The same regions, each source reaching only its own region (in-region routing).
    pub fn in_region(&self) -> Topology {
        let reach = (0..self.reach.len())
            .map(|s| {
                (0..self.slots.len())
                    .map(|r| r == s && self.reaches(s, r))
                    .collect()
            })
            .collect();
        Topology {
            reach,
            ..self.clone()
        }
    }

    fn reaches(&self, source: usize, region: usize) -> bool {
        self.reach
            .get(source)
            .and_then(|row| row.get(region))
            .copied()
            .unwrap_or(false)
            && self.slots.get(region).is_some_and(|s| *s > 0.0)
    }

    fn rtt(&self, source: usize, region: usize) -> f64 {
        self.rtt_secs
            .get(source)
            .and_then(|row| row.get(region))
            .copied()
            .filter(|x| x.is_finite() && *x > 0.0)
            .unwrap_or(0.0)
    }

    /// The latest start at which `job` is still good in `region`, if it can be good there.
    pub fn latest_start(&self, job: &Job, region: usize) -> Option<f64> {
        if !self.reaches(job.source, region) {
            return None;
        }
        let latest = job.at + self.ttft_slo_secs - job.prefill - self.rtt(job.source, region);
        (latest >= job.at).then_some(latest)
    }
}

/// One request as the model sees it (trace time, seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    pub source: usize,
    pub at: f64,
    /// Time from its start to its first token.
    pub prefill: f64,
    /// Time it holds a slot (prefill and decode).
    pub service: f64,
}

/// The requests of a workload at the simulator's speeds.
pub fn jobs(w: &Workload, prefill_tps: f64, decode_tps: f64) -> Vec<Job> {
    w.requests
        .iter()
        .map(|r| Job {
            source: r.source,
            at: r.at.as_secs_f64(),
            prefill: r.input_tokens as f64 / prefill_tps,
            service: r.service_secs(prefill_tps, decode_tps),
        })
        .collect()
}

/// The requests of a workload at the simulator's speeds, with prefix caches
/// (`--prefix-cache-blocks`): each prefills only its input past the longest leading run of its
/// prefix ids (`hash_ids`, one per `block_tokens`) that an earlier request carried, and at least
/// one token. That is what it would prefill if every region's cache were unbounded and held
/// every block any region ever computed, which no real placement beats, so the oracle over
/// these jobs still bounds every router from above (loosely: real caches are neither).
pub fn cached_jobs(w: &Workload, prefill_tps: f64, decode_tps: f64, block_tokens: u64) -> Vec<Job> {
    let mut seen = std::collections::HashSet::new();
    w.requests
        .iter()
        .map(|r| {
            let ids = r.hash_ids.as_deref().unwrap_or(&[]);
            let run = ids.iter().take_while(|id| seen.contains(*id)).count() as u64;
            seen.extend(ids.iter().copied());
            let cached = (run * block_tokens).min(r.input_tokens.saturating_sub(1));
            let prefill = (r.input_tokens - cached) as f64 / prefill_tps;
            Job {
                source: r.source,
                at: r.at.as_secs_f64(),
                prefill,
                service: prefill + r.output_tokens as f64 / decode_tps,
            }
        })
        .collect()
}

/// The oracle's figures for a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Oracle {
    /// `served` per second of the window: the goodput no router can beat.
    pub goodput_rps: f64,
    /// The bound on good requests (see the module docs).
    pub served: f64,
    /// Good requests of a feasible schedule ([`schedule`]): the best router serves at least
    /// these, so it lies between this and `served`.
    pub schedule_served: f64,
    /// The bound on good requests served in their source region, waiting allowed.
    pub in_region_served: f64,
    /// `in_region_served / served` (at most 1): the most locality a router keeps at the oracle's
    /// goodput; 1 when nothing can be served.
    pub local_share: f64,
    /// Requests offered.
    pub offered: f64,
    /// The cells' length, `Δ`.
    pub bucket_secs: f64,
    /// Buckets of the time line.
    pub buckets: usize,
    /// Subgradient steps taken for `served`.
    pub iterations: u32,
}

/// The oracle over `jobs`, with goodput over `window_secs`.
pub fn oracle(topology: &Topology, jobs: &[Job], window_secs: f64) -> Oracle {
    let cross = bound(topology, jobs);
    let local = bound(&topology.in_region(), jobs);
    let served = cross.value;
    Oracle {
        goodput_rps: served / window_secs.max(1e-9),
        served,
        schedule_served: cross.schedule as f64,
        in_region_served: local.value,
        local_share: if served > 0.0 {
            (local.value / served).min(1.0)
        } else {
            1.0
        },
        offered: jobs.len() as f64,
        bucket_secs: cross.bucket_secs,
        buckets: cross.buckets,
        iterations: cross.iterations,
    }
}

/// Goodput above the bound by more than this share is reported as a breach (the bound is
/// computed in floating point and the bench's latencies are rounded).
pub const BREACH_TOLERANCE: f64 = 0.005;

//! The tail budget: a bounded share of requests that wait in their full source when no other
//! region can take them, rather than be throttled.
//!
//! # The rule
//!
//! Each source region earns `tail_budget` of a wait (0.01 by default) for every request
//! planned from it, banked up to [`TAIL_BURST`]. A request whose source is full, whose queue
//! there is within `source_wait`, whose wait the TTFT comparisons of step 2 (see the `plan`
//! module) do not allow, and which no other region can take (each is full, or at its
//! `spill_reserve`) spends one banked wait and waits in the source, provided its expected TTFT
//! there (when the running requests free a slot, plus its prefill) is within
//! `source_wait_ttft` × the tail, the TTFT the longest prompt seen there gets without waiting.
//! Without a banked wait it is throttled (429), as before.
//!
//! # Why
//!
//! The comparisons of step 2 keep a wait out of the tail: a request waits only when its
//! expected TTFT is about a spill's, or typical and below the tail. On traces where nearly
//! every prompt is at the bench's 4,096-token cap, that leaves a request that finds every
//! region full, or the others at their reserve, nothing but a 429, and a reserve (trunk
//! reservation) is then paid in goodput: −0.2 to −0.6 % in the replay, where Spillway's
//! default had no margin over the baselines. Letting all of them wait instead (`source_queue`)
//! puts them all in the tail: p99 1.4–2.4× the peers'.
//!
//! A percentile only sees how many requests are above it. If at most 1 % of requests are given
//! a wait the comparisons would not allow, the 99th percentile of TTFT is set by the other
//! 99 %: it moves to about what their maximum was, not to what the waiters get. So the budget
//! is a share of requests, not a time: 1 %, the complement of the percentile the tail is read
//! at. The bound on the wait's expected TTFT (`source_wait_ttft` × the tail, 1.5 s for a
//! 4,096-token prompt) keeps a budgeted wait within a TTFT objective such as the bench's 2 s:
//! a wait that outlived it would spend the budget on a request that no longer counts. The
//! burst lets a few requests of one saturated moment wait, where most 429s fall, without
//! letting one long saturation queue dozens.
//!
//! In the replay (`policy_replay`, bench sizing, 60 ms release lag) on the Azure, Mooncake and
//! four long traces, the budget alone served 0.05–0.5 % more requests than without it, at TTFT
//! p99 up to 1.03× the best peer's; with the default reserve (one slot) it served within 0.3 %
//! of what no reserve and no budget served, at 90.5–93.4 % local against 89.1–93.4 %; see
//! `docs/BENCHMARKS.md`.
use std::time::Duration;

use super::{DeploymentIx, Policy, RegionIx, RouteRequest, Router};

/// The most waits a source region may bank (see [`TailBudget`]).
pub const TAIL_BURST: f64 = 5.0;

/// Each source region's banked waits, by `RegionIx`, starting at none, and the waits granted
/// on each deployment, by `DeploymentIx`, for the metrics.
#[derive(Debug, Clone, Default)]
pub(super) struct TailBudget {
    banked: Vec<f64>,
    granted: Vec<u64>,
}

impl TailBudget {
    /// A request from `source` was planned: earn `share` of a wait.
    fn earn(&mut self, source: RegionIx, share: f64) {
        let ix = usize::from(source.0);
        if self.banked.len() <= ix {
            self.banked.resize(ix + 1, 0.0);
        }
        let share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self.banked[ix] = (self.banked[ix] + share).min(TAIL_BURST);
    }

    /// Whether `source` has a wait banked (a hair under 1 counts: a hundred hundredths add up
    /// to a little less in floating point).
    fn has(&self, source: RegionIx) -> bool {
        self.banked
            .get(usize::from(source.0))
            .is_some_and(|b| *b >= 1.0 - 1e-9)
    }

    /// Spend a wait of `source` on `deployment`.
    fn spend(&mut self, source: RegionIx, deployment: DeploymentIx) {
        if let Some(b) = self.banked.get_mut(usize::from(source.0)) {
            *b = (*b - 1.0).max(0.0);
        }
        let ix = deployment.0 as usize;
        if self.granted.len() <= ix {
            self.granted.resize(ix + 1, 0);
        }
        self.granted[ix] += 1;
    }
}

impl Router {
    /// Earn the request's share of a wait for its source (Spillway's policy only: the
    /// baselines never wait).
    pub(super) fn earn_tail_wait(&mut self, source: RegionIx) {
        if self.cfg.policy == Policy::Spillway && self.cfg.tail_budget > 0.0 {
            self.tail.earn(source, self.cfg.tail_budget);
        }
    }

    /// Whether the request may wait in its full source at `req.candidates[pos]` on the tail
    /// budget: a wait is banked and its expected TTFT there is within `source_wait_ttft` × the
    /// tail. Spends the wait when it says yes. The caller has checked that the source's queue
    /// is within `source_wait` and that no other region can take the request.
    pub(super) fn tail_wait(&mut self, req: &RouteRequest<'_>, pos: usize, now: Duration) -> bool {
        if !self.tail.has(req.source) {
            return false;
        }
        let factor = self.cfg.source_wait_ttft;
        let deployment = req.candidates[pos].deployment;
        let Some(d) = self.deployments.get_mut(deployment.0 as usize) else {
            return false;
        };
        // Nothing learned yet: no expected TTFT to bound the wait by.
        let (Some(wait), Some(p)) = (d.expected_wait(now), d.prefill_of(req.input_tokens)) else {
            return false;
        };
        let fits = factor.is_infinite() || wait + p.prefill <= factor * p.tail;
        if fits {
            self.tail.spend(req.source, deployment);
        }
        fits
    }

    /// How many requests waited in `d`, their full source, on the tail budget so far.
    pub fn tail_waits(&self, d: DeploymentIx) -> u64 {
        self.tail.granted.get(d.0 as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earns_a_share_per_request_up_to_the_burst() {
        let mut b = TailBudget::default();
        let r = RegionIx(2);
        for _ in 0..99 {
            b.earn(r, 0.01);
        }
        assert!(!b.has(r), "99 hundredths are not a wait");
        b.earn(r, 0.01);
        assert!(b.has(r), "a hundred are");
        assert!(!b.has(RegionIx(0)), "each region earns its own");
        b.spend(r, DeploymentIx(2));
        assert!(!b.has(r));
        for _ in 0..10_000 {
            b.earn(r, 0.01);
        }
        for _ in 0..TAIL_BURST as usize {
            assert!(b.has(r));
            b.spend(r, DeploymentIx(2));
        }
        assert!(!b.has(r), "no more than the burst is banked");
    }

    #[test]
    fn a_share_out_of_range_is_clamped() {
        let mut b = TailBudget::default();
        b.earn(RegionIx(0), f64::NAN);
        b.earn(RegionIx(0), -3.0);
        assert!(!b.has(RegionIx(0)));
        b.earn(RegionIx(0), 7.0);
        assert!(b.has(RegionIx(0)));
        b.spend(RegionIx(0), DeploymentIx(0));
        assert!(
            !b.has(RegionIx(0)),
            "a share above 1 earns one wait per request"
        );
    }
}

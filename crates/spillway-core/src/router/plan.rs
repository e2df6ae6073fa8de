//! Building the plan: eligibility, source first, expected-TTFT scoring, p2c among near-equals.
use std::time::Duration;

use rand::{Rng, RngCore};

use super::deployment::Entry;
use super::{MINUTE, Plan, Policy, Reason, Rejection, RouteRequest, Router, Step};

impl Router {
    /// Build the ordered plan (does not admit; call `try_acquire` for the step you use).
    pub fn plan(&mut self, req: &RouteRequest<'_>, now: Duration, rng: &mut dyn RngCore) -> Plan {
        let mut eligible = std::mem::take(&mut self.scratch);
        eligible.clear();
        let mut source_unhealthy = false;
        for (pos, c) in req.candidates.iter().enumerate() {
            let Some(d) = self.deployments.get_mut(c.deployment.0 as usize) else {
                continue;
            };
            let local = c.region == req.source;
            match d.check(req.est_tokens, now) {
                Ok(()) => {
                    let dup = eligible
                        .iter()
                        .any(|e| req.candidates[e.pos].deployment == c.deployment);
                    if !dup {
                        let (score, util) = d.score(c.rtt, self.prior_ns);
                        eligible.push(Entry {
                            pos,
                            score,
                            util,
                            local,
                        });
                    }
                }
                Err(Rejection::Unavailable) if local => source_unhealthy = true,
                Err(_) => {}
            }
        }
        let plan = if eligible.is_empty() {
            Plan {
                steps: Vec::new(),
                retry_after: self.retry_after(req, now),
            }
        } else {
            eligible.sort_unstable_by(|a, b| a.score.total_cmp(&b.score).then(a.pos.cmp(&b.pos)));
            let first = match self.cfg.policy {
                Policy::Spillway => match eligible.iter().position(|e| e.local) {
                    Some(i) => i,
                    None => self.spill_choice(&eligible, rng),
                },
                Policy::RoundRobin => {
                    eligible.sort_unstable_by_key(|e| e.pos);
                    self.rr = self.rr.wrapping_add(1);
                    self.rr % eligible.len()
                }
                Policy::LeastLoaded => {
                    eligible
                        .sort_unstable_by(|a, b| a.util.total_cmp(&b.util).then(a.pos.cmp(&b.pos)));
                    0
                }
            };
            let spill = if source_unhealthy {
                Reason::SpillUnhealthy
            } else {
                Reason::SpillCapacity
            };
            let step = |e: &Entry| {
                let c = &req.candidates[e.pos];
                let reason = if e.local { Reason::Local } else { spill };
                Step {
                    deployment: c.deployment,
                    region: c.region,
                    reason,
                }
            };
            let n = eligible.len().min(self.cfg.max_attempts.max(1));
            let mut steps = Vec::with_capacity(n);
            steps.push(step(&eligible[first]));
            let rest = eligible.iter().enumerate().filter(|&(i, _)| i != first);
            steps.extend(rest.take(n - 1).map(|(_, e)| step(e)));
            Plan {
                steps,
                retry_after: None,
            }
        };
        self.scratch = eligible;
        plan
    }

    /// Power of two choices among the near-equal prefix of `sorted` (ascending score).
    fn spill_choice(&self, sorted: &[Entry], rng: &mut dyn RngCore) -> usize {
        let bound = sorted[0].score * self.cfg.near_equal_ratio
            + self.cfg.near_equal_slack.as_nanos() as f64;
        let m = sorted.iter().take_while(|e| e.score <= bound).count();
        if m < 2 {
            return 0;
        }
        let i = rng.random_range(0..m);
        let mut j = rng.random_range(0..m - 1);
        if j >= i {
            j += 1;
        }
        // Lower utilisation wins; ties go to the lower score, then the lower candidate index,
        // which is the order of `sorted`.
        let a_first = match sorted[i].util.total_cmp(&sorted[j].util) {
            std::cmp::Ordering::Equal => i < j,
            o => o.is_lt(),
        };
        if a_first { i } else { j }
    }

    /// Nothing eligible: when the first candidate is expected to have room (1 ms ..= 60 s).
    fn retry_after(&mut self, req: &RouteRequest<'_>, now: Duration) -> Option<Duration> {
        if req.candidates.is_empty() {
            return None;
        }
        let mut best = MINUTE;
        for c in req.candidates {
            if let Some(d) = self.deployments.get_mut(c.deployment.0 as usize) {
                best = best.min(d.wait(req.est_tokens, now));
            }
        }
        Some(best.clamp(Duration::from_millis(1), MINUTE))
    }
}

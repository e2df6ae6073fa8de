//! Admission: [`Router::route`] plans a request and admits it on the first step of the plan that
//! has room, in one `&mut self` call; [`Router::admit_next`] admits a failover on a later step of
//! the same plan; [`Router::admit`] admits one step; [`Router::try_acquire`] admits on a bare
//! deployment, for callers without a plan.
//!
//! # Why a wait belongs to a step
//!
//! A full source may take a request beyond its in-flight limit, to wait in the upstream's own
//! queue, when the plan says so (see the `plan` module). That grant is the request's, not the
//! deployment's: it travels in the plan as [`Step::queued`], and only [`Router::admit`] of that
//! step honours it, after checking again that the source's queue is still within its bound
//! (`limit × (1 + max(source_wait, source_queue))` in flight). Anything else admitting on the
//! deployment (another request's step, [`Router::try_acquire`]) stops at the limit. A grant
//! kept on the router for "the next admission there" would let whichever request a gateway
//! admits next take it, beyond the limit and although its own plan granted no wait, whenever
//! the gateway lets go of the router between planning and admitting; and the request that
//! earned the wait would then be refused.
//!
//! [`Router::route`] also leaves no gap between the decision and the admission, so the headroom
//! the plan saw is the headroom it takes.
use std::time::Duration;

use rand::RngCore;

use super::usage::signed;
use super::{
    Admission, Demand, DeploymentIx, Plan, Reason, Rejection, RouteRequest, Router, Step, plan,
};

/// What a plan's step lets [`Router::acquire`] do beyond a bare admission.
#[derive(Debug, Clone, Copy, Default)]
struct Grant {
    /// The step was granted a wait in the source ([`Step::queued`]).
    queue: bool,
    /// The step takes the request out of its source region, so the deployment's reserve for
    /// its own region applies.
    spill: bool,
}

impl Grant {
    /// A plan's steps out of the source are spills; a step granted a wait is either the
    /// source's own or a mid-stream continuation's (every step of which may wait), and a
    /// continuation, finishing an answer already under way, is not held to the reserve.
    fn of(step: &Step) -> Self {
        Grant {
            queue: step.queued,
            spill: step.reason != Reason::Local && !step.queued,
        }
    }
}

/// A plan and the admission on its first step that had room (`None`: no step had; the plan's
/// `retry_after`, if any, says when to try again).
#[derive(Debug)]
pub struct Routed {
    pub plan: Plan,
    /// The index of the admitted step in `plan.steps`, and its admission.
    pub first: Option<(usize, Admission)>,
}

impl Router {
    /// Route one request: record it in the retry budget ([`Router::record_request`]), plan it
    /// ([`Router::plan`]) and admit it on the first step of the plan that admits it now
    /// ([`Router::admit_next`] from step 0), all in one call, so nothing can come between.
    pub fn route(
        &mut self,
        req: &RouteRequest<'_>,
        now: Duration,
        rng: &mut dyn RngCore,
    ) -> Routed {
        self.record_request(now);
        let plan = self.plan(req, now, rng);
        let demand = Demand {
            est_tokens: req.est_tokens,
            input_tokens: req.input_tokens,
        };
        let first = self.admit_next(&plan, 0, demand, now);
        Routed { plan, first }
    }

    /// Admit the request on the first step of `plan` at or after `from` that admits it now
    /// ([`Router::admit`]); its index and the admission. For failover: `from` is the step after
    /// the one that failed (take a retry from [`Router::try_retry`] first).
    ///
    /// With the plan's prefix blocks, each step is admitted with the prompt tokens its cache is
    /// expected to hold, so that what the deployment learns (prefill rate, when its requests
    /// end) is about the tokens it prefills, and the one admitted is expected to hold the
    /// prompt's blocks from now on: after a failover too, where the prompt is prefilled again.
    pub fn admit_next(
        &mut self,
        plan: &Plan,
        from: usize,
        demand: impl Into<Demand>,
        now: Duration,
    ) -> Option<(usize, Admission)> {
        let demand = demand.into();
        let admitted = plan.steps.iter().enumerate().skip(from).find_map(|(i, s)| {
            let cached =
                self.cached_tokens_of(s.deployment, &plan.prefix, demand.input_tokens, now);
            self.acquire(s.deployment, demand, Grant::of(s), cached, now)
                .ok()
                .map(|a| (i, a))
        });
        if let Some((i, _)) = &admitted
            && !plan.prefix.is_empty()
        {
            self.record_prefix(plan.steps[*i].deployment, &plan.prefix, now);
        }
        admitted
    }

    /// Admit a request on a step of its own plan: as [`Router::try_acquire`] on
    /// `step.deployment`, except that when the deployment is at its in-flight limit a step
    /// granted a wait in the source ([`Step::queued`]) is admitted beyond it, to wait
    /// ([`Admission::queued`]), while the queue there is still within its bound now.
    pub fn admit(
        &mut self,
        step: &Step,
        demand: impl Into<Demand>,
        now: Duration,
    ) -> Result<Admission, Rejection> {
        self.acquire(step.deployment, demand.into(), Grant::of(step), 0, now)
    }

    /// Admit a request on a deployment: checks health/cooldown, in-flight vs. adaptive limit,
    /// RPM and TPM headroom, and takes them. Never beyond the limit: a wait in the source is
    /// granted by a plan, to its step ([`Router::admit`]).
    pub fn try_acquire(
        &mut self,
        d: DeploymentIx,
        demand: impl Into<Demand>,
        now: Duration,
    ) -> Result<Admission, Rejection> {
        self.acquire(d, demand.into(), Grant::default(), 0, now)
    }

    /// Admit on `d`; beyond its in-flight limit only when `grant.queue` and the queue there is
    /// within the longer of the two waits a plan may grant; for a request from another region
    /// (`grant.spill`), only while `d` has more free slots than it keeps for its own
    /// (`spill_reserve`, checked again as the plan did). `cached_tokens` of the input are
    /// expected in its prefix cache.
    fn acquire(
        &mut self,
        d: DeploymentIx,
        demand: Demand,
        grant: Grant,
        cached_tokens: u64,
        now: Duration,
    ) -> Result<Admission, Rejection> {
        let Demand {
            est_tokens,
            input_tokens,
        } = demand;
        let source_queue = self.cfg.source_queue.max(self.cfg.source_wait);
        let dep = self
            .deployments
            .get_mut(d.0 as usize)
            .ok_or(Rejection::Unavailable)?;
        if grant.spill && plan::held_in_reserve(&self.cfg, dep) {
            return Err(Rejection::InFlight);
        }
        let queued = match dep.check(est_tokens, now) {
            Err(Rejection::InFlight)
                if grant.queue && plan::can_queue(dep, est_tokens, now, source_queue) =>
            {
                true
            }
            r => {
                r?;
                false
            }
        };
        dep.in_flight += 1;
        dep.window.add(1, signed(est_tokens), now);
        if let Some(b) = dep.rpm.as_mut() {
            b.force_take(1, now); // checked above: never goes into debt here
        }
        if let Some(b) = dep.tpm.as_mut() {
            b.force_take(est_tokens, now);
        }
        dep.health.on_attempt(now);
        let a = Admission {
            deployment: d,
            est_tokens,
            input_tokens,
            cached_tokens: cached_tokens.min(input_tokens),
            reported_cached: None,
            acquired_at: now,
            queued,
        };
        dep.on_admit(&a);
        Ok(a)
    }
}

impl Admission {
    /// The upstream's own count of the prompt tokens it read from its prefix cache (OpenAI's
    /// `usage.prompt_tokens_details.cached_tokens`): the deployment then learns its prefill rate
    /// from the tokens it really prefilled, whether or not the estimate was right.
    pub fn report_cached(&mut self, cached_tokens: u64) {
        self.reported_cached = Some(cached_tokens.min(self.input_tokens));
    }

    /// The input tokens the upstream prefilled: the reported count's complement when there is
    /// one, else the estimate's.
    pub fn prefilled_tokens(&self) -> u64 {
        self.input_tokens - self.reported_cached.unwrap_or(self.cached_tokens)
    }
}

//! Per-deployment state and the checks the planner and the admission share.
//!
//! Besides this instance's own state, a deployment carries the [`Load`] of the *other* gateway
//! instances (set by [`Router::set_remote_load`](super::Router::set_remote_load) when state is
//! shared) and a [`UsageWindow`](super::usage::UsageWindow) of this instance's own requests
//! and tokens over the last 60 s, which is what it publishes. The checks then hold against the
//! global figures:
//!
//! * in flight: `local + remote < limit` (the adaptive limit, at most `max_in_flight`);
//! * RPM / TPM: the local bucket has room, and, when the other instances used any, `local
//!   window + remote window + this request <= limit` over the sliding 60 s.
//!
//! The remote figures are as fresh as the last sync, so the global bounds are eventually
//! consistent; the gateway's `shared_deployments` module states by how much they can be exceeded.
use std::time::Duration;

use super::prefill::PrefillLine;
use super::usage::UsageWindow;
use super::{Admission, DeploymentSpec, Load, MINUTE, Rejection};
use crate::{AdaptiveLimit, Health, TokenBucket};

/// EWMA weight of one request in the workload's shape (hold time, prefill per token): slow,
/// because single requests vary by two orders of magnitude and the shape changes slowly.
const SHAPE_ALPHA: f64 = 1.0 / 32.0;

/// The share of a request's expected TTFT by the best spill that a wait in its source may add
/// (see [`Deployment::wait_fits`]). Regions of one geography differ by tens of ms of RTT, a few
/// per cent of a long prompt's TTFT: a wait within that spread keeps the request local at a
/// cost of the same order as where it is served, and keeps the TTFT tail within that share of
/// a router that never waits.
pub(super) const WAIT_COST: f64 = 0.05;

/// EWMA weight of one report in [`Deployment::cache_trust`]: fast, since a deployment that
/// does not cache at all should stop drawing requests for its cache within a dozen or so
/// (after 20 reports of nothing, 7 % of the estimate is left).
const TRUST_ALPHA: f64 = 1.0 / 8.0;

/// How much the longest prompt seen ([`Deployment::longest_input`]) fades per request learned
/// from: after about 700 requests without one as long, half of it is remembered.
const LONGEST_FADE: f64 = 0.999;

/// How long a deployment that refused a request sent to wait in its queue (429) gets no more:
/// its engine does not queue beyond the limit (a hard cap), or its queue was full. After this
/// one request probes again.
pub(super) const QUEUE_REFUSAL_BACKOFF: Duration = Duration::from_secs(60);

/// Per-deployment state.
#[derive(Debug, Clone)]
pub(super) struct Deployment {
    pub(super) spec: DeploymentSpec,
    pub(super) health: Health,
    /// No new request before this (from an upstream 429's Retry-After).
    pub(super) cooldown_until: Duration,
    pub(super) in_flight: u32,
    pub(super) limit: AdaptiveLimit,
    pub(super) rpm: Option<TokenBucket>,
    pub(super) tpm: Option<TokenBucket>,
    /// EWMA time to first token, in nanoseconds, as seen by the gateway (includes the RTT).
    pub(super) ewma_ttft: Option<f64>,
    /// EWMA time per output token, in nanoseconds.
    pub(super) ewma_tpot: Option<f64>,
    /// The workload's shape here, slow EWMAs over the successful requests that found a free
    /// slot: how long one holds its slot (ns), and, over those with a known input, their TTFTs
    /// as a line in the prompt's length (streams only; see the `prefill` module).
    pub(super) hold: Option<f64>,
    pub(super) prefill: Option<PrefillLine>,
    /// The longest prompt (input tokens) among the requests learned from, fading (see
    /// [`LONGEST_FADE`]): with the prefill rate, the TTFT of the longest prompts served
    /// without a wait, which is the tail a wait must not reach.
    pub(super) longest_input: f64,
    /// How far the upstream's own cache reports bear the prefix estimate out here: a fast
    /// EWMA, over the successful requests expected to find cached tokens whose upstream
    /// reported its count, of reported ÷ expected (at most 1). It scales the prefill the
    /// estimate says this cache saves ([`Deployment::cache_trust`]). 1 (trusted) until such
    /// a report.
    cache_trust: f64,
    /// This instance's requests holding a slot here (admitted within the limit): when each
    /// took it, its input tokens and its expected output tokens (`est_tokens - input`, the
    /// `max_tokens` it may generate), so that [`Deployment::expected_wait`] can tell when the
    /// slots free. Queued admissions are not here: when they start is not known.
    pub(super) running: Vec<Running>,
    /// Scratch for [`Deployment::expected_wait`].
    remaining: Vec<f64>,
    /// No request is sent to wait in this deployment's queue before this (see
    /// [`QUEUE_REFUSAL_BACKOFF`]).
    pub(super) no_queue_until: Duration,
    /// The other gateway instances' in-flight requests and 60 s usage (zero when not shared).
    pub(super) remote: Load,
    /// This instance's requests and tokens over the last 60 s.
    pub(super) window: UsageWindow,
}

impl Deployment {
    pub(super) fn new(spec: DeploymentSpec) -> Self {
        Deployment {
            health: Health::new(),
            cooldown_until: Duration::ZERO,
            in_flight: 0,
            limit: AdaptiveLimit::new(spec.max_in_flight),
            rpm: spec
                .rpm
                .map(|c| TokenBucket::new(u64::from(c), MINUTE, Duration::ZERO)),
            tpm: spec
                .tpm
                .map(|c| TokenBucket::new(c, MINUTE, Duration::ZERO)),
            ewma_ttft: None,
            ewma_tpot: None,
            hold: None,
            prefill: None,
            longest_input: 0.0,
            cache_trust: 1.0,
            running: Vec::new(),
            remaining: Vec::new(),
            no_queue_until: Duration::ZERO,
            remote: Load::default(),
            window: UsageWindow::default(),
            spec,
        }
    }

    /// In flight here and at the other instances.
    pub(super) fn total_in_flight(&self) -> u32 {
        self.in_flight.saturating_add(self.remote.in_flight)
    }

    /// The sliding-window checks against the other instances' usage: (RPM refuses one more
    /// request, TPM refuses `est_tokens` more). Both false while nothing is shared.
    fn over_remote(&mut self, est_tokens: u64, now: Duration) -> (bool, bool) {
        let (requests, tokens) = self.window.totals(now);
        let over = |limit: Option<u64>, local: u64, remote: u64, need: u64| {
            remote > 0
                && limit.is_some_and(|l| local.saturating_add(remote).saturating_add(need) > l)
        };
        (
            over(
                self.spec.rpm.map(u64::from),
                requests,
                self.remote.requests,
                1,
            ),
            over(self.spec.tpm, tokens, self.remote.tokens, est_tokens),
        )
    }

    /// Headroom check: health, cooldown, in-flight vs. adaptive limit, RPM, TPM (in that order).
    pub(super) fn check(&mut self, est_tokens: u64, now: Duration) -> Result<(), Rejection> {
        if !self.health.is_available(now) || now < self.cooldown_until {
            return Err(Rejection::Unavailable);
        }
        if self.total_in_flight() >= self.limit.current() {
            return Err(Rejection::InFlight);
        }
        let (rpm_over, tpm_over) = self.over_remote(est_tokens, now);
        if rpm_over || self.rpm.as_mut().is_some_and(|b| b.available(now) < 1) {
            Err(Rejection::Rpm)
        } else if tpm_over
            || self
                .tpm
                .as_mut()
                .is_some_and(|b| b.available(now) < est_tokens)
        {
            Err(Rejection::Tpm)
        } else {
            Ok(())
        }
    }

    /// Slots free under the current limit (this instance's and the others' requests counted).
    pub(super) fn free_slots(&self) -> u32 {
        self.limit.current().saturating_sub(self.total_in_flight())
    }

    /// When every obstacle to admitting `est_tokens` is expected to be gone (from now).
    pub(super) fn wait(&mut self, est_tokens: u64, now: Duration) -> Duration {
        let mut wait = self.cooldown_until.saturating_sub(now);
        if let Some(until) = self.health.ejected_until(now) {
            wait = wait.max(until.saturating_sub(now));
        }
        let (rpm_over, tpm_over) = self.over_remote(est_tokens, now);
        if self.health.is_probing()
            || self.total_in_flight() >= self.limit.current()
            || rpm_over
            || tpm_over
        {
            // Bound by requests in flight (or other instances' usage): we cannot know when they
            // end; guess a second.
            wait = wait.max(Duration::from_secs(1));
        }
        if let Some(b) = self.rpm.as_mut() {
            wait = wait.max(b.time_until(1, now));
        }
        if let Some(b) = self.tpm.as_mut() {
            wait = wait.max(b.time_until(est_tokens, now));
        }
        wait
    }

    /// Learn the workload's shape from a successful attempt (see [`Deployment::wait_fits`]).
    /// The prefill time only from a stream of two tokens or more (`tpot` known): a non-streamed
    /// answer's "TTFT" is its whole generation.
    pub(super) fn learn_shape(
        &mut self,
        a: &Admission,
        ttft: Duration,
        tpot: Option<Duration>,
        now: Duration,
    ) {
        if a.queued {
            return; // its time in flight and its TTFT include its wait in the queue
        }
        ewma(
            &mut self.hold,
            now.saturating_sub(a.acquired_at),
            SHAPE_ALPHA,
        );
        let prefilled = a.prefilled_tokens();
        let n = prefilled as f64;
        self.longest_input = n.max(self.longest_input * LONGEST_FADE);
        if prefilled > 0 && tpot.is_some() {
            let t = ttft.as_nanos() as f64;
            match self.prefill.as_mut() {
                Some(line) => line.learn(n, t, SHAPE_ALPHA),
                None => self.prefill = Some(PrefillLine::first(n, t)),
            }
        }
    }

    /// Learn from a successful attempt's cache report how far the prefix estimate holds here
    /// (see `cache_trust`). Nothing is learned from a request expected to find nothing cached
    /// (what it found is no test of the estimate) or from an upstream that does not report.
    pub(super) fn learn_cache(&mut self, a: &Admission) {
        let Some(reported) = a.reported_cached else {
            return;
        };
        if a.cached_tokens == 0 {
            return;
        }
        let borne_out = (reported as f64 / a.cached_tokens as f64).min(1.0);
        self.cache_trust += TRUST_ALPHA * (borne_out - self.cache_trust);
    }

    /// The share of the estimated cached tokens this deployment's reports bear out (1 before
    /// any report): an engine without prefix caching, or whose cache keeps less than the
    /// model of it says, reports fewer, and the saving it is credited with shrinks with them.
    pub(super) fn cache_trust(&self) -> f64 {
        self.cache_trust
    }

    /// Note an admission: one within the limit holds a slot from now (see `running`).
    pub(super) fn on_admit(&mut self, a: &Admission) {
        if !a.queued {
            self.running.push(Running::of(a));
        }
    }

    /// Forget a released admission's slot (see `running`).
    pub(super) fn on_release(&mut self, a: &Admission) {
        if a.queued {
            return;
        }
        let r = Running::of(a);
        if let Some(i) = self.running.iter().position(|x| *x == r) {
            self.running.swap_remove(i);
        }
    }

    /// The expected wait (ns) for a slot of a request sent now to wait here, at the limit,
    /// behind the `waiting` requests queued already: the time until the `(waiting + 1)`-th of
    /// the running requests is expected to end, each at `acquired + input × prefill per token
    /// + output × TPOT` (the learned rates, the prefill per token being the slope of the TTFT
    /// line, which leaves out the round trip and handling that hold no slot; one overdue by up
    /// to the mean TTFT or [`WAIT_COST`] of that ends now, one overdue by more a mean hold from
    /// now). Only this instance's
    /// requests are known: the k-th end among them is never earlier than among all, so the
    /// estimate errs long, and long outputs' `max_tokens` only make it longer. When fewer than
    /// `waiting + 1` are known, or TPOT is not learned, the mean rate of freeing slots stands
    /// in: `(waiting + 1) × mean hold / limit`. `None` while nothing was learned.
    pub(super) fn expected_wait(&mut self, now: Duration) -> Option<f64> {
        let (Some(hold), Some(line)) = (self.hold, self.prefill) else {
            return None;
        };
        let (ttft, input) = (line.mean_ttft(), line.mean_input());
        let limit = self.limit.current().max(1);
        let k = self.total_in_flight().saturating_sub(limit) as usize + 1;
        let mean = k as f64 * hold / f64::from(limit);
        let Some(tpot) = self.ewma_tpot.filter(|_| input > 0.0) else {
            return Some(mean);
        };
        // `running` is this instance's share of `in_flight`; more would be a release of an
        // admission never made, which must not leave phantom slots to wait for.
        if self.running.len() < k || self.running.len() > self.in_flight as usize {
            return Some(mean);
        }
        // The slope, not the ratio: a slot is held for the prefill and the decode, not for the
        // round trip and handling the measured TTFT also holds.
        let per_input = line.per_token();
        let now = now.as_nanos() as f64;
        self.remaining.clear();
        self.remaining.extend(self.running.iter().map(|r| {
            let took = r.acquired_at.as_nanos() as f64;
            let expected = r.input as f64 * per_input + r.output as f64 * tpot;
            let left = took + expected - now;
            // Overdue by a little (the release is on its way): it ends now. By more than the
            // mean TTFT and `WAIT_COST` of its expected time: its shape is not what was
            // learned (a stall, a slow upstream), and it ends, for all we know, a mean hold
            // from now.
            if left >= 0.0 {
                left
            } else if -left <= (WAIT_COST * expected).max(ttft) {
                0.0
            } else {
                hold
            }
        }));
        let (_, kth, _) = self.remaining.select_nth_unstable_by(k - 1, f64::total_cmp);
        Some(*kth)
    }

    /// Whether a request of `input_tokens` should wait here, at the limit, for a slot rather
    /// than spill, by the expected TTFT of each option: waiting, `wait + prefill` (see
    /// [`Deployment::expected_wait`]); spilling to the best other region with a free slot,
    /// `rtt + prefill` (`spill_rtt`; the deployments of a model are taken to prefill alike, and
    /// one with a free slot has no wait). It waits
    ///
    /// * when waiting costs at most [`WAIT_COST`] of the spill's TTFT, whatever its size: the
    ///   price of locality is then within the spread of TTFTs between regions; or
    /// * when its expected TTFT stays within `ttft_factor` × the source's mean TTFT *and* within
    ///   [`WAIT_COST`] of the tail, the TTFT the longest prompts see without waiting (prefill
    ///   rate × the longest prompt seen; an infinite factor lifts this bound too): a short
    ///   prompt may wait up to the typical request's TTFT, which moves
    ///   neither the median much nor the tail, while a long one, whose prefill is the tail
    ///   already, waits only by the first rule.
    ///
    /// No spill (`None`): only the second rule holds; beyond it the request is throttled, or
    /// waits by `source_queue` instead. True while nothing was learned (the queue-length bound
    /// still applies); an unknown input counts as the mean prefill.
    ///
    /// With cache affinity, each option's prefill is shorter by what its cache is expected to
    /// save (`saved`, ns: the source's; the spill's second field): a prompt whose prefix the
    /// source holds waits where a spill would prefill it all again.
    pub(super) fn wait_fits(
        &mut self,
        input_tokens: u64,
        now: Duration,
        spill: Option<(Duration, f64)>,
        saved: f64,
        ttft_factor: f64,
    ) -> bool {
        let Some(wait) = self.expected_wait(now) else {
            return true;
        };
        let Some(Prefill {
            prefill,
            ttft,
            tail,
        }) = self.prefill_of(input_tokens)
        else {
            return true;
        };
        let expected = wait + (prefill - saved).max(0.0);
        // Infinity lifts both bounds: waiting whatever the size is the operator's choice.
        let tail = tail * (1.0 + WAIT_COST);
        let typical =
            expected <= ttft_factor * ttft && (ttft_factor.is_infinite() || expected <= tail);
        let Some((rtt, spill_saved)) = spill else {
            return typical;
        };
        let spill_ttft = rtt.as_nanos() as f64 + (prefill - spill_saved).max(0.0);
        expected <= spill_ttft * (1.0 + WAIT_COST) || typical
    }

    /// The learned prefill of a prompt of `input_tokens` (the mean TTFT when unknown), once
    /// learned.
    pub(super) fn prefill_of(&self, input_tokens: u64) -> Option<Prefill> {
        let line = self.prefill?;
        let (ttft, input) = (line.mean_ttft(), line.mean_input());
        let per_input = line.ratio();
        let prefill = if input_tokens > 0 && input > 0.0 {
            per_input * input_tokens as f64
        } else {
            ttft
        };
        let tail = (per_input * self.longest_input).max(ttft);
        Some(Prefill {
            prefill,
            ttft,
            tail,
        })
    }

    /// Prefill time per input token (ns), once learned.
    pub(super) fn prefill_ns_per_token(&self) -> Option<f64> {
        self.prefill
            .filter(|line| line.mean_input() > 0.0)
            .map(|line| line.ratio())
    }

    /// Expected time to first token from the source (ns), and the utilisation behind it.
    pub(super) fn score(&self, rtt: Duration, prior_ns: f64) -> (f64, f64) {
        let rtt = rtt.as_nanos() as f64;
        let service = self.ewma_ttft.map_or(prior_ns, |t| (t - rtt).max(0.0));
        let util = f64::from(self.total_in_flight()) / f64::from(self.limit.current().max(1));
        (rtt + service * (1.0 + util), util)
    }
}

/// What [`Deployment::prefill_of`] expects of a prompt, in ns.
pub(super) struct Prefill {
    /// The prompt's own prefill.
    pub(super) prefill: f64,
    /// The mean TTFT.
    pub(super) ttft: f64,
    /// The TTFT of the longest prompt seen: the tail a wait must not reach.
    pub(super) tail: f64,
}

/// A request holding a slot: what [`Deployment::expected_wait`] needs to tell when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Running {
    acquired_at: Duration,
    input: u64,
    output: u64,
}

impl Running {
    fn of(a: &Admission) -> Self {
        Running {
            acquired_at: a.acquired_at,
            input: a.input_tokens - a.cached_tokens,
            output: a.est_tokens.saturating_sub(a.input_tokens),
        }
    }
}

/// An eligible candidate while planning.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Position in `req.candidates`.
    pub(super) pos: usize,
    /// Expected TTFT (ns): `rtt + service × (1 + util)`, less `saved`.
    pub(super) score: f64,
    pub(super) util: f64,
    pub(super) local: bool,
    /// Prefill time (ns) this deployment's prefix cache is expected to save the request (0 when
    /// cache-blind; see the `cache` module).
    pub(super) saved: f64,
}

pub(super) fn ewma(slot: &mut Option<f64>, x: Duration, alpha: f64) {
    let x = x.as_nanos() as f64;
    *slot = Some(match *slot {
        Some(prev) => prev + alpha * (x - prev),
        None => x,
    });
}

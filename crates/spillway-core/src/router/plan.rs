//! Building the plan: eligibility, source first, a short wait in the source, expected-TTFT
//! scoring with p2c among near-equals, and a bounded wait in the source instead of a 429.
//!
//! # The Spillway policy
//!
//! 1. **Source first.** The source deployment takes the request whenever it has headroom
//!    (circuit closed, no cooldown, `in_flight < limit`, RPM/TPM left). Nothing else is weighed:
//!    an in-region request has the shortest round trip and keeps the data where it was sent.
//! 2. **A short wait in the source before a spill** (on by default). A full source still takes the
//!    request, to wait in its engine's own queue (vLLM, SGLang and TGI all queue beyond their
//!    running batch), when its queue is short, fewer than `limit × (1 + source_wait)` in flight
//!    (0.2: three waiting behind 16 slots), and the expected TTFT of waiting is good enough
//!    against that of the other option, a spill to the nearest region with a free slot:
//!    * **wait**: `W + prefill`, where `W` is when the `(waiting + 1)`-th of the source's
//!      running requests is expected to end, each at `acquired + input × prefill per token +
//!      max_tokens × TPOT` (learned rates; see `Deployment::expected_wait`);
//!    * **spill**: `rtt + prefill` (a slot is free there, and the deployments of one model
//!      prefill alike).
//!
//!    It waits when waiting costs at most 5 % (`WAIT_COST`) over the spill's TTFT, whatever its
//!    size (the spread of TTFTs between the regions of one geography); or when its expected TTFT
//!    in the source stays within `source_wait_ttft` × the source's mean TTFT (default 1.5) *and*
//!    below the tail, the TTFT the longest prompt seen gets without waiting: a short prompt may
//!    afford a wait, and a long one, whose prefill is the tail already, may not. No region with a
//!    free slot: only the second bound applies. The regions with
//!    headroom follow in the plan, for failover if the source refuses. An upstream that refuses
//!    a request sent to wait (429: its limit is a hard cap, or its queue is full) is not asked
//!    to queue again for a minute, and that refusal costs it no cooldown, no lower limit and no
//!    health: within its limit it is fine. `source_wait = 0` turns the step off.
//! 3. **Spill by expected TTFT, p2c among near-equals.** Otherwise the destinations with headroom
//!    are scored `rtt + service_ttft × (1 + in_flight / limit)` and two near-equals are drawn,
//!    the less utilised wins (see the [crate docs](crate)). Spilling to the emptiest region is
//!    what keeps a spill from *cascading*: a spilled request that takes another region's last
//!    slot makes that region's own next request spill too. With `spill_reserve = N` a region
//!    with N or fewer free slots is not a destination for another region's request at all
//!    (nor for its failover or a cache move; [`Router::admit`] checks it again): its last
//!    slots are its own traffic's. Unset, N is 1 on a deployment of
//!    [`AUTO_RESERVE_MIN_SLOTS`] (16) slots or more and 0 on a smaller one.
//! 4. **Wait in the source rather than throttle.** When no destination has headroom, a request
//!    that step 2 did not let wait may still wait in the source, within `source_wait`'s queue
//!    bound: on the region's tail budget, 1 % of its requests by default (`tail_budget`; see
//!    the `tail` module), and, opt-in, any request while the source has fewer than
//!    `limit × (1 + source_queue)` in flight. `source_queue` is off by default: beyond
//!    `source_wait`'s short queue, `max_in_flight` is the operator's declared capacity, and the
//!    request is throttled (429) as DESIGN §3 says. Only the source queues: it costs no round
//!    trip, and a wait in another region would hold a slot that region's own traffic needs
//!    next.
//!
//! A wait in the source is granted to the plan's step ([`Step::queued`]) and honoured only by
//! [`Router::admit`] of that step, which checks the queue's bound again then; nothing else
//! admits beyond the limit, so the bound holds, and the wait stays the request's, however the
//! gateway interleaves requests ([`Router::route`] plans and admits in one call). The baselines
//! never queue.
//!
//! # Why
//!
//! On the Azure code trace replayed into three regions of 16 slots (`spillway bench`, see
//! `docs/BENCHMARKS.md`), source-first-then-spill serves locally every request that finds its
//! source with a free slot, and spilling to the emptiest region causes no cascade: in a
//! discrete-event replay of the same arrivals its spill share (14.2 %) equals the share the
//! `in-region` policy throttles. Without waiting in the source, no policy keeps more than
//! 85.8 % local there. Waiting trades TTFT for locality: a slot frees every `service / limit`
//! (about 60 ms at 16 slots) on average, longer in a burst, against a 12–70 ms round trip.
//! Bounded by queue length alone, waits of up to 1, 2, 4, 6 and 8 requests behind 16 slots kept
//! 87.4, 88.5, 90.1, 91.3 and 92.0 % local in the replay, with TTFT p50 386–445 ms and p99
//! 1,094–1,428 ms (least-loaded: 397 and 1,094 ms): the p99 grew because long prompts, whose
//! prefill is the tail (a 4,096-token prompt takes 1,024 ms), waited too. A bound on the
//! expected TTFT keeps them out of the queue.
//!
//! **Why the wait is read from the running requests.** The first form of that bound took the
//! wait as the mean rate of freeing slots, `(waiting + 1) × mean hold / limit`. On traces of
//! long requests (most prompts at the bench's 4,096-token cap, ~8 s holds, 17–31 slots) that is
//! 250 ms a slot, the bound of 1.5 × the mean TTFT let capped prompts wait up to ~500 ms, and
//! their real waits (memoryless, p99 1.2–1.4 s) became the TTFT p99: 1,170 ms against 1,094
//! for least-loaded on the Mooncake trace and 1,796 against 1,094 on a long multi-turn trace
//! (`policy_replay`, bench sizing, 60 ms release lag; the bench saw +31 %). Reading when each
//! running request should end (its admission time, prompt and `max_tokens`, at the learned
//! rates) tells a slot that frees in 10 ms from one that frees in a second: the waits granted
//! on the Mooncake trace fell to p50 153 / p99 826 ms, its p99 TTFT to 1,114 ms at 90.5 %
//! local, and on the Azure traces the locality and tails held (code 93.2 % at p50 / p99
//! 373 / 1,074 ms; conversation 91.2 % at 261 / 1,036 ms, least-loaded 263 / 1,089 ms).
//! On a long multi-turn trace (`scripts/long_trace.py`) the p99 fell from 1,796 to 1,459 ms
//! at 93.5 % local, still above least-loaded's 1,094: there nearly every prompt is at the cap,
//! so every wait the mean-TTFT bound grants lands in the tail.
//!
//! **Why the tail bound and the 5 %.** A wait must not reach the tail: the mean-TTFT bound now
//! also stops at the TTFT of the longest prompt seen (prefill rate × its length), so a capped
//! prompt waits only by the comparison with a spill; and that comparison lets a wait cost up to
//! 5 % over the spill's TTFT (`WAIT_COST`), the spread of TTFTs between the regions of one
//! geography (12–70 ms of RTT against a 1 s prefill), rather than nothing. Strict (`W ≤ rtt`)
//! with the tail bound, locality fell to 89.2–89.7 % on the Mooncake and long traces; at 5 % the
//! replay meets the bars on the Azure code, Azure conversation, Mooncake and long traces
//! (locality 93.4 / 91.4 / 90.4 / 90.7 %, TTFT p99 1,074 / 1,056 / 1,094 / 1,094 ms against the
//! best peer's 1,094 / 1,089 / 1,094 / 1,094, p50 at or below theirs, goodput above); at 10 %
//! the p99 rose to 1.03× on the long traces. `max_tokens` bounds the output, so the predicted
//! end is late rather than early when the answer is shorter: the error keeps requests from
//! waiting, never makes them wait longer. Two more long traces generated with other seeds and
//! sizes, not used to choose 5 %, kept the tail and goodput but 89.5 and 89.1 % local: with
//! every prompt at the cap, more locality costs tail (`docs/BENCHMARKS.md`).
//! A running request overdue by more than the mean TTFT is expected a mean hold from now
//! rather than at once: taken to be ending, a stalled stream (or one whose end the router has
//! not heard of) kept requests waiting behind it, which the replay, hearing of every end on
//! time, did not show and the bench did (Mooncake p99 1.06× before, 1.02× after).
//!
//! **Why a reserve, and why one slot by default.** Spilling to the emptiest region cannot
//! stop the cascade when every region is nearly full: on the long traces of `docs/BENCHMARKS.md`
//! 12.7 % of requests leave their source without waits where a source alone refuses 9.1 %, so
//! the spills each region takes in cost 3.7 points of locality. Reserving slots against
//! overflow (trunk reservation, as telephone networks protect direct calls from alternate-routed
//! ones) stops it: a spill either finds a region with slots to spare or does not leave, and
//! keeping the last slot won back 1.3–2.1 points on those traces in the replay at the peers'
//! p99. What does not leave waits or is refused: alone, the reserve was paid in goodput (−0.2
//! to −0.6 % where Spillway had no margin over the baselines), and letting all those spills
//! wait (`source_queue`) paid in the tail (p99 1.4–2.4× theirs). The tail budget (see the
//! `tail` module) lets 1 % of requests wait, which the 99th percentile does not see, and with
//! it one reserved slot served as many requests as no reserve did, so the default keeps one
//! slot on a deployment of [`AUTO_RESERVE_MIN_SLOTS`] or more (17 to 49 were measured); on a
//! smaller one a slot is too large a share of what it lends.
//!
//! Step 2 is on
//! by default (`source_wait = 0.2`): locality is what a cross-region router promises, the
//! cost is a few ms of median TTFT, and an engine that does not queue is detected by its first
//! refusal. Step 4 serves requests that would otherwise be throttled, for an engine that
//! really queues beyond `max_in_flight`; it is off by default because a deployment whose limit
//! is a hard cap would answer those with its own 429s.
use std::time::Duration;

use rand::{Rng, RngCore};

use super::config::AUTO_RESERVE_MIN_SLOTS;
use super::deployment::{Deployment, Entry};
use super::{MINUTE, Plan, Policy, Reason, Rejection, RouteRequest, Router, RouterConfig, Step};

/// What the scan of the candidates found besides the ones with headroom.
struct Scan {
    /// The source is ejected or cooling down.
    source_unhealthy: bool,
    /// The source, when it is at its limit (Spillway only): its position, whether its queue is
    /// within `source_wait` (a wait rather than a spill, if its expected TTFT says so) and
    /// within `source_queue` (a wait rather than a 429).
    source_full: Option<(usize, bool, bool)>,
    /// A destination had a free slot that it keeps for its own region (`spill_reserve`).
    reserved: bool,
}

impl Router {
    /// Build the ordered plan (does not admit: admit the step you use with [`Router::admit`],
    /// or plan and admit in one call with [`Router::route`]).
    pub fn plan(&mut self, req: &RouteRequest<'_>, now: Duration, rng: &mut dyn RngCore) -> Plan {
        let mut eligible = std::mem::take(&mut self.scratch);
        eligible.clear();
        let scan = self.scan(req, now, &mut eligible);
        self.earn_tail_wait(req.source);
        // Wait in the source: rather than spill while waiting is expected to be about as fast
        // (step 2), and rather than be throttled while its queue is within `source_queue` or a
        // wait is banked in the tail budget (step 4).
        let queue_at = scan.source_full.and_then(|(pos, may_wait, may_queue)| {
            let short = may_wait && self.wait_is_short(req, pos, &eligible, now);
            let queue = may_queue && eligible.is_empty();
            // Nowhere else to go and no wait by the comparisons or `source_queue`: a wait on
            // the tail budget (asked last, since granting one spends it).
            let budget = may_wait && eligible.is_empty();
            (short || queue || (budget && self.tail_wait(req, pos, now))).then_some(pos)
        });
        let plan = if eligible.is_empty() && queue_at.is_none() {
            Plan {
                steps: Vec::new(),
                retry_after: self.retry_after(req, now),
                held_back: scan.reserved,
                prefix: Vec::new(),
            }
        } else {
            let first = self.first_choice(req, &mut eligible, queue_at.is_some(), rng);
            // The source had headroom and the first step is elsewhere: Spillway's policy does
            // that only for a cache; the baselines ignore the source by design.
            let left_source_with_room =
                eligible.get(first).is_some_and(|e| !e.local) && eligible.iter().any(|e| e.local);
            let spill = if left_source_with_room && self.cfg.policy == Policy::Spillway {
                Reason::SpillCache
            } else if left_source_with_room {
                Reason::SpillBalance
            } else if scan.source_unhealthy {
                Reason::SpillUnhealthy
            } else {
                Reason::SpillCapacity
            };
            Plan {
                steps: self.steps(req, &eligible, first, queue_at, spill),
                retry_after: None,
                held_back: false,
                prefix: req.prefix.blocks.to_vec(),
            }
        };
        self.scratch = eligible;
        plan
    }

    /// Push every candidate with headroom onto `eligible` (each deployment once, with its score
    /// and utilisation), and note whether the source is unhealthy or full but may queue, and
    /// whether another region's free slot was held back for its own requests.
    fn scan(&mut self, req: &RouteRequest<'_>, now: Duration, eligible: &mut Vec<Entry>) -> Scan {
        let mut scan = Scan {
            source_unhealthy: false,
            source_full: None,
            reserved: false,
        };
        for (pos, c) in req.candidates.iter().enumerate() {
            let Some(d) = self.deployments.get_mut(c.deployment.0 as usize) else {
                continue;
            };
            let local = c.region == req.source;
            let reserved = !local && held_in_reserve(&self.cfg, d);
            match d.check(req.est_tokens, now) {
                // Free, but only for its own region's requests (`spill_reserve`).
                Ok(()) if reserved => scan.reserved = true,
                Ok(()) => {
                    let dup = eligible
                        .iter()
                        .any(|e| req.candidates[e.pos].deployment == c.deployment);
                    if !dup {
                        let (score, util) = d.score(c.rtt, self.prior_ns);
                        let saved = self.saved_ns(c.deployment, req, now);
                        eligible.push(Entry {
                            pos,
                            score: (score - saved).max(0.0),
                            util,
                            local,
                            saved,
                        });
                    }
                }
                Err(Rejection::Unavailable) if local => scan.source_unhealthy = true,
                Err(Rejection::InFlight) if local && self.cfg.policy == Policy::Spillway => {
                    let may_wait = can_queue(d, req.est_tokens, now, self.cfg.source_wait);
                    let may_queue = can_queue(d, req.est_tokens, now, self.cfg.source_queue);
                    if may_wait || may_queue {
                        scan.source_full.get_or_insert((pos, may_wait, may_queue));
                    }
                }
                Err(_) => {}
            }
        }
        scan
    }

    /// Whether the full source at `req.candidates[pos]` is expected to give the request its
    /// first token about as soon as a spill would (see [`Deployment::wait_fits`]): the spill is
    /// to the nearest region of `eligible` (the candidates with a free slot), if any.
    fn wait_is_short(
        &mut self,
        req: &RouteRequest<'_>,
        pos: usize,
        eligible: &[Entry],
        now: Duration,
    ) -> bool {
        // The spill with the earliest first token: the nearest, less what its cache saves.
        let spill = eligible
            .iter()
            .filter(|e| !e.local)
            .map(|e| (req.candidates[e.pos].rtt, e.saved))
            .min_by(|a, b| (a.0.as_nanos() as f64 - a.1).total_cmp(&(b.0.as_nanos() as f64 - b.1)));
        let saved = self.saved_ns(req.candidates[pos].deployment, req, now);
        let factor = self.cfg.source_wait_ttft;
        let ix = req.candidates[pos].deployment.0 as usize;
        self.deployments
            .get_mut(ix)
            .is_some_and(|d| d.wait_fits(req.input_tokens, now, spill, saved, factor))
    }

    /// Order `eligible` for the policy and return the index of the first step among them
    /// (`usize::MAX` when the plan opens with a wait in the source instead).
    fn first_choice(
        &mut self,
        req: &RouteRequest<'_>,
        eligible: &mut [Entry],
        queue: bool,
        rng: &mut dyn RngCore,
    ) -> usize {
        eligible.sort_unstable_by(|a, b| a.score.total_cmp(&b.score).then(a.pos.cmp(&b.pos)));
        match self.cfg.policy {
            _ if queue => usize::MAX,
            Policy::Spillway => match eligible.iter().position(|e| e.local) {
                Some(i) => self.leave_source_for(req, eligible, i).unwrap_or(i),
                None => self.spill_choice(eligible, rng),
            },
            Policy::RoundRobin => {
                eligible.sort_unstable_by_key(|e| e.pos);
                self.rr = self.rr.wrapping_add(1);
                self.rr % eligible.len()
            }
            Policy::LeastLoaded => {
                eligible.sort_unstable_by(|a, b| a.util.total_cmp(&b.util).then(a.pos.cmp(&b.pos)));
                0
            }
        }
    }

    /// The plan's steps: the wait in the source at `queue_at` or `eligible[first]`, then the
    /// rest of `eligible` in order, up to `max_attempts` in all.
    fn steps(
        &self,
        req: &RouteRequest<'_>,
        eligible: &[Entry],
        first: usize,
        queue_at: Option<usize>,
        spill: Reason,
    ) -> Vec<Step> {
        let step = |e: &Entry| {
            let c = &req.candidates[e.pos];
            let reason = if e.local { Reason::Local } else { spill };
            Step {
                deployment: c.deployment,
                region: c.region,
                reason,
                queued: false,
            }
        };
        let n =
            (eligible.len() + usize::from(queue_at.is_some())).min(self.cfg.max_attempts.max(1));
        let mut steps = Vec::with_capacity(n);
        if let Some(pos) = queue_at {
            let c = &req.candidates[pos];
            steps.push(Step {
                deployment: c.deployment,
                region: c.region,
                reason: Reason::Local,
                queued: true,
            });
        } else {
            steps.push(step(&eligible[first]));
        }
        let rest = eligible.iter().enumerate().filter(|&(i, _)| i != first);
        steps.extend(rest.take(n - 1).map(|(_, e)| step(e)));
        steps
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
                let mut wait = d.wait(req.est_tokens, now);
                if c.region != req.source && held_in_reserve(&self.cfg, d) {
                    // Its free slots are its own region's until some of its requests end.
                    wait = wait.max(Duration::from_secs(1));
                }
                best = best.min(wait);
            }
        }
        Some(best.clamp(Duration::from_millis(1), MINUTE))
    }
}

/// Whether `d` keeps its free slots for its own region's requests (`spill_reserve`): a request
/// from another region may not take one (Spillway's policy only).
pub(super) fn held_in_reserve(cfg: &RouterConfig, d: &Deployment) -> bool {
    let reserve = match cfg.spill_reserve {
        Some(n) => n,
        None => u32::from(d.spec.max_in_flight >= AUTO_RESERVE_MIN_SLOTS),
    };
    cfg.policy == Policy::Spillway && reserve > 0 && d.free_slots() <= reserve
}

/// Whether `d`, at its in-flight limit, may take one more request into its upstream's waiting
/// queue: fewer than `limit × (1 + ratio)` in flight (this instance's and the others'), RPM
/// and TPM headroom in this instance's buckets, and no refusal of a queued request lately (see
/// [`Router::release`]). (Health and cooldown are checked before the limit, so a deployment
/// rejected for `InFlight` passed them.)
pub(super) fn can_queue(d: &mut Deployment, est_tokens: u64, now: Duration, ratio: f64) -> bool {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    let limit = d.limit.current();
    // `as` saturates; the extra room is at most the limit again.
    let extra = (f64::from(limit) * ratio).floor() as u32;
    d.total_in_flight() < limit.saturating_add(extra)
        && now >= d.no_queue_until
        && d.rpm.as_mut().is_none_or(|b| b.available(now) >= 1)
        && d.tpm
            .as_mut()
            .is_none_or(|b| b.available(now) >= est_tokens)
}

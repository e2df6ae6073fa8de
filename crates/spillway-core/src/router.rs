//! The routing decision: [`Router::route`] ranks the destinations into a [`Plan`] and admits the
//! request on the first that has room, [`Router::admit_next`] admits a failover further along
//! the plan, [`Router::release`] feeds each attempt's outcome back.
//!
//! Per deployment the router keeps its [`Health`](crate::Health) circuit, a cooldown (from an
//! upstream 429's `Retry-After`, 1 s when absent), the requests in flight against an
//! [`AdaptiveLimit`](crate::AdaptiveLimit) (started at the declared `max_in_flight`), RPM and TPM
//! [`TokenBucket`](crate::TokenBucket)s (60 s period) mirroring the upstream's own limits, and
//! EWMAs of time-to-first-token and time-per-output-token. One
//! [`RetryBudget`] is shared by all requests.
//!
//! A deployment has *headroom* when its circuit lets a request through, it is not cooling down,
//! `in_flight < limit`, and its buckets hold one request and the estimated tokens. The plan is
//! built only from candidates with headroom; see the [crate docs](crate) for the order.
//!
//! The lifecycle of one request, driven by the gateway (under its lock on the router, one call
//! at a time): route it, call the upstream, release; on a retryable failure, take a retry from
//! the budget and admit the next step of the same plan.
//!
//! ```
//! # use std::time::Duration;
//! # use rand::{SeedableRng, rngs::SmallRng};
//! # use spillway_core::*;
//! let spec = |r| DeploymentSpec { region: RegionIx(r), max_in_flight: 8, rpm: None, tpm: Some(10_000) };
//! let mut router = Router::new(RouterConfig::default(), vec![spec(0), spec(1)]);
//! let candidates = [
//!     Candidate { deployment: DeploymentIx(0), region: RegionIx(0), rtt: Duration::from_millis(1) },
//!     Candidate { deployment: DeploymentIx(1), region: RegionIx(1), rtt: Duration::from_millis(12) },
//! ];
//! let req = RouteRequest { source: RegionIx(0), candidates: &candidates, est_tokens: 500, input_tokens: 400, prefix: Prefix::NONE };
//! let (now, mut rng) = (Duration::ZERO, SmallRng::seed_from_u64(7));
//! router.record_request(now);
//! let plan = router.plan(&req, now, &mut rng);
//! assert_eq!(plan.steps[0].reason, Reason::Local);
//! let demand = Demand { est_tokens: req.est_tokens, input_tokens: req.input_tokens };
//! let admission = router.try_acquire(plan.steps[0].deployment, demand, now).unwrap();
//! // ... call upstream ...
//! let outcome = Outcome::Success { ttft: Duration::from_millis(80), tpot: None, tokens: 420 };
//! router.release(admission, outcome, now + Duration::from_millis(900));
//! ```
use std::time::Duration;

pub use self::config::{AUTO_RESERVE_MIN_SLOTS, Policy, RouterConfig};
use self::deployment::{Deployment, Entry, ewma};
pub use self::outcome::{FailureKind, Outcome};
pub use self::route::Routed;
pub use self::shared::{DeploymentEvent, Load};
use self::usage::signed;
use crate::RetryBudget;
use crate::prefix::{Prefix, PrefixIndex};

const MINUTE: Duration = Duration::from_secs(60);

/// Index of a region in the gateway's region table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionIx(pub u16);

/// Index of a deployment (one model in one region) in the router's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentIx(pub u32);

/// Declared capacity of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentSpec {
    pub region: RegionIx,
    /// Hard cap on concurrent requests; also the ceiling of the adaptive limit.
    pub max_in_flight: u32,
    /// Requests per minute, if limited.
    pub rpm: Option<u32>,
    /// Tokens per minute (input + output), if limited.
    pub tpm: Option<u64>,
}

/// One destination the request may go to: a deployment of the requested model in a region of
/// the profile's destination set for this source (already minus the tenant's denied regions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub deployment: DeploymentIx,
    pub region: RegionIx,
    /// Round-trip time from the source region to this destination.
    pub rtt: Duration,
}

#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    pub source: RegionIx,
    pub candidates: &'a [Candidate],
    /// Estimated tokens the request will consume (input + max_tokens x burndown).
    pub est_tokens: u64,
    /// Estimated input (prompt) tokens; 0 when unknown. Sizes the request's expected prefill
    /// for the wait in the source (see the `plan` module).
    pub input_tokens: u64,
    /// The prompt's prefix blocks and how its profile weighs where they are cached
    /// ([`Prefix::NONE`]: cache-blind; see the `cache` module).
    pub prefix: Prefix<'a>,
}

/// What one attempt asks of a deployment: the tokens it reserves (`est_tokens`, as in
/// [`RouteRequest`]) and its input tokens (0 when unknown), which the deployment's workload
/// shape is learned from. A bare `u64` is `est_tokens` with the input unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub est_tokens: u64,
    pub input_tokens: u64,
}

impl From<u64> for Demand {
    fn from(est_tokens: u64) -> Self {
        Demand {
            est_tokens,
            input_tokens: 0,
        }
    }
}

/// Why a step is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Served in the source region.
    Local,
    /// The source region lacked headroom (in-flight limit, RPM, TPM) or has no deployment.
    SpillCapacity,
    /// The source region is ejected (circuit open) or cooling down after a 429.
    SpillUnhealthy,
    /// The source had headroom, but another region of the set holds the prompt's prefix in
    /// its cache and is expected to answer sooner (cache affinity `on`).
    SpillCache,
    /// The source had headroom, but a baseline policy that ignores the source (round-robin,
    /// least-loaded) chose another region of the set.
    SpillBalance,
    /// Tried after a previous step failed with this kind.
    Failover(FailureKind),
    /// A continuation: the previous attempt broke with this kind after the client had part of
    /// a streamed answer, and this one continues it (mid-stream failover).
    Resume(FailureKind),
}

impl Reason {
    /// `local`, `spill:capacity`, `spill:unhealthy`, `spill:cache`, `spill:balance`,
    /// `failover:<kind>`, `resume:<kind>`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Local => "local",
            Reason::SpillCapacity => "spill:capacity",
            Reason::SpillUnhealthy => "spill:unhealthy",
            Reason::SpillCache => "spill:cache",
            Reason::SpillBalance => "spill:balance",
            Reason::Failover(k) => match k {
                FailureKind::Connect => "failover:connect",
                FailureKind::Timeout => "failover:timeout",
                FailureKind::Throttled { .. } => "failover:throttled",
                FailureKind::ServerError => "failover:server_error",
                FailureKind::ClientError => "failover:client_error",
                FailureKind::Cancelled => "failover:cancelled",
            },
            Reason::Resume(k) => match k {
                FailureKind::Connect => "resume:connect",
                FailureKind::Timeout => "resume:timeout",
                FailureKind::Throttled { .. } => "resume:throttled",
                FailureKind::ServerError => "resume:server_error",
                FailureKind::ClientError => "resume:client_error",
                FailureKind::Cancelled => "resume:cancelled",
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub deployment: DeploymentIx,
    pub region: RegionIx,
    pub reason: Reason,
    /// The plan granted this step a wait in the source: its deployment is at its in-flight
    /// limit, and [`Router::admit`] of this step (and nothing else) may admit the request
    /// beyond it, to wait in the upstream's queue, while that queue is still within its bound.
    /// Only a plan's first step, in the source, is ever granted one.
    pub queued: bool,
}

impl Step {
    /// This step as taken after the previous one failed with `kind` (for logs and metrics:
    /// a plan's later steps carry the spill reason they were ranked with, the gateway reports
    /// them as `failover:<kind>` when it actually falls over to them).
    pub fn after_failure(self, kind: FailureKind) -> Step {
        Step {
            reason: Reason::Failover(kind),
            ..self
        }
    }
}

/// An ordered plan: try `steps[0]`, on a retryable failure `steps[1]`, … Empty when nothing can
/// admit the request; then `retry_after` says when something is expected to have room.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub retry_after: Option<Duration>,
    /// No step because every destination with a free slot keeps it for its own region's
    /// requests (`spill_reserve`): refused for the reserve, not for a lack of slots.
    pub held_back: bool,
    /// The request's prefix blocks ([`Prefix::blocks`]; empty without a cache model): whichever
    /// step admits the request, a failover's too, is admitted with the prompt tokens its cache is
    /// expected to hold and then expected to hold them ([`Router::admit_next`]).
    pub prefix: Vec<u64>,
}

/// Proof that a deployment admitted a request; give it back to [`Router::release`].
#[derive(Debug)]
#[must_use]
pub struct Admission {
    pub deployment: DeploymentIx,
    pub est_tokens: u64,
    /// Input tokens of the request (0 when unknown).
    pub input_tokens: u64,
    /// Of `input_tokens`, those the deployment's prefix cache was expected to hold (see
    /// [`Prefix`]): not prefilled, so not part of what its prefill rate is learned from.
    pub cached_tokens: u64,
    /// Of `input_tokens`, those the upstream said it read from its cache
    /// ([`Admission::report_cached`], before [`Router::release`]): when set, what the prefill
    /// rate is learned from instead of the estimate `cached_tokens`.
    pub reported_cached: Option<u64>,
    /// When the slot was taken (how long it is held is learned on release).
    pub acquired_at: Duration,
    /// Admitted beyond the limit, to wait in the upstream's queue: its time in flight and its
    /// TTFT include that wait, so it teaches neither the hold time nor the prefill time.
    pub queued: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("deployment is ejected or cooling down")]
    Unavailable,
    #[error("deployment is at its concurrency limit")]
    InFlight,
    #[error("deployment is out of requests-per-minute")]
    Rpm,
    #[error("deployment is out of tokens-per-minute")]
    Tpm,
}

/// A read-only view of a deployment's state (metrics, dashboard, tests).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    pub in_flight: u32,
    pub limit: u32,
    pub healthy: bool,
    pub ejected_until: Option<Duration>,
    pub cooldown_until: Option<Duration>,
    pub ewma_ttft: Option<Duration>,
    pub ewma_tpot: Option<Duration>,
}

/// The routing policy for one gateway: deployment state and the global retry budget.
/// See the [crate docs](crate) for the algorithm.
#[derive(Debug, Clone)]
pub struct Router {
    cfg: RouterConfig,
    deployments: Vec<Deployment>,
    budget: RetryBudget,
    /// `cfg.ewma_alpha`, sanitised into (0, 1].
    alpha: f64,
    prior_ns: f64,
    /// Reused by `plan` so that planning allocates nothing but the returned steps.
    scratch: Vec<Entry>,
    /// The round-robin policy's counter.
    rr: usize,
    /// Health and cooldown changes for other instances (`None`: not recorded; see
    /// [`Router::record_events`]).
    events: Option<Vec<DeploymentEvent>>,
    /// Where prompt prefixes are expected to be cached (`None`: no deployment caches; see
    /// [`Router::set_prefix_cache`]).
    prefix: Option<PrefixIndex>,
    /// Cache affinity `on`: how many more moves each source region may make (`cache_min_locality`).
    moves: cache::MoveBudget,
    /// Waits each source region may take beyond step 2's comparisons (`tail_budget`).
    tail: tail::TailBudget,
}

impl Router {
    /// Buckets start full, limits at the declared maximum, circuits closed.
    pub fn new(cfg: RouterConfig, deployments: Vec<DeploymentSpec>) -> Self {
        let alpha = if cfg.ewma_alpha > 0.0 {
            cfg.ewma_alpha.min(1.0)
        } else {
            1.0
        };
        Router {
            budget: RetryBudget::new(cfg.retry_budget.clone(), Duration::ZERO),
            deployments: deployments.into_iter().map(Deployment::new).collect(),
            alpha,
            prior_ns: cfg.prior_service_ttft.as_nanos() as f64,
            scratch: Vec::with_capacity(16),
            rr: 0,
            events: None,
            prefix: None,
            moves: cache::MoveBudget::default(),
            tail: tail::TailBudget::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Charge `tokens` to a deployment's TPM after the fact: tokens an upstream produced for an
    /// attempt that then failed or was cancelled (a stream that broke or lost its client), which
    /// [`Router::release`] with a failure does not count.
    pub fn charge_tokens(&mut self, d: DeploymentIx, tokens: u64, now: Duration) {
        let Some(d) = self.deployments.get_mut(d.0 as usize) else {
            return;
        };
        d.window.add(0, signed(tokens), now);
        if let Some(b) = d.tpm.as_mut() {
            b.force_take(tokens, now);
        }
    }

    /// Give the admission back with the attempt's outcome: frees the in-flight slot, settles TPM
    /// to actual usage, feeds health, cooldown, adaptive limit and latency EWMAs. A 429 for a
    /// request admitted to wait beyond the limit ([`Admission::queued`]) only stops waiting
    /// there for [`QUEUE_REFUSAL_BACKOFF`](deployment::QUEUE_REFUSAL_BACKOFF): an upstream whose
    /// limit is a hard cap costs one refused attempt (the plan falls over to the next step) per
    /// minute, not a cooldown of its capacity.
    pub fn release(&mut self, admission: Admission, outcome: Outcome, now: Duration) {
        let alpha = self.alpha;
        let Some(d) = self.deployments.get_mut(admission.deployment.0 as usize) else {
            return;
        };
        d.in_flight = d.in_flight.saturating_sub(1);
        d.on_release(&admission);
        let est = admission.est_tokens;
        let before = (
            d.health.is_closed(),
            d.health.ejected_until(now),
            d.cooldown_until,
        );
        match outcome {
            Outcome::Success { ttft, tpot, tokens } => {
                d.health.on_success(now);
                d.limit.on_success();
                ewma(&mut d.ewma_ttft, ttft, alpha);
                if let Some(tpot) = tpot {
                    ewma(&mut d.ewma_tpot, tpot, alpha);
                }
                d.learn_shape(&admission, ttft, tpot, now);
                d.learn_cache(&admission);
                if let Some(b) = d.tpm.as_mut() {
                    if tokens < est {
                        b.refund(est - tokens, now);
                    } else {
                        b.force_take(tokens - est, now);
                    }
                }
            }
            Outcome::Failure(kind) => {
                // Nothing was served: the token reservation goes back; the request stays charged.
                if let Some(b) = d.tpm.as_mut() {
                    b.refund(est, now);
                }
                match kind {
                    // Sent beyond the limit to wait, and refused: the engine does not queue
                    // there (or its queue is full). That says nothing about its capacity
                    // within the limit, so no cooldown, no lower limit, no health failure;
                    // only no more waiting there for a while.
                    FailureKind::Throttled { .. } if admission.queued => {
                        d.no_queue_until = now.saturating_add(deployment::QUEUE_REFUSAL_BACKOFF);
                        d.health.on_neutral(now);
                    }
                    FailureKind::Throttled { retry_after } => {
                        let until =
                            now.saturating_add(retry_after.unwrap_or(Duration::from_secs(1)));
                        d.cooldown_until = d.cooldown_until.max(until);
                        d.limit.on_overload(&self.cfg.aimd);
                        d.health.on_failure(&self.cfg.health, now);
                    }
                    FailureKind::Timeout => {
                        d.limit.on_overload(&self.cfg.aimd);
                        d.health.on_failure(&self.cfg.health, now);
                    }
                    FailureKind::Connect | FailureKind::ServerError => {
                        d.health.on_failure(&self.cfg.health, now);
                    }
                    FailureKind::ClientError | FailureKind::Cancelled => d.health.on_neutral(now),
                }
            }
        }
        let tokens = match outcome {
            Outcome::Success { tokens, .. } => signed(tokens) - signed(est),
            Outcome::Failure(_) => -signed(est),
        };
        d.window.add(0, tokens, now);
        if let Some(events) = self.events.as_mut() {
            shared::note(events, admission.deployment, d, before, now);
        }
    }

    /// Record that a new request entered (deposits into the retry budget).
    pub fn record_request(&mut self, now: Duration) {
        self.budget.deposit(now);
    }

    /// Withdraw one retry from the global retry budget; false when the budget is empty.
    pub fn try_retry(&mut self, now: Duration) -> bool {
        self.budget.try_withdraw(now)
    }

    /// Retries left in the global budget (for metrics).
    pub fn retry_balance(&mut self, now: Duration) -> f64 {
        self.budget.balance(now)
    }

    pub fn view(&self, d: DeploymentIx, now: Duration) -> DeploymentView {
        let Some(d) = self.deployments.get(d.0 as usize) else {
            return DeploymentView {
                in_flight: 0,
                limit: 0,
                healthy: false,
                ejected_until: None,
                cooldown_until: None,
                ewma_ttft: None,
                ewma_tpot: None,
            };
        };
        let nanos = |x: Option<f64>| x.map(|ns| Duration::from_nanos(ns.round() as u64));
        DeploymentView {
            in_flight: d.in_flight,
            limit: d.limit.current(),
            healthy: d.health.is_closed(),
            ejected_until: d.health.ejected_until(now),
            cooldown_until: (now < d.cooldown_until).then_some(d.cooldown_until),
            ewma_ttft: nanos(d.ewma_ttft),
            ewma_tpot: nanos(d.ewma_tpot),
        }
    }

    /// The declared spec of a deployment.
    pub fn spec(&self, d: DeploymentIx) -> Option<&DeploymentSpec> {
        self.deployments.get(d.0 as usize).map(|d| &d.spec)
    }

    pub fn deployment_count(&self) -> usize {
        self.deployments.len()
    }
}

mod cache;
mod config;
mod deployment;
mod outcome;
mod plan;
mod prefill;
mod route;
mod shared;
mod tail;
mod usage;

#[cfg(test)]
mod tests;

//! Spillway's routing policy, sans-IO.
//!
//! This crate decides *where* an inference request is served; the gateway does the I/O and
//! feeds the outcomes back. Every function takes the current time as a `Duration` since an
//! arbitrary epoch, and randomness comes from an RNG passed in, so the whole policy is a
//! deterministic function of (`now`, RNG seed, inputs): property tests and seeded simulations
//! over virtual time replay exactly.
//!
//! # The decision
//!
//! A request arrives on the listener of its **source region** with a set of **candidates**: the
//! deployments of its model in the regions of the profile's destination set for that source,
//! minus the regions the tenant denied. [`Router::plan`] turns them into an ordered
//! [`Plan`]:
//!
//! 1. **Never a destination outside the candidate set.** Data residency is a hard constraint,
//!    not a preference: the plan is built only from `req.candidates`, and that is property-tested.
//! 2. **Source first.** If a source-region candidate has headroom, it is the first step
//!    ([`Reason::Local`]), whatever the other regions look like. This is what Bedrock's
//!    cross-region inference promises: a profile call is served in-region whenever the region
//!    has capacity, and only the overflow travels. It keeps latency and data movement minimal
//!    and makes the source region's quota the one that matters. A *full* source may still
//!    keep a request while only a short queue waits there and the request's expected TTFT
//!    there stays within a multiple of the source's mean (`source_wait`, `source_wait_ttft`;
//!    on by default), and takes it rather than see it throttled when no region has headroom
//!    (`source_queue`): the `spillway` policy's waits in the source, described with the figures
//!    behind them in `router::plan`.
//! 3. **Spill by expected time to first token.** Otherwise each eligible candidate gets a score,
//!    `rtt + service_ttft × (1 + in_flight / limit)`: the round trip from the source, plus the
//!    part of the observed TTFT the region itself adds (`EWMA TTFT − rtt`, or a prior until
//!    observed), inflated by how busy the deployment is. The nearest region is not always the
//!    best: a close region that is nearly full queues longer than a farther idle one.
//! 4. **Power of two choices among near-equals.** Many gateway instances, one per region, route
//!    concurrently on state that is slightly stale. If each took the single best score they
//!    would all herd onto the same region at the same moment, overload it, and herd on to the
//!    next. So among the candidates whose score is within `best × near_equal_ratio +
//!    near_equal_slack`, two are drawn uniformly at random and the less utilised one wins. As
//!    with tower's `p2c` balancer (after Mitzenmacher, *The Power of Two Choices in Randomized
//!    Load Balancing*), two random choices are exponentially better than one at evening out
//!    load, while avoiding the herding of always-pick-the-least-loaded; restricting the draw to
//!    near-equals keeps a clearly worse (far) region out of the draw.
//! 5. **An ordered plan for failover.** The remaining eligible candidates follow in ascending
//!    score, up to `max_attempts` steps. When an attempt fails in a retryable way before the
//!    first byte reached the client (connect error, timeout, 429, 5xx), the gateway moves on to
//!    the next step, so a region outage costs no failed requests.
//! 6. **Nothing eligible:** an empty plan with `retry_after`, the earliest time some candidate is
//!    expected to have room (at least 1 ms, at most 60 s); the gateway answers 429 with it.
//!
//! Every step carries its [`Reason`] (`local`, `spill:capacity`, `spill:unhealthy`,
//! `failover:<why>`) for logs, metrics and the audit trail.
//!
//! # What a deployment can take
//!
//! Capacity is declared (max in flight, RPM, TPM) and also learned:
//!
//! * [`health`] — a circuit breaker: consecutive failures eject a deployment; after the ejection
//!   one probe is let through, and ejections double while probes keep failing. A dead region
//!   then costs a handful of attempts, not one per request.
//! * cooldown — an upstream 429 with `Retry-After` is honoured: nothing is sent there before it.
//! * [`limit`] — an AIMD adaptive concurrency limit: 429s and timeouts cut the in-flight limit
//!   multiplicatively, successes raise it back additively, so the router finds what the upstream
//!   can take now rather than what the config says it could.
//! * [`quota`] — exact token buckets for RPM and TPM, reserved up front on the estimate and
//!   settled to the actual usage, for both the deployments and the tenants' quotas.
//!
//! # Bounding retries
//!
//! Failover multiplies load exactly when capacity is short. Besides the per-request attempt cap,
//! a global [`retry`] budget (tower / finagle style: each request deposits a fraction of a retry,
//! plus a small allowance per second) bounds retries to a fraction of real traffic, so an
//! overload cannot snowball into a retry storm.
//!
//! # Using it
//!
//! Per request: [`Router::route`] records it in the retry budget, plans it and admits it on the
//! first step of the plan that has room, in one call ([`Routed`]: the plan, and the admitted
//! step with its [`Admission`], or none and the plan's `retry_after`). Call that upstream, then
//! [`Router::release`] the admission with the [`Outcome`]. After a retryable failure, take a
//! retry with [`Router::try_retry`] and admit the next step with [`Router::admit_next`] from
//! the step after the failed one. The router is a plain value: the gateway owns it (behind a
//! lock, or one per shard) and shares nothing global; each of these calls is one critical
//! section, and the plan carries what it granted ([`Step::queued`], a wait in the source that
//! only that step may use), so requests interleave freely between them.
//!
//! The parts stay public for callers that drive them separately: [`Router::record_request`],
//! [`Router::plan`], [`Router::admit`] (one step of a plan) and [`Router::try_acquire`] (a bare
//! deployment, never beyond its limit).
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod health;
pub mod limit;
pub mod prefix;
pub mod quota;
pub mod retry;
pub mod router;

pub use health::{Health, HealthConfig};
pub use limit::{AdaptiveLimit, AimdConfig};
pub use prefix::{CacheAffinity, Prefix, PrefixConfig, PrefixIndex};
pub use quota::{QuotaBucket, QuotaDenied, QuotaLimits, Reservation, TokenBucket};
pub use retry::{RetryBudget, RetryBudgetConfig};
pub use router::{
    AUTO_RESERVE_MIN_SLOTS, Admission, Candidate, Demand, DeploymentEvent, DeploymentIx,
    DeploymentSpec, DeploymentView, FailureKind, Load, Outcome, Plan, Policy, Reason, RegionIx,
    Rejection, RouteRequest, Routed, Router, RouterConfig, Step,
};

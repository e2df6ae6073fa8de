//! The router's configuration: [`RouterConfig`] and the first-step [`Policy`].
use std::time::Duration;

use crate::{AimdConfig, HealthConfig, RetryBudgetConfig};

/// With `spill_reserve` unset, a deployment declared with at least this many slots keeps one
/// for its own region's requests; a smaller one keeps none. One slot is then at most a
/// sixteenth of what it lends the other regions; on smaller deployments (the 4 to 8 slots of a
/// single GPU server) it is a large share, and the reserve was measured on 17 to 49 slots
/// (`docs/BENCHMARKS.md`).
pub const AUTO_RESERVE_MIN_SLOTS: u32 = 16;

#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How the first step is chosen among the destinations with headroom.
    pub policy: Policy,
    /// Upper bound on the number of steps in a plan (first try + failovers). >= 1.
    pub max_attempts: usize,
    pub health: HealthConfig,
    pub aimd: AimdConfig,
    pub retry_budget: RetryBudgetConfig,
    /// Destinations whose expected TTFT is within `best * near_equal_ratio + near_equal_slack` are
    /// "near-equal"; the spill choice samples two of them (power of two choices).
    pub near_equal_ratio: f64,
    pub near_equal_slack: Duration,
    /// Prior for a deployment's service TTFT before anything was observed.
    pub prior_service_ttft: Duration,
    /// EWMA weight of a new TTFT / TPOT observation (0 < alpha <= 1).
    pub ewma_alpha: f64,
    /// `Policy::Spillway` only: when no destination has headroom, a request may still go to the
    /// source deployment, to wait in its engine's own queue, while the source has fewer than
    /// `limit × (1 + source_queue)` requests in flight (see `Router::plan`). 0 throttles
    /// instead; negative or NaN is 0, more than 1 is 1.
    pub source_queue: f64,
    /// `Policy::Spillway` only: while the source has fewer than `limit × (1 + source_wait)` in
    /// flight, a request waits in its queue rather than spill (or be throttled) when the
    /// expected TTFT of waiting (when the running requests free a slot, plus its prefill) is
    /// within 5 % of a spill's to the nearest region with a free slot, or fits
    /// `source_wait_ttft`. Default 0.2; 0 spills as soon as the source is full (see the `plan`
    /// module for the trade). An upstream that refuses such a request (429) is not asked to
    /// queue again for a minute.
    pub source_wait: f64,
    /// With `source_wait`: a request whose wait costs more than that against a spill still waits
    /// while its expected TTFT in the source (the expected wait for a slot plus its own prefill)
    /// is within `source_wait_ttft` × the source's mean TTFT and below the TTFT of the longest
    /// prompt seen there (the tail a wait must not reach); longer requests spill. Default 1.5;
    /// 0 waits only by the comparison with a spill; infinity waits whatever the size.
    pub source_wait_ttft: f64,
    /// `Policy::Spillway` only: the slots of each deployment kept for its own region's
    /// requests. A deployment takes a request from another region (a spill, a failover to it, a
    /// cache move; not a mid-stream continuation, which finishes an answer already under way)
    /// only while more than this many of its slots are free; a request that finds its source
    /// full and every other region at its reserve waits in the source when a wait is allowed
    /// (`source_wait`, `source_queue`, `tail_budget`) and is throttled otherwise. This is trunk
    /// reservation: it keeps a region's own traffic from being pushed out by the overflow of
    /// the others (see the `plan` module). `None` (the default): one slot on a deployment
    /// declared with [`AUTO_RESERVE_MIN_SLOTS`] or more, none on a smaller one; `Some(0)`:
    /// every free slot takes spills.
    pub spill_reserve: Option<u32>,
    /// `Policy::Spillway` only: the share of each source region's requests that may wait in
    /// their full source when no other region can take them (each full, or at its
    /// `spill_reserve`) and the TTFT comparisons of `source_wait` would not let them wait,
    /// rather than be throttled; each such wait stays within `source_wait_ttft` × the TTFT of
    /// the longest prompt seen there. Banked per request, at most five waits at a time (see
    /// the `tail` module). Default 0.01: the 99th percentile of TTFT stays the others'.
    /// 0 throttles them; out of [0, 1] is clamped.
    pub tail_budget: f64,
    /// Cache affinity `on` only: the least share of each source region's requests that find
    /// room there that stay there; the rest may leave for a region whose cache is expected to
    /// answer sooner. Default 0.9; 0 moves every request that gains; 1 never moves one.
    pub cache_min_locality: f64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            policy: Policy::Spillway,
            max_attempts: 3,
            health: HealthConfig {
                failure_threshold: 3,
                base_ejection: Duration::from_secs(1),
                max_ejection: Duration::from_secs(30),
            },
            aimd: AimdConfig {
                min_limit: 1,
                decrease_factor: 0.75,
            },
            retry_budget: RetryBudgetConfig {
                ratio: 0.2,
                min_per_sec: 10.0,
                max_balance: 100.0,
            },
            near_equal_ratio: 1.25,
            near_equal_slack: Duration::from_millis(5),
            prior_service_ttft: Duration::from_millis(50),
            ewma_alpha: 0.2,
            source_queue: 0.0,
            source_wait: 0.2,
            source_wait_ttft: 1.5,
            spill_reserve: None,
            tail_budget: 0.01,
            cache_min_locality: 0.9,
        }
    }
}

/// The choice among destinations with headroom. Every policy keeps the hard rules (never outside
/// the candidates; only destinations with headroom; failover along the rest of the plan); they
/// differ in the first step, which is what the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Source first; otherwise the lowest expected TTFT, p2c among near-equals.
    #[default]
    Spillway,
    /// Rotate over the destinations, ignoring the source (a baseline).
    RoundRobin,
    /// The destination with the lowest utilisation, ignoring the source (a baseline).
    LeastLoaded,
}

impl Policy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Policy::Spillway => "spillway",
            Policy::RoundRobin => "round-robin",
            Policy::LeastLoaded => "least-loaded",
        }
    }
}

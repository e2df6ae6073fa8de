//! The routing decision. API contract (bodies to be implemented).
use std::time::Duration;

use rand::RngCore;

use crate::{AimdConfig, HealthConfig, RetryBudgetConfig};

/// Index of a region in the gateway's region table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionIx(pub u16);

/// Index of a deployment (one model in one region) in the router's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentIx(pub u32);

#[derive(Debug, Clone)]
pub struct RouterConfig {
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
}

impl Default for RouterConfig {
    fn default() -> Self {
        todo!()
    }
}

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
    /// Tried after a previous step failed with this kind.
    Failover(FailureKind),
}

impl Reason {
    /// `local`, `spill:capacity`, `spill:unhealthy`, `failover:<kind>`.
    pub fn as_str(&self) -> &'static str {
        todo!()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub deployment: DeploymentIx,
    pub region: RegionIx,
    pub reason: Reason,
}

/// An ordered plan: try `steps[0]`, on a retryable failure `steps[1]`, … Empty when nothing can
/// admit the request; then `retry_after` says when something is expected to have room.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Could not connect.
    Connect,
    /// No first byte within the deadline.
    Timeout,
    /// Upstream 429 (with its Retry-After, if any).
    Throttled { retry_after: Option<Duration> },
    /// Upstream 5xx, or the connection broke before the response completed.
    ServerError,
    /// Upstream 4xx other than 429: the request's fault, not the deployment's.
    ClientError,
    /// The client went away; says nothing about the deployment.
    Cancelled,
}

impl FailureKind {
    /// Retryable on another destination when nothing was sent to the client yet.
    pub fn is_retryable(&self) -> bool {
        todo!()
    }
    /// `connect`, `timeout`, `throttled`, `server_error`, `client_error`, `cancelled`.
    pub fn as_str(&self) -> &'static str {
        todo!()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Success {
        ttft: Duration,
        /// Time per output token after the first, if more than one token was produced.
        tpot: Option<Duration>,
        /// Actual tokens used (input + output).
        tokens: u64,
    },
    Failure(FailureKind),
}

/// Proof that a deployment admitted a request; give it back to [`Router::release`].
#[derive(Debug)]
#[must_use]
pub struct Admission {
    pub deployment: DeploymentIx,
    pub est_tokens: u64,
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

pub struct Router {/* private */}

impl Router {
    pub fn new(_cfg: RouterConfig, _deployments: Vec<DeploymentSpec>) -> Self {
        todo!()
    }

    /// Build the ordered plan (does not admit; call `try_acquire` for the step you use).
    pub fn plan(&mut self, _req: &RouteRequest<'_>, _now: Duration, _rng: &mut dyn RngCore) -> Plan {
        todo!()
    }

    /// Admit a request on a deployment: checks health/cooldown, in-flight vs. adaptive limit,
    /// RPM and TPM headroom, and takes them.
    pub fn try_acquire(
        &mut self,
        _d: DeploymentIx,
        _est_tokens: u64,
        _now: Duration,
    ) -> Result<Admission, Rejection> {
        todo!()
    }

    /// Give the admission back with the attempt's outcome: frees the in-flight slot, settles TPM
    /// to actual usage, feeds health, cooldown, adaptive limit and latency EWMAs.
    pub fn release(&mut self, _admission: Admission, _outcome: Outcome, _now: Duration) {
        todo!()
    }

    /// Record that a new request entered (deposits into the retry budget).
    pub fn record_request(&mut self, _now: Duration) {
        todo!()
    }

    /// Withdraw one retry from the global retry budget; false when the budget is empty.
    pub fn try_retry(&mut self, _now: Duration) -> bool {
        todo!()
    }

    pub fn view(&self, _d: DeploymentIx, _now: Duration) -> DeploymentView {
        todo!()
    }

    pub fn deployment_count(&self) -> usize {
        todo!()
    }
}

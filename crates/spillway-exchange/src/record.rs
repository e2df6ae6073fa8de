//! The record an exchange ends with: everything the end of a request writes, computed once by
//! the exchange so that quota settlement, usage, cost, audit, metrics and logs all agree.
use std::time::Duration;

use spillway_core::{DeploymentIx, FailureKind, Reason, RegionIx};
use spillway_proto::Usage;

use crate::event::{AttemptId, Price, Refusal};

/// The end of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub source: RegionIx,
    /// What the client got.
    pub outcome: Outcome,
    /// The region of the attempt whose answer the client got (or was getting), if any.
    pub served_in: Option<RegionIx>,
    /// Why that region (`local`, `spill:…`, `failover:…`), or of the last step tried.
    pub reason: Option<Reason>,
    /// Every attempt, in the order sent.
    pub tries: Vec<Try>,
    /// The tenant-quota reservation taken at admission.
    pub reserved_tokens: Option<u64>,
    /// Tokens of the answer: the upstream's own usage when it reported one, else the prompt
    /// estimate plus the output pieces seen. Zero when nothing reached an upstream's answer.
    pub usage: Usage,
    /// How the tenant-quota reservation settles.
    pub settle: Settle,
    pub timings: Timings,
    /// `usage` at the source region's price.
    pub cost: Option<Cost>,
}

/// What the client got.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The whole answer.
    Served,
    /// A stream that broke after it started.
    Broken(FailureKind),
    /// The client went away (`after_first_byte`: while its stream was under way).
    ClientGone { after_first_byte: bool },
    /// The client stopped reading its stream.
    Stalled,
    /// An error instead of an answer.
    Refused(Refusal),
    /// The driver stopped (shutdown) before the request ended.
    Aborted,
}

impl Outcome {
    /// A short label for logs and metrics: `ok`, `broken`, `cancelled`, `stalled`,
    /// `throttled`, `timeout`, `unavailable`, `upstream_client_error`, `aborted`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Served => "ok",
            Outcome::Broken(_) => "broken",
            Outcome::ClientGone { .. } => "cancelled",
            Outcome::Stalled => "stalled",
            Outcome::Refused(
                Refusal::NoCapacity { .. }
                | Refusal::AllThrottled { .. }
                | Refusal::Reserved { .. },
            ) => "throttled",
            Outcome::Refused(Refusal::Timeout) => "timeout",
            Outcome::Refused(Refusal::Unavailable) => "unavailable",
            Outcome::Refused(Refusal::Rejected { .. }) => "upstream_client_error",
            Outcome::Aborted => "aborted",
        }
    }
}

/// One attempt on one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Try {
    pub attempt: AttemptId,
    pub deployment: DeploymentIx,
    pub region: RegionIx,
    pub reason: Reason,
    pub result: TryResult,
    pub sent_at: Duration,
    /// The first piece of its answer, if one came.
    pub first_piece_at: Option<Duration>,
    pub ended_at: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryResult {
    Succeeded,
    Failed(FailureKind),
    /// Given up by the exchange (timeout, client gone or stalled, abort).
    Cancelled,
}

/// How the tenant-quota reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Nothing was served: the reservation goes back in full.
    Cancel,
    /// Settle to these tokens (the prompt once an upstream had it, plus what was generated).
    Used(u64),
}

/// When things happened, on the driver's clock (the `now` of the events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub admitted: Duration,
    /// The client's first byte of an answer (a stream's first piece, or the whole answer).
    pub first_byte: Option<Duration>,
    pub ended: Duration,
}

impl Timings {
    /// Admission to the end.
    pub fn total(&self) -> Duration {
        self.ended.saturating_sub(self.admitted)
    }
}

/// Cost in US dollars at the source region's price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub input: f64,
    pub output: f64,
    pub total: f64,
}

impl Cost {
    pub fn of(usage: &Usage, price: &Price) -> Cost {
        let input = usage.prompt_tokens as f64 * price.input_per_mtok / 1e6;
        let output = usage.completion_tokens as f64 * price.output_per_mtok / 1e6;
        Cost {
            input,
            output,
            total: input + output,
        }
    }
}

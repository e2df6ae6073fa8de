//! What an attempt came to: [`Outcome`], and the [`FailureKind`] that says whether another
//! destination may be tried.
use std::time::Duration;

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
        match self {
            FailureKind::Connect
            | FailureKind::Timeout
            | FailureKind::Throttled { .. }
            | FailureKind::ServerError => true,
            FailureKind::ClientError | FailureKind::Cancelled => false,
        }
    }
    /// `connect`, `timeout`, `throttled`, `server_error`, `client_error`, `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Throttled { .. } => "throttled",
            FailureKind::ServerError => "server_error",
            FailureKind::ClientError => "client_error",
            FailureKind::Cancelled => "cancelled",
        }
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

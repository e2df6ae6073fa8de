//! What the driver tells the exchange ([`Event`]), what it is told at the start ([`Facts`],
//! [`Limits`]), and what a client can get instead of an answer ([`Refusal`]).
use std::time::Duration;

use bytes::Bytes;
use spillway_core::{Demand, DeploymentIx, FailureKind, RegionIx};

use crate::piece::Piece;

/// One attempt of an exchange on one deployment, numbered from 0 in the order they were sent.
/// Events about an attempt the exchange has already given up carry its old id and are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub u32);

/// What the gateway knows of the request when it is admitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The region whose listener the request arrived on.
    pub source: RegionIx,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether attempts stream the answer from the upstream, also when the client wants it
    /// whole (the gateway then assembles it): such an attempt is timed piece by piece, like a
    /// stream's (`Limits::first_byte`), and only the assembled answer, its last piece, goes to
    /// a non-streaming client.
    pub upstream_stream: bool,
    /// The prompt's tokens (estimated); charged once an upstream has the request.
    pub prompt_tokens: u64,
    /// What one attempt asks of a deployment (reserved tokens and input tokens).
    pub demand: Demand,
    /// How many deployments the request could go to (the candidates, before headroom): a
    /// request that fails everywhere it was tried while some candidate was never tried is
    /// throttled (429), not failed.
    pub candidates: usize,
    /// The tenant-quota reservation (`None`: the tenant has no quota here).
    pub reserved_tokens: Option<u64>,
    /// The source region's price for this model, per million tokens, if one is configured.
    pub price: Option<Price>,
    /// Mid-stream failover for this request, when its model has it on and the client streams
    /// (see the exchange's `resume` module); `None`: a stream that breaks after its first byte
    /// ends with an error event.
    pub resume: Option<ResumePolicy>,
}

/// Which continuations a request may get after its stream broke.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePolicy {
    /// The request's destinations (its candidates: the profile's set, less what the tenant
    /// denies) whose deployment accepts a continuation (configured with a continuation form),
    /// with their regions, in the candidates' order; only these are sent one.
    pub deployments: Vec<(DeploymentIx, RegionIx)>,
    /// The output cap the client set, honoured across every leg.
    pub max_tokens: Option<u64>,
    /// The most continuations one request gets.
    pub max_resumes: u32,
}

/// A price per million input and output tokens, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// The exchange's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A streamed attempt (see `Facts::upstream_stream`) must deliver its first piece within
    /// this of being sent, and each next piece within this of the previous one (an upstream that
    /// stops sending is broken).
    pub first_byte: Duration,
    /// A non-streamed request's attempt must deliver its whole answer within this of being
    /// sent.
    pub request: Duration,
    /// The client must have its first byte (the answer, or a stream's first piece) within this
    /// of admission, across every failover.
    pub total: Duration,
    /// After the client stalled or left, its attempt is still read for at most this long, to
    /// bill what the upstream had generated (see the exchange's `drain` module); zero cancels
    /// it at once.
    pub drain: Duration,
}

/// Why an attempt produced no usable answer, as the driver classified it (the one place that
/// classifies is the gateway's `upstream` module).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// The upstream's error body (kept for a non-retryable 4xx, relayed to the client).
    pub body: Bytes,
}

impl Failure {
    /// A failure with no status or body (transport errors, broken streams).
    pub fn of(kind: FailureKind) -> Failure {
        Failure {
            kind,
            status: None,
            body: Bytes::new(),
        }
    }
}

/// What the driver reports. Every event comes with `now` (see `Exchange::handle`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The attempt's response head arrived with a success status.
    UpstreamHead(AttemptId),
    /// A piece of the attempt's answer (a stream's chunk, or the whole non-streamed answer).
    UpstreamPiece(AttemptId, Piece),
    /// The attempt's answer is complete.
    UpstreamEnd(AttemptId),
    /// The attempt failed: a non-2xx head, a transport error, a broken or garbled stream.
    UpstreamError(AttemptId, Failure),
    /// The client went away.
    ClientGone,
    /// The client stopped reading a stream and the gateway gave up waiting for it.
    ClientStalled,
    /// The deadline last set with `Action::SetTimer` has passed.
    TimerFired,
    /// The driver cannot go on (the process is shutting down): end now.
    Aborted,
}

/// An answer the client gets instead of a model's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No destination had room (or every one tried answered 429 and some were never tried):
    /// 429 with `Retry-After`.
    NoCapacity { retry_after: Duration },
    /// Every destination tried answered 429.
    AllThrottled { retry_after: Duration },
    /// The only free slots were other regions' reserves for their own requests
    /// (`spill_reserve`): 429 with `Retry-After`.
    Reserved { retry_after: Duration },
    /// No destination answered in time.
    Timeout,
    /// Every destination tried failed.
    Unavailable,
    /// The upstream refused the request itself (a 4xx other than 429): relayed as it came.
    Rejected { status: u16, body: Bytes },
}

impl Refusal {
    /// The refusal for a request whose last failure ends it.
    pub fn after(f: Failure) -> Refusal {
        match f.kind {
            FailureKind::ClientError => Refusal::Rejected {
                status: f.status.unwrap_or(400),
                body: f.body,
            },
            FailureKind::Throttled { retry_after } => Refusal::AllThrottled {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            },
            FailureKind::Timeout => Refusal::Timeout,
            FailureKind::Connect | FailureKind::ServerError | FailureKind::Cancelled => {
                Refusal::Unavailable
            }
        }
    }
}

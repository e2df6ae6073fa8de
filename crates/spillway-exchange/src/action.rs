//! What the exchange asks of the driver: [`Action`]s, polled in order.
use std::time::Duration;

use spillway_core::{DeploymentIx, FailureKind, Reason, RegionIx};

use crate::event::{AttemptId, Refusal};
use crate::piece::Piece;
use crate::record::Record;

/// What the exchange asks of the driver, in order, from `Exchange::poll_action`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the request to this deployment (in this region) as attempt `attempt`, for this
    /// reason (`local`, `spill:…`, `failover:…`, `resume:…`); with `resume`, as a
    /// continuation of the answer the client already has part of.
    Send {
        attempt: AttemptId,
        deployment: DeploymentIx,
        region: RegionIx,
        reason: Reason,
        resume: Option<Continuation>,
    },
    /// Give the client this piece: the next frame of its stream (the first one commits the
    /// response: its head goes out with it), or the whole answer of a non-streamed request.
    Emit(Piece),
    /// The client's stream is over: complete, or broken after it started.
    Close(StreamEnd),
    /// Answer the client with this error (nothing was emitted before).
    Respond(Refusal),
    /// Wake the exchange with [`Event::TimerFired`] at this instant (replaces any earlier timer).
    SetTimer(Duration),
    /// Stop the attempt: drop its upstream request, ignore what it still sends.
    Cancel(AttemptId),
    /// The exchange is over: the one record from which the gateway settles quota and writes
    /// usage, audit, metrics and logs. Exactly once per exchange, and the last action.
    Finished(Box<Record>),
}

/// How a stream that reached the client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    Complete,
    /// The upstream failed after the client got bytes: the stream ends with an error event.
    Broken(FailureKind),
}

/// What a continuation sends besides the original request: the text the client already has,
/// as a final partial assistant message to continue, and the output tokens left.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// The answer's text so far, exactly as the client got it.
    pub text: String,
    /// Output tokens the client has had so far (the larger of the pieces counted and the
    /// estimate of `text`, so the cap is never overshot).
    pub output_tokens: u64,
    /// The output cap for this leg: the client's cap less `output_tokens`; `None` when the
    /// client set none.
    pub max_tokens: Option<u64>,
}

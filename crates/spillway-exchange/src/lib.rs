//! One request's life in Spillway, as a sans-IO state machine.
//!
//! The gateway admits a request (tenant quota reserved, the routing core's plan made and its
//! first step admitted) and hands it to an [`Exchange`]; from then on the exchange owns every
//! decision about it — which deployment to send to, when to fail over, when an attempt or the
//! client has taken too long, when the answer is committed to the client, and how the request
//! ends — and the gateway only carries those decisions out on real sockets. This is the shape
//! of `quinn-proto`'s connection: events in with `now`, actions out by polling, no clock, no
//! tokio, no sockets, so every path runs in virtual time in a unit test.
//!
//! # A map of the crate
//!
//! * [`exchange`] — the state machine and the algorithm, in its module docs.
//! * [`event`] — [`Event`]s in, the request's [`Facts`] and [`Limits`], the [`Failure`] of an
//!   attempt and the [`Refusal`] a client can get; [`action`] — [`Action`]s out.
//! * [`piece`] — the canonical unit of an answer the exchange relays ([`Piece`]).
//! * [`record`] — the [`Record`] of a finished request, from which the gateway's one `finish`
//!   settles quota and writes usage, audit, metrics and logs.
//! * [`capacity`] — the [`Capacity`] trait: the exchange's window onto the routing core's shared
//!   state (admission, release, retry budget), implemented by `spillway_core::Router`.
//!
//! # Invariants (unit- and property-tested)
//!
//! * Every path ends in exactly one [`Action::Finished`], the last action.
//! * Every admission is released exactly once, and the reservation settles once, to the tokens
//!   of the answer (or in full back when nothing was served).
//! * No `Send` outside the plan, hence outside the profile's destination set.
//! * No second attempt once the client has the first byte of an answer, except a continuation
//!   (mid-stream failover, opted in per request by [`Facts::resume`]): only to a deployment of
//!   the plan that accepts one and was not tried before, and the client's stream stays one
//!   answer (same id, no repeated or missing text, one usage).
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod action;
pub mod capacity;
pub mod event;
pub mod exchange;
pub mod piece;
pub mod record;

pub use action::{Action, Continuation, StreamEnd};
pub use capacity::Capacity;
pub use event::{AttemptId, Event, Facts, Failure, Limits, Price, Refusal, ResumePolicy};
pub use exchange::Exchange;
pub use piece::Piece;
pub use record::{Cost, Outcome, Record, Settle, Timings, Try, TryResult};

#[cfg(test)]
mod tests;

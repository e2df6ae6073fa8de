//! Draining: the attempt of a client that stalled or left, still read to bill what its upstream
//! generated.
//!
//! A stalled client stops taking bytes; the driver then stops reading the upstream, whose
//! answer piles up in the sockets between them (and an upstream that writes as it decodes
//! waits with the rest). When the exchange gives up on such a client, the attempt's admission is
//! released at once, so the deployment's capacity is back at the deadline; but its record waits:
//! the attempt is read on, without the client, until its upstream ends (its own usage report
//! then settles the bill exactly) or fails, or `Limits::drain` has passed, when it is cancelled.
//! Every output piece read meanwhile is counted. So the tenant is billed for every token the
//! upstream generated before the gateway closed its connection, not only for those the client
//! took. A drain of zero cancels at once and bills what was read.
use std::time::Duration;

use super::Exchange;
use crate::action::Action;
use crate::event::{AttemptId, Event};
use crate::piece::Piece;
use crate::record::Outcome;

/// The given-up attempt still read, and how the request ends when it is over.
#[derive(Debug)]
pub(super) struct Draining {
    id: AttemptId,
    pub(super) until: Duration,
    outcome: Outcome,
}

impl Exchange {
    /// Count what a piece adds to the answer's tokens.
    pub(super) fn count(&mut self, piece: &Piece) {
        self.answer.output_tokens += piece.output_tokens();
        if let Some(u) = piece.usage() {
            self.answer.reported = Some(u);
        }
    }

    pub(super) fn start_drain(&mut self, now: Duration, id: AttemptId, outcome: Outcome) {
        let until = now + self.limits.drain;
        self.draining = Some(Draining { id, until, outcome });
    }

    /// An event while draining: pieces are counted, the attempt's end or failure, the deadline
    /// or an abort end the request. The client is already gone.
    pub(super) fn on_draining(&mut self, now: Duration, event: Event) {
        let Some(d) = self.draining.as_ref() else {
            return;
        };
        let (id, until) = (d.id, d.until);
        match event {
            Event::UpstreamPiece(a, piece) if a == id => self.count(&piece),
            Event::UpstreamEnd(a) | Event::UpstreamError(a, _) if a == id => self.end_drain(now),
            Event::TimerFired if now >= until => self.end_drain(now),
            Event::Aborted => self.end_drain(now),
            _ => {}
        }
    }

    fn end_drain(&mut self, now: Duration) {
        if let Some(d) = self.draining.take() {
            self.actions.push_back(Action::Cancel(d.id));
            self.finish(now, d.outcome);
        }
    }
}

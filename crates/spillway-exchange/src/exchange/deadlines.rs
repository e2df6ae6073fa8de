//! The exchange's one timer: the live attempt's deadline, the client's first-byte deadline
//! across failovers, a drain's end, or a waiting continuation's next try, whichever comes
//! first.
use std::time::Duration;

use super::Exchange;
use crate::action::Action;

impl Exchange {
    /// The live attempt's own deadline: its next piece when it streams from the upstream, and
    /// its whole answer when the client wants one.
    pub(super) fn attempt_deadline(&self) -> Option<Duration> {
        let live = self.live.as_ref()?;
        let next_piece = live.last_piece_at.unwrap_or(live.sent_at) + self.limits.first_byte;
        let whole = live.sent_at + self.limits.request;
        Some(match (self.facts.stream, self.facts.upstream_stream) {
            (true, _) => next_piece,
            (false, true) => next_piece.min(whole),
            (false, false) => whole,
        })
    }

    /// Until the client has its first byte: the request's overall deadline.
    pub(super) fn commit_deadline(&self) -> Option<Duration> {
        self.committed_at
            .is_none()
            .then(|| self.admitted_at + self.limits.total)
    }

    pub(super) fn refresh_timer(&mut self) {
        if self.done {
            return;
        }
        let deadline = match (self.attempt_deadline(), self.commit_deadline()) {
            _ if self.draining.is_some() => self.draining.as_ref().map(|d| d.until),
            _ if self.waiting.is_some() => self.waiting.as_ref().map(|w| w.next_poll),
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        if deadline != self.timer {
            self.timer = deadline;
            if let Some(d) = deadline {
                self.actions.push_back(Action::SetTimer(d));
            }
        }
    }
}

//! What an answer costs: the tokens a deployment is charged for an attempt, the usage a request
//! is billed, summed over the legs of a continued stream ([`super::resume`]), and the one
//! [`Record`] the exchange ends with.
use std::time::Duration;

use spillway_proto::Usage;

use super::{Exchange, resume};
use crate::action::Action;
use crate::record::{Cost, Outcome, Record, Settle, Timings};

impl Exchange {
    /// Tokens to charge a deployment for a failed or cancelled attempt: the prompt and the
    /// output it produced, once it produced any.
    pub(super) fn charge(&self) -> u64 {
        let seen = self
            .live
            .as_ref()
            .is_some_and(|l| l.first_piece_at.is_some());
        if seen || self.answer.output_tokens > 0 {
            self.leg_prompt() + self.answer.output_tokens
        } else {
            0
        }
    }

    /// The live leg's prompt: the request's, plus the text it continues.
    pub(super) fn leg_prompt(&self) -> u64 {
        self.facts.prompt_tokens + self.answer.relay.prefix_tokens
    }

    /// The tokens of the answer, summed over its legs: each leg's usage as its upstream
    /// reported it, else its prompt estimate and the output pieces seen.
    pub(super) fn usage(&self) -> Usage {
        resume::add(self.leg_usage(), self.answer.relay.carried)
    }

    /// The live (or last) leg's usage.
    pub(super) fn leg_usage(&self) -> Usage {
        if let Some(u) = self.answer.reported {
            return u;
        }
        let prompt = self.leg_prompt();
        let output = self.answer.output_tokens;
        Usage {
            prompt_tokens: prompt,
            completion_tokens: output,
            total_tokens: prompt + output,
            prompt_tokens_details: None,
        }
    }

    /// The end: the one record, with the usage and the settlement of the answer.
    pub(super) fn finish(&mut self, now: Duration, outcome: Outcome) {
        let (usage, settle) = if self.answer.charged {
            let u = self.usage();
            (u, Settle::Used(u.total_tokens))
        } else {
            (Usage::default(), Settle::Cancel)
        };
        let last = self.tries.last().map(|t| (t.region, t.reason));
        let (served_in, reason) = match (self.answer.from, last) {
            (Some((r, why)), _) => (Some(r), Some(why)),
            (None, Some((_, why))) => (None, Some(why)),
            (None, None) => (None, None),
        };
        let record = Record {
            source: self.facts.source,
            outcome,
            served_in,
            reason,
            tries: std::mem::take(&mut self.tries),
            reserved_tokens: self.facts.reserved_tokens,
            usage,
            settle,
            timings: Timings {
                admitted: self.admitted_at,
                first_byte: self.committed_at,
                ended: now,
            },
            cost: (settle != Settle::Cancel)
                .then_some(self.facts.price)
                .flatten()
                .map(|p| Cost::of(&usage, &p)),
        };
        self.actions.push_back(Action::Finished(Box::new(record)));
        self.done = true;
        self.timer = None;
    }
}

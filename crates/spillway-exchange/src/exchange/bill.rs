//! What an answer costs: the tokens a deployment is charged for an attempt, and the usage a
//! request is billed, summed over the legs of a continued stream ([`super::resume`]).
use spillway_proto::Usage;

use super::{Exchange, resume};

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
        }
    }
}

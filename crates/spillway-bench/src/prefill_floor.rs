//! The prefill floor: the fewest prompt tokens the engines must prefill to serve a set of
//! requests, whatever routes them and however large their prefix caches are.
//!
//! # The model it bounds
//!
//! The simulator's prefix cache (`spillway-sim`'s `prefix_cache` module, `docs/SIMULATOR.md`):
//! a prompt is cut into blocks of [`BLOCK_CHARS`](spillway_proto::prefix::BLOCK_CHARS) characters of its canonical text, each named
//! by a chained hash ([`spillway_proto::prefix`]), so one id stands for one block *and* every
//! block before it. A request looks its blocks up when it is about to take a slot; its hit `h`
//! is the longest run of leading blocks present; it prefills `P − min(h × 512, P − 1)` of its
//! `P` prompt tokens; its blocks enter that region's cache when its prefill ends.
//!
//! # The floor
//!
//! Take the first lookup, in any region, of a block `b`. Nothing holds `b` then: a block is
//! inserted only after the prefill of a request that carries it, whose lookup came earlier.
//! So every distinct block is missed at least once. With `B_j` the full blocks of request `j`,
//! `m_j = |B_j| − h_j` its misses, `a_j = P_j − 512 |B_j|` its tokens past its full blocks and
//! `D` the distinct blocks among all the requests:
//!
//! ```text
//!   prefill_j  =  max(1, P_j − 512 h_j)  =  max(1, a_j + 512 m_j)        Σ m_j  ≥  D
//! ```
//!
//! The least `Σ prefill` under these is the floor: each distinct block prefilled once (512
//! tokens), every prompt's tokens past its full blocks, and one token for each prompt that has
//! none past them and is cached whole (a miss spares one such prompt its token, and there are
//! `D` misses to spread):
//!
//! ```text
//!   floor  =  Σ a_j  +  512 D  +  max(0, Z − D)        Z = #{ j : a_j = 0 < P_j }
//! ```
//!
//! (It lets the misses spare any `D` of those prompts their token; where the misses fall on
//! fewer, it is low by one token for each: a prompt sent twice whole is floored at its blocks,
//! 1 token under what it costs.)
//!
//! It holds whatever the order, the regions, the caches' sizes and the failovers (a second
//! lookup only adds), and one unbounded cache shared by every region, visited in arrival order,
//! meets it whenever no prompt is cached whole: it is what a perfect placement reaches, not a
//! loose figure, so `1 − floor / prefill` is the most any router could save against a policy
//! that prefilled `prefill`.
//!
//! **Over which requests.** The simulators count every request that took a slot, and a router
//! serves a request only after one of its attempts took one, so the floor over the requests a
//! policy *served* is below what its simulators counted, provided the floor only grows as
//! requests are added. It does when every prompt has at least 512 tokens per full block
//! (`a_j ≥ 0`), as every prompt under the four-characters-a-token estimate does (a message's
//! role and separators, at most a few characters, are within its 4-token overhead):
//! [`floor`] gives no floor for a set where it fails.
use std::collections::HashSet;

use spillway_proto::prefix::{BLOCK_TOKENS, BlockHash, block_hashes};
use spillway_proto::tokens::prompt_tokens;
use spillway_proto::{ChatMessage, MessageContent};

use crate::client::prompt_text;
use crate::workload::Offered;

/// What the floor needs of one request: its prompt tokens and full blocks, as the simulator
/// counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub tokens: u64,
    pub blocks: Vec<BlockHash>,
}

impl Prompt {
    /// The prompt of `messages`, counted as the simulator counts it.
    pub fn of_messages(messages: &[ChatMessage]) -> Prompt {
        Prompt {
            tokens: prompt_tokens(messages),
            blocks: block_hashes(messages),
        }
    }

    /// The prompt the bench sends for `r` ([`prompt_text`]).
    pub fn of(r: &Offered) -> Prompt {
        let text = prompt_text(r.hash_ids.as_deref(), r.input_tokens);
        let user = ChatMessage {
            role: "user".into(),
            content: Some(MessageContent::Text(text)),
            extra: serde_json::Map::new(),
        };
        Prompt::of_messages(std::slice::from_ref(&user))
    }

    /// At least [`BLOCK_TOKENS`] prompt tokens per full block (see the module docs).
    #[cfg(test)]
    fn counts_every_block(&self) -> bool {
        self.tokens >= self.full_block_tokens()
    }

    fn full_block_tokens(&self) -> u64 {
        (self.blocks.len() as u64).saturating_mul(BLOCK_TOKENS)
    }
}

/// The fewest prompt tokens the engines prefill to serve `prompts` (see the module docs);
/// `None` when a prompt has fewer tokens than its full blocks hold, where the bound is not
/// proved.
pub fn floor<'a>(prompts: impl IntoIterator<Item = &'a Prompt>) -> Option<u64> {
    let mut distinct = HashSet::new();
    // Tokens past the prompts' full blocks, and the prompts with none (`Z`).
    let (mut past_blocks, mut blocks_only) = (0u64, 0u64);
    for p in prompts {
        let past = p.tokens.checked_sub(p.full_block_tokens())?;
        past_blocks = past_blocks.saturating_add(past);
        blocks_only += u64::from(past == 0 && p.tokens > 0);
        distinct.extend(p.blocks.iter().copied());
    }
    let distinct = distinct.len() as u64;
    Some(
        past_blocks
            .saturating_add(distinct.saturating_mul(BLOCK_TOKENS))
            .saturating_add(blocks_only.saturating_sub(distinct)),
    )
}

#[cfg(test)]
mod tests;

//! Prompts whose KV-cacheable prefix is the one a trace names.
//!
//! A Mooncake-style trace gives each request `hash_ids`, one id per 512-token block of its
//! input: requests that begin with the same ids share that prefix (later turns of a
//! conversation, a common system prompt), and an engine with prefix caching reuses its KV. The
//! bench cannot replay the original text, so it writes text with the same sharing:
//!
//! * block `k` of the request's canonical text ([`spillway_proto::prefix`]: `user\n`, the
//!   content, `\n`) is [`BLOCK_CHARS`] characters derived from `hash_ids[k]` alone: the id
//!   written out, then words drawn by a generator seeded with it. Equal ids give equal blocks;
//!   different ids give different blocks (the id is in the text);
//! * the content's first block is shortened by the `user\n` header, so that the content's
//!   blocks line up with the canonical text's and block `k` there is exactly the id's text;
//! * the content is as long as [`super::synth_prompt`]'s for the same token count (the request's
//!   input, after the bench's cap), so the last block is cut where the input ends, and only the
//!   ids that fit are used; blocks past the last id (a trace whose ids do not cover its input)
//!   are filler named by their position.
//!
//! Since a block's [`spillway_proto::prefix::BlockHash`] chains every block before it, two
//! requests share the leading block hashes of exactly their common leading ids, as far as their
//! full blocks go.
use std::fmt::Write as _;

use spillway_proto::prefix::BLOCK_CHARS;
use spillway_proto::tokens::PER_MESSAGE_OVERHEAD;

/// The canonical text before a user message's content: its role and a newline.
const HEADER_CHARS: usize = "user\n".len();

/// The words of block text (ASCII: a character is a byte).
const WORDS: [&str; 16] = [
    "cache", "block", "prefix", "turn", "reply", "region", "route", "spill", "token", "model",
    "batch", "queue", "slot", "local", "burst", "quota",
];

/// SplitMix64: the next value of a small deterministic generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The text of one block: exactly [`BLOCK_CHARS`] ASCII characters, beginning with `kind` and
/// `id` (so different ids, or a filler and an id, never give the same block).
fn block_text(kind: char, id: u64) -> String {
    let mut s = String::with_capacity(BLOCK_CHARS + 16);
    let _ = write!(s, "[{kind}{id:x}]");
    let mut state = id;
    while s.len() < BLOCK_CHARS {
        s.push(' ');
        s.push_str(WORDS[(splitmix64(&mut state) % WORDS.len() as u64) as usize]);
    }
    s.truncate(BLOCK_CHARS);
    s
}

/// A user message of `tokens` tokens (under the four-characters-a-token estimate, with the
/// message overhead, as [`super::synth_prompt`]) whose canonical text's block `k` is the text
/// of `hash_ids[k]` (see the module docs).
pub fn hashed_prompt(hash_ids: &[u64], tokens: u64) -> String {
    let target = tokens
        .saturating_sub(PER_MESSAGE_OVERHEAD)
        .saturating_mul(4);
    let target = usize::try_from(target).unwrap_or(usize::MAX);
    let mut s = String::with_capacity(target);
    let mut k = 0;
    while s.len() < target {
        let text = match hash_ids.get(k) {
            Some(id) => block_text('b', *id),
            None => block_text('f', k as u64),
        };
        let len = if k == 0 {
            BLOCK_CHARS - HEADER_CHARS
        } else {
            BLOCK_CHARS
        };
        s.push_str(&text[..len.min(target - s.len())]);
        k += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::parse_jsonl;
    use crate::workload::{MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS};
    use spillway_proto::ChatMessage;
    use spillway_proto::prefix::{BlockHash, block_hashes, canonical_text};
    use spillway_proto::tokens::prompt_tokens;

    fn user(content: &str) -> Vec<ChatMessage> {
        serde_json::from_value(serde_json::json!([{"role": "user", "content": content}])).unwrap()
    }

    /// The block hashes of the prompts the bench sends for each row of a JSONL trace.
    fn hashes_of(jsonl: &str) -> Vec<Vec<BlockHash>> {
        let t = parse_jsonl(jsonl, "t.jsonl").unwrap();
        t.requests
            .into_iter()
            .map(|r| {
                let r = r.capped(MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS);
                let p = hashed_prompt(r.hash_ids.as_deref().unwrap(), r.input_tokens);
                assert_eq!(prompt_tokens(&user(&p)), r.input_tokens);
                block_hashes(&user(&p))
            })
            .collect()
    }

    fn row(at: u64, input: u64, ids: &[u64]) -> String {
        format!(
            "{{\"timestamp\": {at}, \"input_length\": {input}, \"output_length\": 5, \"hash_ids\": {ids:?}}}\n"
        )
    }

    #[test]
    fn rows_sharing_three_leading_ids_share_three_leading_blocks() {
        let a: Vec<u64> = (0..6).collect();
        let b = [0, 1, 2, 70, 71, 72];
        let h = hashes_of(&(row(0, 3000, &a) + &row(1, 2600, &b)));
        // 3000 and 2600 tokens: five full blocks each.
        assert_eq!((h[0].len(), h[1].len()), (5, 5));
        assert_eq!(h[0][..3], h[1][..3]);
        assert!((3..5).all(|k| h[0][k] != h[1][k]));
    }

    #[test]
    fn capped_prompts_use_the_ids_that_fit() {
        // 9,000 and 7,000 tokens are capped at 4,096: seven full blocks each.
        let a: Vec<u64> = (0..18).collect();
        let b: Vec<u64> = [0, 1, 2].into_iter().chain(100..111).collect();
        let h = hashes_of(&(row(0, 9000, &a) + &row(1, 7000, &b)));
        assert_eq!((h[0].len(), h[1].len()), (7, 7));
        assert_eq!(h[0][..3], h[1][..3]);
        assert!((3..7).all(|k| h[0][k] != h[1][k]));
        // Short prompts share as many full blocks as they have.
        let h = hashes_of(&(row(0, 1100, &[5, 6, 7]) + &row(1, 1200, &[5, 6, 7])));
        assert_eq!((h[0].len(), h[1].len()), (2, 2));
        assert_eq!(h[0], h[1]);
        // Different first ids: nothing shared.
        let h = hashes_of(&(row(0, 3000, &a) + &row(1, 3000, &[9, 1, 2, 3, 4, 5])));
        assert!((0..5).all(|k| h[0][k] != h[1][k]));
    }

    #[test]
    fn a_later_turn_extends_the_earlier_ones_blocks() {
        let first = block_hashes(&user(&hashed_prompt(&[3, 4, 5], 1500)));
        let later = block_hashes(&user(&hashed_prompt(&[3, 4, 5, 6, 7], 2500)));
        assert_eq!(first.len(), 2);
        assert_eq!(first[..], later[..2]);
    }

    #[test]
    fn canonical_blocks_are_the_ids_texts() {
        let ids = [11, 12, 13];
        let p = hashed_prompt(&ids, 1400);
        assert_eq!(p.len(), (1400 - 4) * 4);
        let canon = canonical_text(&user(&p));
        let block = |k: usize| &canon[k * BLOCK_CHARS..(k + 1) * BLOCK_CHARS];
        assert_eq!(
            block(0),
            format!("user\n{}", &block_text('b', 11)[..BLOCK_CHARS - 5])
        );
        assert_eq!(block(1), block_text('b', 12));
        assert!(canon[2 * BLOCK_CHARS..].starts_with(&block_text('b', 13)[..100]));
        // Past the ids: filler named by its position.
        let long = hashed_prompt(&[1], 1100);
        assert_eq!(&long[BLOCK_CHARS - 5..][..4], "[f1]");
    }
}

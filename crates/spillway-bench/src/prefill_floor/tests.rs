use std::collections::{HashSet, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::client::hashed_prompt;

/// The prompt the bench sends for a request of `tokens` carrying the trace ids `ids`.
fn prompt(ids: &[u64], tokens: u64) -> Prompt {
    let messages: Vec<ChatMessage> = serde_json::from_value(serde_json::json!([
        {"role": "user", "content": hashed_prompt(ids, tokens)}
    ]))
    .unwrap();
    Prompt::of_messages(&messages)
}

/// One region's cache as the simulator keeps it: lookup of the leading run, insert after the
/// prefill, the least recently used block evicted beyond `capacity` (`usize::MAX`: unbounded).
struct Region {
    capacity: usize,
    held: HashSet<BlockHash>,
    order: VecDeque<BlockHash>,
}

impl Region {
    fn new(capacity: usize) -> Self {
        Region {
            capacity,
            held: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Serves `p`: the prompt tokens it prefills.
    fn serve(&mut self, p: &Prompt) -> u64 {
        let hit = p
            .blocks
            .iter()
            .take_while(|b| self.held.contains(b))
            .count() as u64;
        let cached = (hit * BLOCK_TOKENS).min(p.tokens.saturating_sub(1));
        for b in p.blocks.iter().rev() {
            if let Some(i) = self.order.iter().position(|x| x == b) {
                self.order.remove(i);
            }
            self.order.push_back(*b);
            self.held.insert(*b);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.held.remove(&old);
            }
        }
        p.tokens - cached
    }
}

/// Conversations: each request a path down a small tree of ids (so prefixes are shared), with
/// up to a block of its own text after them.
fn requests() -> impl Strategy<Value = Vec<(Vec<u64>, u64)>> {
    prop::collection::vec((prop::collection::vec(0u64..3, 0..6), 0u64..700), 1..40).prop_map(|rs| {
        rs.into_iter()
            .map(|(path, extra)| {
                // A node's id names its whole path, as a trace's chained ids do.
                let ids: Vec<u64> = path
                    .iter()
                    .scan(1u64, |h, step| {
                        *h = h.wrapping_mul(31).wrapping_add(step + 1);
                        Some(*h)
                    })
                    .collect();
                let tokens = ids.len() as u64 * BLOCK_TOKENS + extra + 8;
                (ids, tokens)
            })
            .collect()
    })
}

proptest! {
    /// No order, no placement over three regions, no cache size and no repeated attempt
    /// prefills fewer tokens than the floor of the requests served.
    #[test]
    fn no_placement_prefills_less_than_the_floor(
        reqs in requests(),
        regions in prop::collection::vec(0usize..3, 40),
        order_seed in any::<u64>(),
        capacity in prop::sample::select(vec![1usize, 4, 16, usize::MAX]),
        repeats in prop::collection::vec(any::<bool>(), 40),
    ) {
        let prompts: Vec<Prompt> = reqs.iter().map(|(ids, t)| prompt(ids, *t)).collect();
        let floor = floor(&prompts).unwrap();
        // A seeded shuffle of the arrival order.
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        let mut s = order_seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut caches: Vec<Region> = (0..3).map(|_| Region::new(capacity)).collect();
        let mut prefilled = 0;
        for (k, &i) in order.iter().enumerate() {
            prefilled += caches[regions[k % regions.len()]].serve(&prompts[i]);
            if repeats[k % repeats.len()] {
                // A failover: a second attempt in the next region.
                prefilled += caches[(regions[k % regions.len()] + 1) % 3].serve(&prompts[i]);
            }
        }
        prop_assert!(prefilled >= floor, "prefilled {prefilled} < floor {floor}");
    }

    /// The floor of a subset is never above the whole set's: a policy's floor over the requests
    /// it served stays below what its simulators counted for every request that took a slot.
    #[test]
    fn the_floor_grows_with_the_requests(reqs in requests(), keep in prop::collection::vec(any::<bool>(), 40)) {
        let prompts: Vec<Prompt> = reqs.iter().map(|(ids, t)| prompt(ids, *t)).collect();
        let some: Vec<&Prompt> = prompts.iter().enumerate().filter(|(i, _)| keep[i % keep.len()]).map(|(_, p)| p).collect();
        prop_assert!(floor(some).unwrap() <= floor(&prompts).unwrap());
    }
}

#[test]
fn one_shared_cache_in_arrival_order_meets_the_floor() {
    // A conversation of four turns, each re-sending the last and adding two blocks and a tail,
    // and a second one sharing its first block: no prompt is ever cached whole.
    let turns: Vec<(Vec<u64>, u64)> = vec![
        (vec![1, 2], 2 * BLOCK_TOKENS + 100),
        (vec![1, 2, 3, 4], 4 * BLOCK_TOKENS + 100),
        (vec![1, 9], 2 * BLOCK_TOKENS + 50),
        (vec![1, 2, 3, 4, 5, 6], 6 * BLOCK_TOKENS + 100),
    ];
    let prompts: Vec<Prompt> = turns.iter().map(|(ids, t)| prompt(ids, *t)).collect();
    let mut shared = Region::new(usize::MAX);
    let prefilled: u64 = prompts.iter().map(|p| shared.serve(p)).sum();
    assert_eq!(floor(&prompts), Some(prefilled));
    // Seven distinct blocks computed once, plus every prompt's tail past its full blocks.
    let tails: u64 = prompts
        .iter()
        .map(|p| p.tokens - p.blocks.len() as u64 * BLOCK_TOKENS)
        .sum();
    assert_eq!(prefilled, 7 * BLOCK_TOKENS + tails);
}

#[test]
fn a_prompt_cached_whole_still_prefills_its_last_token_in_the_floor() {
    let p = Prompt {
        tokens: 2 * BLOCK_TOKENS,
        blocks: vec![BlockHash(1), BlockHash(2)],
    };
    // Sent twice: the first prefills it all, the second its last token only. The floor lets
    // the two misses spare both copies their last token, so it is one token under.
    let mut region = Region::new(usize::MAX);
    let prefilled = region.serve(&p) + region.serve(&p);
    assert_eq!(prefilled, 2 * BLOCK_TOKENS + 1);
    assert_eq!(floor([&p, &p]), Some(2 * BLOCK_TOKENS));
    // Ten prompts of one block each, none shared: ten misses spare all ten.
    let ten: Vec<Prompt> = (1..=10)
        .map(|i| Prompt {
            tokens: BLOCK_TOKENS,
            blocks: vec![BlockHash(i)],
        })
        .collect();
    assert_eq!(floor(&ten), Some(10 * BLOCK_TOKENS));
    // One block sent three times: one miss, so two prompts pay their last token.
    assert_eq!(floor([&ten[0], &ten[0], &ten[0]]), Some(BLOCK_TOKENS + 2));
}

#[test]
fn no_floor_where_a_prompt_has_fewer_tokens_than_its_blocks() {
    let short = Prompt {
        tokens: BLOCK_TOKENS,
        blocks: vec![BlockHash(1), BlockHash(2)],
    };
    assert_eq!(floor([&short]), None);
    assert_eq!(floor(std::iter::empty()), Some(0));
}

#[test]
fn every_prompt_the_bench_sends_counts_its_blocks() {
    for tokens in (0..40_000).step_by(97) {
        let p = prompt(&[7, 8, 9, 10, 11, 12, 13, 14, 15, 16], tokens);
        assert!(p.counts_every_block(), "{tokens}: {p:?}");
        let p = prompt(&[], tokens);
        assert!(p.counts_every_block(), "{tokens}: {p:?}");
    }
}

#[test]
fn an_offered_request_s_prompt_is_the_one_the_bench_sends() {
    let r = Offered {
        source: 0,
        at: std::time::Duration::ZERO,
        input_tokens: 3 * BLOCK_TOKENS,
        output_tokens: 4,
        hash_ids: Some(std::sync::Arc::from([5u64, 6, 7].as_slice())),
    };
    let spec = crate::client::RequestSpec {
        id: "bench-0".into(),
        at: r.at,
        base_url: "http://127.0.0.1:1".into(),
        source: "us-east-1".into(),
        model: "m".into(),
        prompt_tokens: r.input_tokens,
        max_tokens: r.output_tokens,
        prompt: None,
        hash_ids: r.hash_ids.clone(),
    };
    let sent: Vec<ChatMessage> = serde_json::from_value(spec.messages()).unwrap();
    let p = Prompt::of(&r);
    assert_eq!(p, Prompt::of_messages(&sent));
    assert_eq!(p.tokens, 3 * BLOCK_TOKENS);
    assert_eq!(
        p.blocks.len(),
        2,
        "the canonical text's role line pushes the third block short"
    );
}

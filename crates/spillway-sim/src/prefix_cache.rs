//! The engine's prefix (KV) cache: which prompt blocks this region still holds, and how much of
//! a new prompt's prefill they save.
//!
//! # The model
//!
//! An engine with prefix caching (vLLM's automatic prefix caching, SGLang's radix cache) keeps
//! the KV of the prompts it has read, in blocks, and evicts the least recently used blocks when
//! its memory is full. A request whose prompt begins with blocks it still holds computes only
//! the rest: its time to first token shrinks with the cached part. That is what makes routing a
//! conversation back to the region that served its earlier turns worth something (issue 21).
//!
//! Here a block is 512 tokens of the prompt's canonical text, named by the chained hash of
//! [`spillway_proto::prefix`], the same ids the gateway computes. Per simulator (one region's
//! deployment of one model) the cache is an LRU set of block ids, `prefix_cache_blocks` long
//! ([`crate::SimConfig::prefix_cache_blocks`]; 0 turns it off and the simulator behaves exactly
//! as without it: no hashing, no `prompt_tokens_details`, the same timings).
//!
//! * **Lookup, when the plan is made** (the request has passed the faults and is about to ask
//!   the engine for a slot): the hit is the longest run of the prompt's leading blocks that are
//!   present; a block after the first miss is computed whatever the cache holds, because its
//!   KV depends on the missing one. A queued request keeps the hit it found on arrival: blocks
//!   that requests ahead of it compute while it waits are not counted for it (the model
//!   under-counts hits under queueing, never over-counts).
//! * **Prefill** reads `prompt_tokens - cached_tokens`, where `cached_tokens` is
//!   `hit_blocks × 512`, at most `prompt_tokens - 1`: as vLLM does when a whole prompt is
//!   cached, the last prompt token is always computed, since the first output token needs its
//!   logits. So a non-empty prompt always has at least one token of prefill.
//! * **Insert, when the prefill ends**: every full block of the prompt is inserted or touched,
//!   from the last to the first, so that the first block is the most recently used. Under
//!   eviction a prefix then loses its tail before its head, as vLLM frees a finished request's
//!   blocks tail first: an evicted head would make every block after it unreachable. A request
//!   cancelled before its prefill ends caches nothing (the engine discards a partial prefill).
//! * **Counters** ([`PrefixCacheStats`], `GET /admin/stats`, [`crate::SimHandle::stats`]): per
//!   request that got a slot, its hit blocks, its miss blocks (full blocks not served from the
//!   cache), its cached tokens and the prompt tokens it computed. Prompt tokens computed are
//!   counted with the cache off too, so a run with it and one without compare.
//!
//! # Why a small LRU of its own
//!
//! The cache needs three operations on `u64` ids: is it present, touch or insert it, evict the
//! oldest. A map from id to last-use stamp and an ordered map from stamp to id do all three in
//! O(log n) with safe code and no dependency; the LRU crates that would do it in O(1) (`lru`,
//! `hashlink`) each bring another major version of `hashbrown` into the build, which this
//! cannot use (a simulator looks up a few dozen blocks per request).
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use spillway_proto::ChatMessage;
use spillway_proto::prefix::{BLOCK_TOKENS, BlockHash, block_hashes};

/// A least-recently-used set of block ids with a capacity in blocks (at least 1).
#[derive(Debug)]
struct Lru {
    capacity: usize,
    /// Each id's last use.
    stamp_of: HashMap<BlockHash, u64>,
    /// Ids by last use, oldest first.
    by_stamp: BTreeMap<u64, BlockHash>,
    clock: u64,
    evicted: u64,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            stamp_of: HashMap::new(),
            by_stamp: BTreeMap::new(),
            clock: 0,
            evicted: 0,
        }
    }

    fn contains(&self, id: &BlockHash) -> bool {
        self.stamp_of.contains_key(id)
    }

    fn len(&self) -> usize {
        self.stamp_of.len()
    }

    /// Makes `id` the most recently used, inserting it (and evicting the least recently used
    /// id if the set is then over capacity).
    fn touch(&mut self, id: BlockHash) {
        self.clock += 1;
        if let Some(old) = self.stamp_of.insert(id, self.clock) {
            self.by_stamp.remove(&old);
        }
        self.by_stamp.insert(self.clock, id);
        while self.stamp_of.len() > self.capacity {
            let Some((_, oldest)) = self.by_stamp.pop_first() else {
                break;
            };
            self.stamp_of.remove(&oldest);
            self.evicted += 1;
        }
    }
}

/// What a simulator's prefix cache has done so far (`GET /admin/stats`, `prefix_cache`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixCacheStats {
    /// `prefix_cache_blocks`: 0 when the cache is off.
    pub capacity_blocks: u64,
    /// Blocks held now.
    pub resident_blocks: u64,
    /// Blocks evicted to make room.
    pub evicted_blocks: u64,
    /// Chat requests that got a slot (began their prefill).
    pub requests: u64,
    /// Leading prompt blocks found in the cache.
    pub hit_blocks: u64,
    /// Full prompt blocks not served from the cache (looked up and absent, or after the first
    /// absent one).
    pub miss_blocks: u64,
    /// Prompt tokens read from the cache (`usage.prompt_tokens_details.cached_tokens`, summed).
    pub cached_tokens: u64,
    /// Prompt tokens computed by prefill (with the cache off too).
    pub prefill_tokens: u64,
}

/// What one prompt found in the cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookup {
    /// The prompt's full blocks (empty with the cache off).
    blocks: Vec<BlockHash>,
    /// Leading blocks present.
    hit: usize,
    /// Prompt tokens read from the cache (`None` with the cache off).
    cached_tokens: Option<u64>,
    prompt_tokens: u64,
}

impl Lookup {
    /// `usage.prompt_tokens_details.cached_tokens` (`None`: the cache is off, no details).
    pub(crate) fn cached_tokens(&self) -> Option<u64> {
        self.cached_tokens
    }

    /// Prompt tokens the prefill computes.
    pub(crate) fn prefill_tokens(&self) -> u64 {
        self.prompt_tokens - self.cached_tokens.unwrap_or(0)
    }
}

/// Prompt tokens read from the cache when `hit` leading blocks are: never the last prompt
/// token (see the module docs).
fn cached_tokens(hit: usize, prompt_tokens: u64) -> u64 {
    (hit as u64)
        .saturating_mul(BLOCK_TOKENS)
        .min(prompt_tokens.saturating_sub(1))
}

/// One simulator's prefix cache and its counters.
#[derive(Debug)]
pub(crate) struct PrefixCache {
    /// `None`: the cache is off.
    lru: Option<Mutex<Lru>>,
    stats: Mutex<PrefixCacheStats>,
}

impl PrefixCache {
    pub(crate) fn new(capacity_blocks: u64) -> Self {
        let capacity = usize::try_from(capacity_blocks).unwrap_or(usize::MAX);
        PrefixCache {
            lru: (capacity > 0).then(|| Mutex::new(Lru::new(capacity))),
            stats: Mutex::new(PrefixCacheStats {
                capacity_blocks,
                ..PrefixCacheStats::default()
            }),
        }
    }

    fn lru(&self) -> Option<std::sync::MutexGuard<'_, Lru>> {
        self.lru
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn stats_mut(&self) -> std::sync::MutexGuard<'_, PrefixCacheStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks a prompt of `prompt_tokens` up: its leading blocks present. Changes nothing.
    pub(crate) fn lookup(&self, messages: &[ChatMessage], prompt_tokens: u64) -> Lookup {
        if self.lru.is_none() {
            return Lookup {
                prompt_tokens,
                ..Lookup::default()
            };
        }
        let blocks = block_hashes(messages);
        let hit = self.lru().map_or(0, |lru| {
            blocks.iter().take_while(|b| lru.contains(b)).count()
        });
        Lookup {
            cached_tokens: Some(cached_tokens(hit, prompt_tokens)),
            blocks,
            hit,
            prompt_tokens,
        }
    }

    /// The request got its slot and begins its prefill: it counts.
    pub(crate) fn started(&self, l: &Lookup) {
        let mut s = self.stats_mut();
        s.requests += 1;
        s.hit_blocks += l.hit as u64;
        s.miss_blocks += (l.blocks.len() - l.hit) as u64;
        s.cached_tokens += l.cached_tokens.unwrap_or(0);
        s.prefill_tokens += l.prefill_tokens();
    }

    /// The prefill ended: the prompt's full blocks are cached, the first most recently used.
    pub(crate) fn insert(&self, l: &Lookup) {
        if let Some(mut lru) = self.lru() {
            for b in l.blocks.iter().rev() {
                lru.touch(*b);
            }
        }
    }

    pub(crate) fn stats(&self) -> PrefixCacheStats {
        let (resident, evicted) = self
            .lru()
            .map_or((0, 0), |lru| (lru.len() as u64, lru.evicted));
        PrefixCacheStats {
            resident_blocks: resident,
            evicted_blocks: evicted,
            ..*self.stats_mut()
        }
    }
}

#[cfg(test)]
mod tests;

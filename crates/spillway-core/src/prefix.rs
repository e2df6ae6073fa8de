//! Where a prompt's prefix is likely still cached: a sans-IO, bounded-memory estimate.
//!
//! An inference engine keeps the KV cache of the prompts it prefilled (vLLM's and SGLang's
//! prefix caches) in blocks of a fixed number of tokens, each named by a hash of the whole
//! prefix up to it (`spillway_proto::prefix`), and evicts the least recently used blocks when
//! its memory is full. A request whose leading blocks are still there skips their prefill. The
//! gateway cannot ask an engine what it holds, but it knows where it sent every prompt, so it
//! can keep the same bookkeeping the engine does, approximately:
//!
//! * **One LRU per deployment, as its engine keeps.** For each deployment the blocks it was
//!   sent, each stamped with a counter of uses; [`PrefixIndex::record`] is called when a request
//!   is admitted there, and touches the blocks it had and inserts the others, evicting the least
//!   recently used (a request's last block first, so a prefix loses its tail before its head)
//!   beyond the deployment's capacity in blocks (what its KV cache holds, from the
//!   configuration). [`PrefixIndex::cached_blocks`] counts the leading blocks a deployment is
//!   expected to still hold. Only a *leading* run counts: a block is reusable only after every
//!   block before it, as in the engines. The mirror is exact for an engine that evicts by LRU
//!   and sees only this gateway's traffic; otherwise it is an estimate, and an error only moves
//!   a request's expected TTFT, never where it may go.
//! * **A time to live.** Engines also drop caches (restarts, preemption, other traffic the
//!   gateway does not see), so a block not used for `ttl` is not trusted.
//! * **Bounded memory.** A deployment keeps at most `min(capacity, max_entries)` blocks: a map
//!   from block to its stamp and an ordered map from stamp to block (the eviction order), so a
//!   lookup is O(1) and a use O(log n).
//!
//! The hashes are the keys as they are (they are xxh3 outputs, uniformly spread), so the maps
//! use a pass-through hasher rather than SipHash over a value that is already a hash.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use crate::DeploymentIx;

/// Tokens in one prefix block (as `spillway_proto::prefix::BLOCK_TOKENS`).
pub const BLOCK_TOKENS: u64 = 512;

/// How a profile's requests weigh where their prefix is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheAffinity {
    /// Cache-blind: routing as if no region cached anything.
    #[default]
    Off,
    /// The source keeps every request it has headroom for; among the other regions (a spill)
    /// the prefill a cache saves counts in the score.
    PreferSource,
    /// As `PreferSource`, and a request may also leave a source with headroom for a region of
    /// its set that is expected to answer sooner because it holds the prompt's prefix (the
    /// prefill saved is more than the round trip and a margin).
    On,
}

impl CacheAffinity {
    /// `off`, `prefer-source`, `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheAffinity::Off => "off",
            CacheAffinity::PreferSource => "prefer-source",
            CacheAffinity::On => "on",
        }
    }
}

/// A request's prompt as prefix blocks, and how its profile weighs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix<'a> {
    /// The hashes of the prompt's full blocks, in order (block k's names blocks 0..=k).
    pub blocks: &'a [u64],
    pub affinity: CacheAffinity,
}

impl Prefix<'_> {
    /// No prefix known, or cache-blind routing.
    pub const NONE: Prefix<'static> = Prefix {
        blocks: &[],
        affinity: CacheAffinity::Off,
    };

    /// Whether the cache counts for this request at all.
    pub fn weighed(&self) -> bool {
        self.affinity != CacheAffinity::Off && !self.blocks.is_empty()
    }
}

/// The estimate's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixConfig {
    /// Most blocks kept per deployment, whatever its capacity; bounds the memory.
    pub max_entries: usize,
    /// A block not used for this long is not trusted.
    pub ttl: Duration,
    /// Per deployment (by index), the blocks its KV cache holds; 0: it caches nothing.
    pub capacity_blocks: Vec<u64>,
}

/// One deployment's blocks, least recently used first.
#[derive(Debug, Clone, Default)]
struct Lru {
    capacity: usize,
    /// Uses so far: the next stamp.
    clock: u64,
    /// Block → (its last use's stamp, when).
    blocks: HashMap<u64, (u64, Duration), BuildHasherDefault<PassThrough>>,
    /// Stamp → block: the eviction order.
    order: BTreeMap<u64, u64>,
}

impl Lru {
    fn touch(&mut self, block: u64, now: Duration) {
        let stamp = self.clock;
        self.clock += 1;
        if let Some((old, _)) = self.blocks.insert(block, (stamp, now)) {
            self.order.remove(&old);
        }
        self.order.insert(stamp, block);
        while self.blocks.len() > self.capacity {
            let Some((_, evicted)) = self.order.pop_first() else {
                break;
            };
            self.blocks.remove(&evicted);
        }
    }
}

/// Most prompts kept in the log between two [`PrefixIndex::take_log`]s; older ones are dropped
/// (other instances then learn less, never anything wrong).
pub const LOG_CAP: usize = 4_096;

/// One prompt sent to a deployment, as logged for other gateway instances.
pub type Logged = (DeploymentIx, Vec<u64>);

/// The estimate (see the module docs).
#[derive(Debug, Clone)]
pub struct PrefixIndex {
    ttl: Duration,
    caches: Vec<Lru>,
    /// What `record` was told since the last `take_log` (`None`: not kept).
    log: Option<VecDeque<Logged>>,
}

impl PrefixIndex {
    pub fn new(cfg: PrefixConfig) -> Self {
        let caches = cfg
            .capacity_blocks
            .iter()
            .map(|c| Lru {
                capacity: usize::try_from(*c)
                    .unwrap_or(usize::MAX)
                    .min(cfg.max_entries),
                ..Lru::default()
            })
            .collect();
        PrefixIndex {
            ttl: cfg.ttl,
            caches,
            log: None,
        }
    }

    /// The leading blocks of `blocks` that `deployment` is expected to still hold at `now`.
    pub fn cached_blocks(&self, deployment: DeploymentIx, blocks: &[u64], now: Duration) -> usize {
        let Some(lru) = self.caches.get(deployment.0 as usize) else {
            return 0;
        };
        blocks
            .iter()
            .take_while(|b| {
                lru.blocks
                    .get(b)
                    .is_some_and(|(_, at)| now.saturating_sub(*at) <= self.ttl)
            })
            .count()
    }

    /// The prompt `blocks` was sent to `deployment` at `now`: it holds them all from now on
    /// (the ones it had are touched, the others inserted, as its engine does).
    pub fn record(&mut self, deployment: DeploymentIx, blocks: &[u64], now: Duration) {
        if let Some(log) = self.log.as_mut()
            && self
                .caches
                .get(deployment.0 as usize)
                .is_some_and(|c| c.capacity > 0)
            && !blocks.is_empty()
        {
            if log.len() >= LOG_CAP {
                log.pop_front();
            }
            log.push_back((deployment, blocks.to_vec()));
        }
        self.learn(deployment, blocks, now);
    }

    /// As [`record`](PrefixIndex::record), for a prompt another gateway instance sent at `at`:
    /// not logged again.
    pub fn learn(&mut self, deployment: DeploymentIx, blocks: &[u64], at: Duration) {
        let Some(lru) = self.caches.get_mut(deployment.0 as usize) else {
            return;
        };
        if lru.capacity == 0 {
            return;
        }
        // Last block first, as the engines free a request's blocks: under eviction a prefix
        // loses its tail before its head, which keeps the head reusable.
        for &block in blocks.iter().rev() {
            lru.touch(block, at);
        }
    }

    /// Keep a log of the prompts [`record`](PrefixIndex::record) is told about, for other
    /// gateway instances (see [`take_log`](PrefixIndex::take_log)), or stop.
    pub fn keep_log(&mut self, on: bool) {
        self.log = on.then(VecDeque::new);
    }

    /// The prompts recorded since the last call (empty when no log is kept).
    pub fn take_log(&mut self) -> Vec<Logged> {
        self.log
            .as_mut()
            .map(|log| log.drain(..).collect())
            .unwrap_or_default()
    }

    /// Blocks held now over all deployments, for tests and metrics.
    pub fn entries(&self) -> usize {
        self.caches.iter().map(|c| c.blocks.len()).sum()
    }
}

/// A hasher that passes a `u64` key through: the keys are hashes already.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; anything else is folded in, FNV-style.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests;

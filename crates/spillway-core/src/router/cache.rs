//! Cache affinity in the plan: the prefill a region's prefix cache is expected to save, and
//! when that is worth leaving the source for.
//!
//! A destination's score is its expected time to first token (`plan` module, step 3). When the
//! request's profile weighs the cache ([`CacheAffinity`] not `off`) and a deployment is expected
//! to hold the prompt's leading blocks ([`PrefixIndex`]), its prefill is shorter by those
//! tokens at the deployment's learned prefill rate, and so is its score:
//!
//! * **Spilling** (the source is full or unhealthy), the regions are ranked by that shorter
//!   TTFT, so a conversation spills where its prefix already is, when that is sooner.
//! * **`on` only: leaving a source with headroom.** Source first is the rule (`plan`, step 1);
//!   a request leaves it for a region of its set only when that region's expected TTFT, cache
//!   counted, is below the source's by more than [`LEAVE_MARGIN`] of the source's: a clear win
//!   in time, not a tie broken against locality. Headroom is checked as for any destination
//!   (only candidates with a free slot and quota are scored), so a cached region never takes
//!   more load than it has room for. And the moves are budgeted ([`MoveBudget`]): of the
//!   requests that find room in their source, at least `cache_min_locality` (0.9 by default)
//!   stay there, however much the caches elsewhere would save: when every region holds the
//!   same prompts, the margin alone would move a third of them.
//! * **`prefer-source`:** the source keeps every request it has headroom for; only spills
//!   weigh the cache.
//!
//! The estimate is fed with every request the router admits that carries blocks, first
//! attempts ([`Router::route`]) and failovers and continuations ([`Router::admit_next`]) alike,
//! whatever its profile's affinity, so turning affinity on finds it warm.
//!
//! **Checked against the upstream's own count.** An engine that reports the prompt tokens it
//! read from its cache (OpenAI's `prompt_tokens_details.cached_tokens`, vLLM and SGLang among
//! them) tells whether the estimate was right. Each deployment keeps the share of its estimated
//! cached tokens that its reports bore out (a fast EWMA, 1 until the first report), and the
//! saving it is credited with is scaled by it: an engine without prefix caching, or whose cache
//! keeps less than the model says (a smaller cache, traffic from outside this gateway), stops
//! drawing requests for its cache after a dozen or so reports, and the routing falls back to
//! cache-blind for it. An upstream that does not report keeps the estimate as it is.
use std::time::Duration;

use super::deployment::Entry;
use super::{DeploymentIx, RegionIx, RouteRequest, Router};
use crate::prefix::{BLOCK_TOKENS, CacheAffinity, Logged, PrefixConfig, PrefixIndex};

/// How much sooner (as a share of the source's expected TTFT) another region must be expected
/// to answer before a request leaves a source with headroom for it: a fifth, so that the
/// move is worth more than the noise in the learned rates and the locality it gives up.
pub const LEAVE_MARGIN: f64 = 0.2;

/// The most moves a source region may bank (see [`MoveBudget`]): after a quiet spell, a few
/// conversations in a row may still leave for their caches.
const MOVE_BURST: f64 = 4.0;

/// Cache affinity `on`: each source region's allowance of requests that may leave it while it
/// has room. Every `on` request that finds room in its source earns `1 − cache_min_locality`
/// of a move (banked up to [`MOVE_BURST`]), and a move spends one, so that over any stretch
/// at most that share of them (and the burst) leave: the locality the operator asked for
/// holds by construction, whatever the caches hold. Which requests move is the margin's
/// choice; the budget only says how many may.
#[derive(Debug, Clone, Default)]
pub(super) struct MoveBudget {
    /// Moves banked per source region (by `RegionIx`), starting at none.
    banked: Vec<f64>,
}

impl MoveBudget {
    /// Note an `on` request that found room in `source` and say whether it may leave (when
    /// `wants` to): earn, then spend one move if one is banked.
    fn allow(&mut self, source: RegionIx, min_locality: f64, wants: bool) -> bool {
        let ix = usize::from(source.0);
        if self.banked.len() <= ix {
            self.banked.resize(ix + 1, 0.0);
        }
        let earn = (1.0 - min_locality).clamp(0.0, 1.0);
        let bank = &mut self.banked[ix];
        *bank = (*bank + earn).min(MOVE_BURST);
        // (Ten tenths add up to a hair under 1 in floating point.)
        let allowed = wants && *bank >= 1.0 - 1e-9;
        if allowed {
            *bank = (*bank - 1.0).max(0.0);
        }
        allowed
    }
}

impl Router {
    /// Model each deployment's prefix cache (`cfg.capacity_blocks` by deployment index), or
    /// none (`None`, the default): then prefixes are never weighed.
    pub fn set_prefix_cache(&mut self, cfg: Option<PrefixConfig>) {
        self.prefix = cfg
            .filter(|c| c.capacity_blocks.iter().any(|b| *b > 0))
            .map(PrefixIndex::new);
    }

    /// The prompt `blocks` went to `deployment` at `now` (done by [`Router::route`] for the
    /// admitted step).
    pub fn record_prefix(&mut self, deployment: DeploymentIx, blocks: &[u64], now: Duration) {
        if let Some(ix) = self.prefix.as_mut() {
            ix.record(deployment, blocks, now);
        }
    }

    /// Keep a log of the prompts recorded, for other gateway instances to learn from
    /// ([`Router::take_prefix_log`], [`Router::learn_prefix`]), or stop.
    pub fn log_prefixes(&mut self, on: bool) {
        if let Some(ix) = self.prefix.as_mut() {
            ix.keep_log(on);
        }
    }

    /// The prompts recorded since the last call, by deployment (empty without a log).
    pub fn take_prefix_log(&mut self) -> Vec<Logged> {
        self.prefix
            .as_mut()
            .map(PrefixIndex::take_log)
            .unwrap_or_default()
    }

    /// A prompt another gateway instance sent to `deployment` at `at`: held there from then.
    pub fn learn_prefix(&mut self, deployment: DeploymentIx, blocks: &[u64], at: Duration) {
        if let Some(ix) = self.prefix.as_mut() {
            ix.learn(deployment, blocks, at);
        }
    }

    /// The leading blocks of `blocks` that `deployment` is expected to hold (0 without a model).
    pub fn cached_blocks(&self, deployment: DeploymentIx, blocks: &[u64], now: Duration) -> usize {
        self.prefix
            .as_ref()
            .map_or(0, |ix| ix.cached_blocks(deployment, blocks, now))
    }

    /// The share of the cached tokens expected on `deployment` that its upstream's reports bore
    /// out (1 before any report, or for an unknown deployment): the factor on the prefill its
    /// cache is credited with. Exported as `spillway_deployment_prefix_cache_trust`.
    pub fn prefix_cache_trust(&self, deployment: DeploymentIx) -> f64 {
        self.deployments
            .get(deployment.0 as usize)
            .map_or(1.0, |d| d.cache_trust())
    }

    /// The input tokens of `req` that `deployment` is expected to hold in its prefix cache:
    /// its cached leading blocks' tokens, at most the input less one (which every request
    /// prefills); 0 without blocks or a cache model.
    pub(super) fn cached_tokens(
        &self,
        deployment: DeploymentIx,
        req: &RouteRequest<'_>,
        now: Duration,
    ) -> u64 {
        self.cached_tokens_of(deployment, req.prefix.blocks, req.input_tokens, now)
    }

    /// [`cached_tokens`](Router::cached_tokens) of a prompt of `input_tokens` whose prefix
    /// blocks are `blocks`.
    pub(super) fn cached_tokens_of(
        &self,
        deployment: DeploymentIx,
        blocks: &[u64],
        input_tokens: u64,
        now: Duration,
    ) -> u64 {
        if blocks.is_empty() {
            return 0;
        }
        let held = self.cached_blocks(deployment, blocks, now) as u64;
        (held * BLOCK_TOKENS).min(input_tokens.saturating_sub(1))
    }

    /// The prefill time (ns) the cache of `deployment` is expected to save `req`: its
    /// [`cached_tokens`](Router::cached_tokens) at the deployment's learned prefill rate, times
    /// the share of its estimates the upstream's reports bore out; 0 when the profile is
    /// cache-blind or nothing is learned yet.
    pub(super) fn saved_ns(
        &self,
        deployment: DeploymentIx,
        req: &RouteRequest<'_>,
        now: Duration,
    ) -> f64 {
        if !req.prefix.weighed() {
            return 0.0;
        }
        let Some(d) = self.deployments.get(deployment.0 as usize) else {
            return 0.0;
        };
        let Some(rate) = d.prefill_ns_per_token() else {
            return 0.0;
        };
        self.cached_tokens(deployment, req, now) as f64 * rate * d.cache_trust()
    }

    /// `on` only: the destination a source with headroom (`eligible[local]`) should leave for,
    /// if one is expected to answer sooner by more than [`LEAVE_MARGIN`] (scores are the
    /// expected TTFTs with the cache counted), and within the source's [`MoveBudget`]: a
    /// request that finds no move banked stays.
    pub(super) fn leave_source_for(
        &mut self,
        req: &RouteRequest<'_>,
        eligible: &[Entry],
        local: usize,
    ) -> Option<usize> {
        if req.prefix.affinity != CacheAffinity::On {
            return None;
        }
        let stay = eligible[local].score;
        let to = eligible
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.local && e.saved > 0.0)
            .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .filter(|(_, e)| e.score < stay * (1.0 - LEAVE_MARGIN))
            .map(|(i, _)| i);
        let min_locality = self.cfg.cache_min_locality;
        let allowed = self.moves.allow(req.source, min_locality, to.is_some());
        to.filter(|_| allowed)
    }
}

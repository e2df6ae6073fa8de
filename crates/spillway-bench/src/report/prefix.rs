//! The prefix-cache lines of the report: each policy's hit rate and prompt tokens prefilled,
//! against cache-blind Spillway's and against the floor of the requests it served
//! ([`crate::prefill_floor`]); a policy below its floor is a breach, as one above the oracle is.
use std::fmt::Write as _;

use serde::Serialize;

use super::BenchReport;

/// What the simulators' prefix (KV) caches did over one policy's run, summed over regions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PrefixFigures {
    /// Leading prompt blocks found in a cache.
    pub hit_blocks: u64,
    /// Full prompt blocks prefilled again.
    pub miss_blocks: u64,
    /// Prompt tokens prefilled (the cached ones not counted).
    pub prefill_tokens: u64,
    /// The fewest prompt tokens any router could have had prefilled to serve the requests this
    /// policy served ([`crate::prefill_floor::floor`]); `None` where it is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_tokens: Option<u64>,
}

impl PrefixFigures {
    /// Hit blocks as a share of the full blocks looked up (0 when none was).
    pub fn hit_rate(&self) -> f64 {
        let all = self.hit_blocks + self.miss_blocks;
        if all == 0 {
            0.0
        } else {
            self.hit_blocks as f64 / all as f64
        }
    }

    /// Prefilled below the floor: the floor is wrong for this run.
    fn below_floor(&self) -> bool {
        self.floor_tokens.is_some_and(|f| self.prefill_tokens < f)
    }
}

/// The yardstick of the prefix lines: Spillway's policy, cache-blind.
const CACHE_BLIND: &str = "spillway";

/// Each policy's prefix-cache hit rate and prefill tokens, the latter against cache-blind
/// Spillway's when it ran and against the policy's floor when it is known.
pub(super) fn prefix_lines(out: &mut String, r: &BenchReport) {
    let blind = r
        .policies
        .iter()
        .find(|p| p.name == CACHE_BLIND)
        .and_then(|p| p.prefix)
        .map(|f| f.prefill_tokens as f64)
        .filter(|t| *t > 0.0);
    for p in &r.policies {
        let Some(f) = p.prefix else { continue };
        let mut versus = Vec::new();
        if let Some(b) = blind.filter(|_| p.name != CACHE_BLIND) {
            versus.push(format!(
                "{:.2}x {CACHE_BLIND}'s",
                f.prefill_tokens as f64 / b
            ));
        }
        if let Some(floor) = f.floor_tokens.filter(|t| *t > 0) {
            let ratio = f.prefill_tokens as f64 / floor as f64;
            versus.push(if f.below_floor() {
                format!("BELOW its floor of {floor}")
            } else {
                format!(
                    "{ratio:.2}x its floor of {floor}: at most {:.0}% less possible",
                    (1.0 - 1.0 / ratio) * 100.0
                )
            });
        }
        let versus = if versus.is_empty() {
            String::new()
        } else {
            format!(" ({})", versus.join("; "))
        };
        let _ = writeln!(
            out,
            "prefix cache: {} {:.1}% of blocks hit, {} prompt tokens prefilled{versus}; {:.1}% local where the source had room",
            p.name,
            f.hit_rate() * 100.0,
            f.prefill_tokens,
            p.headroom_locality * 100.0
        );
    }
}

/// One message per policy that prefilled fewer tokens than its floor.
pub(super) fn prefix_breaches(r: &BenchReport) -> Vec<String> {
    r.policies
        .iter()
        .filter_map(|p| Some((p, p.prefix.filter(PrefixFigures::below_floor)?)))
        .map(|(p, f)| {
            format!(
                "{} prefilled {} prompt tokens, below the floor of {} for the requests it served: the floor is wrong for this run (setup: {})",
                p.name,
                f.prefill_tokens,
                f.floor_tokens.unwrap_or_default(),
                r.setup.arrivals
            )
        })
        .collect()
}

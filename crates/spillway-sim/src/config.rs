//! The simulator's static configuration: one region's engine, its capacity and its speed.
use std::time::Duration;

use crate::SimError;

/// How one simulated regional engine behaves. Faults are separate ([`crate::Fault`]) because they
/// change at run time; this is fixed for the life of the server.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The region this engine stands for; reported in `x-sim-region` and in every record.
    pub region: String,
    /// Concurrent sequences (continuous-batching slots). Default 8.
    pub concurrency: u32,
    /// Requests allowed to wait for a slot; one more is answered 429. Default 16.
    pub queue_limit: u32,
    /// Prompt tokens processed per second during prefill. Default 4000.
    pub prefill_tokens_per_sec: f64,
    /// Output tokens per second, per sequence. Default 50.
    pub decode_tokens_per_sec: f64,
    /// Injected network round trip, slept before anything else. Not divided by `time_scale`:
    /// the network does not get faster when a trace is replayed faster.
    pub rtt: Duration,
    /// Service times (prefill, decode) are divided by this. Default 1.
    pub time_scale: f64,
    /// Output length when the request sets neither `max_completion_tokens` nor `max_tokens`.
    pub default_max_tokens: u64,
    /// Seed of the generator that samples `error_rate`: a property of this region's engine.
    pub seed: u64,
    /// The model's "weights": `None` writes the same words for every prompt (`VOCAB` in order,
    /// [`crate::completion_text`]); `Some(s)` writes words chosen by `s` and the prompt
    /// ([`crate::seeded_text`] of [`crate::prompt_fingerprint`]), so different prompts get
    /// different answers and a continuation is checkable. Give every region of a model the same
    /// text seed: they serve the same model, so they answer a prompt alike. Default `None`.
    pub text_seed: Option<u64>,
    /// Prefix (KV) cache capacity, in blocks of 512 prompt tokens
    /// ([`spillway_proto::prefix`]): a prompt whose leading blocks are cached prefills only the
    /// rest, and its usage reports `prompt_tokens_details.cached_tokens` (see
    /// `prefix_cache.rs`). 0, the default, turns the cache off: every prompt is prefilled whole
    /// and usage has no details, as before the cache existed.
    pub prefix_cache_blocks: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            region: "local".to_string(),
            concurrency: 8,
            queue_limit: 16,
            prefill_tokens_per_sec: 4000.0,
            decode_tokens_per_sec: 50.0,
            rtt: Duration::ZERO,
            time_scale: 1.0,
            default_max_tokens: 16,
            seed: 0,
            text_seed: None,
            prefix_cache_blocks: 0,
        }
    }
}

impl SimConfig {
    /// Rejects a configuration the capacity model cannot run: no slots, or a rate or time scale
    /// that is not a positive number (infinity is allowed and means "takes no time").
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |what: String| Err(SimError::InvalidConfig(what));
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1".into());
        }
        for (name, v) in [
            ("prefill_tokens_per_sec", self.prefill_tokens_per_sec),
            ("decode_tokens_per_sec", self.decode_tokens_per_sec),
            ("time_scale", self.time_scale),
        ] {
            if v.is_nan() || v <= 0.0 {
                return invalid(format!("{name} must be > 0, got {v}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = SimConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(
            (c.concurrency, c.queue_limit, c.default_max_tokens),
            (8, 16, 16)
        );
    }

    #[test]
    fn rejects_unrunnable_configs() {
        let bad = [
            SimConfig {
                concurrency: 0,
                ..SimConfig::default()
            },
            SimConfig {
                time_scale: 0.0,
                ..SimConfig::default()
            },
            SimConfig {
                decode_tokens_per_sec: f64::NAN,
                ..SimConfig::default()
            },
            SimConfig {
                prefill_tokens_per_sec: -1.0,
                ..SimConfig::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(SimError::InvalidConfig(_))),
                "{c:?}"
            );
        }
        let fast = SimConfig {
            time_scale: f64::INFINITY,
            ..SimConfig::default()
        };
        assert!(fast.validate().is_ok());
    }
}

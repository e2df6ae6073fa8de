//! Faults switched on at run time, and the seeded sampling of `error_rate`.
//!
//! A fault is read when a request arrives (after the injected RTT), so changing it affects new
//! requests only; a request already queued or decoding keeps the behaviour it started with. That
//! is what a gateway sees when a region degrades: the requests it sends from now on fail.
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What is wrong with this region right now. `Fault::default()` (or `{}` on the wire) is healthy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Every new request is answered 503 (`server_error`) at once.
    pub outage: bool,
    /// Probability that a request is answered 500 before it starts.
    pub error_rate: f64,
    /// Requests never get a first byte (no headers) until the client goes away.
    pub hang: bool,
    /// Brown-out: service times are multiplied by this when it is above 1 (0 or 1 = normal).
    pub slow_factor: f64,
    /// Streaming: the connection is aborted after this many content tokens. Non-streaming: the
    /// connection is aborted instead of responding. Either way only if the response would have
    /// reached that many tokens.
    pub break_after_tokens: Option<u64>,
    /// A 429 storm: every new request is answered 429 (`rate_limit_error`) at once, as a
    /// provider's rate limiter does, whatever the engine's load.
    pub throttle: bool,
    /// With `throttle`: the `Retry-After` to send, in milliseconds (`Retry-After` in whole
    /// seconds rounded up, and `retry-after-ms`). `None`: the 429 carries no `Retry-After` at all.
    pub throttle_retry_after_ms: Option<u64>,
    /// Connection reset: every new request's connection is closed without any response (no
    /// status line), streamed or not.
    pub reset: bool,
    /// A hang after the first byte. Streaming: after this many content tokens (0: right after
    /// the role chunk) no more bytes come until the client goes away. Non-streaming: the
    /// response head (200) goes out and its body never does. Only if the response would have
    /// reached that many tokens; the request keeps its slot while it hangs.
    pub stall_after_tokens: Option<u64>,
    /// An engine error mid-answer. Streaming: after this many content tokens (0: right after
    /// the role chunk) the stream sends one SSE error event,
    /// `data: {"error":{"message":…,"type":"server_error","param":null,"code":"engine_error"}}`,
    /// and ends cleanly: no finish chunk, no usage, no `[DONE]`. Non-streaming: the request is
    /// answered 500 (`server_error`, `engine_error`) once that many tokens are decoded. Only if
    /// the response would have reached that many tokens; recorded as `error` with the tokens
    /// produced. Where it coincides with `break_after_tokens` the break wins; with
    /// `stall_after_tokens`, the error.
    pub error_event_after_tokens: Option<u64>,
}

impl Fault {
    /// The multiplier applied to prefill and decode times: `slow_factor` when above 1, else 1.
    pub fn service_multiplier(&self) -> f64 {
        if self.slow_factor > 1.0 {
            self.slow_factor
        } else {
            1.0
        }
    }

    /// Rejects values that have no meaning (used by `POST /admin/fault`).
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate must be in [0, 1], got {}",
                self.error_rate
            ));
        }
        if self.slow_factor.is_nan() || self.slow_factor < 0.0 || self.slow_factor.is_infinite() {
            return Err(format!(
                "slow_factor must be a finite number >= 0, got {}",
                self.slow_factor
            ));
        }
        if self.throttle_retry_after_ms.is_some() && !self.throttle {
            return Err("throttle_retry_after_ms needs throttle".to_string());
        }
        Ok(())
    }
}

/// The current fault and the generator that samples its error rate.
pub(crate) struct FaultState {
    current: Mutex<Fault>,
    rng: Mutex<SmallRng>,
}

impl FaultState {
    pub(crate) fn new(seed: u64) -> Self {
        FaultState {
            current: Mutex::new(Fault::default()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }

    pub(crate) fn get(&self) -> Fault {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, fault: Fault) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Draws whether this request fails with probability `rate` (clamped to [0, 1]). A rate of 0
    /// draws nothing, so turning errors on later does not depend on how many requests came before.
    pub(crate) fn sample_error(&self, rate: f64) -> bool {
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        let draw: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        draw < rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_healthy_and_unknown_fields_are_rejected() {
        let f: Fault = serde_json::from_str("{}").unwrap();
        assert_eq!(f, Fault::default());
        assert!(serde_json::from_str::<Fault>(r#"{"outage":true,"oops":1}"#).is_err());
        let f: Fault = serde_json::from_str(r#"{"break_after_tokens":3}"#).unwrap();
        assert_eq!(f.break_after_tokens, Some(3));
        let f: Fault = serde_json::from_str(
            r#"{"throttle":true,"throttle_retry_after_ms":1500,"reset":true,"stall_after_tokens":0}"#,
        )
        .unwrap();
        assert!(f.throttle && f.reset);
        assert_eq!(
            (f.throttle_retry_after_ms, f.stall_after_tokens),
            (Some(1500), Some(0))
        );
        let f: Fault = serde_json::from_str(r#"{"error_event_after_tokens":4}"#).unwrap();
        assert_eq!(f.error_event_after_tokens, Some(4));
        let back: Fault = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn multiplier_ignores_values_at_or_below_one() {
        for (s, m) in [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (3.0, 3.0)] {
            let f = Fault {
                slow_factor: s,
                ..Fault::default()
            };
            assert_eq!(f.service_multiplier(), m);
        }
    }

    #[test]
    fn validation() {
        assert!(Fault::default().validate().is_ok());
        assert!(
            Fault {
                error_rate: 1.5,
                ..Fault::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Fault {
                slow_factor: -1.0,
                ..Fault::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Fault {
                slow_factor: f64::NAN,
                ..Fault::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Fault {
                throttle_retry_after_ms: Some(1000),
                ..Fault::default()
            }
            .validate()
            .is_err(),
            "a Retry-After without the storm means nothing"
        );
    }

    #[test]
    fn error_sampling_is_seeded_and_roughly_right() {
        let draws = |seed| {
            let s = FaultState::new(seed);
            (0..1000).map(|_| s.sample_error(0.3)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        let hits = draws(7).iter().filter(|b| **b).count();
        assert!((200..400).contains(&hits), "{hits}");
        let s = FaultState::new(0);
        assert!(!s.sample_error(0.0));
        assert!(s.sample_error(1.0));
    }
}

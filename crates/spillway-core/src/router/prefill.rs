//! A deployment's TTFT as a line in the prompt's length: `fixed + per token × tokens`.
//!
//! # Why a line and not a ratio
//!
//! The gateway measures a TTFT from when it sends the request to when the first token comes
//! back. That is the engine's prefill, which grows with the prompt, plus a part that does not:
//! the round trip to the region, the gateway's and the engine's own handling. The ratio of the
//! mean TTFT to the mean prompt spreads that fixed part over the tokens. Where the ratio stands
//! for a TTFT (a prompt near the mean), that is harmless. Where it stands for how long a
//! running request holds the engine's slot ([`Deployment::expected_wait`]), it is not: the slot
//! is held for the prefill and the decode only, and the fixed part makes every running
//! request look that much later to end. Step 2's wait is allowed within a few tens of ms of a
//! spill's TTFT, so tens of ms of error decide it.
//!
//! In the replay (`policy_replay --ttft-overhead-ms 90`: the router learns the TTFT with the
//! round trip and a 90 ms overhead, about what the bench's gateway adds at `--time-scale 30`,
//! where 3 ms of wall clock are 90 ms of trace time), the ratio granted a quarter of step 2's
//! waits on a long trace (54 against 231), and locality fell 0.6–1.5 points on the long and
//! Mooncake traces, with 15–27 requests fewer served. Read as a line, the slope is the prefill
//! rate whatever the fixed part, and the replay reads within 0.15 point of locality on those
//! traces with 0 to 90 ms of overhead (`docs/BENCHMARKS.md`).
//!
//! # The fit
//!
//! Least squares over slow EWMAs of the prompt length `n`, the TTFT `t`, `n²` and `n·t` (the
//! weight of [`SHAPE_ALPHA`](super::deployment) per request): `per token = cov(n, t) / var(n)`,
//! clamped to `0 ..= mean t / mean n`, so the fixed part is never negative and the line never
//! falls below zero. When the prompts hardly differ (their spread under [`MIN_SPREAD`] of the
//! mean), the slope is not known and the ratio stands in: the line and the ratio then agree on
//! every prompt that is seen.

/// The least spread of the prompt lengths (standard deviation ÷ mean) at which the slope is
/// read from them.
pub(super) const MIN_SPREAD: f64 = 0.01;

/// EWMAs of a deployment's prompt lengths and TTFTs (ns), enough to fit a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PrefillLine {
    input: f64,
    ttft: f64,
    input_sq: f64,
    input_ttft: f64,
}

impl PrefillLine {
    /// The first request's prompt (tokens) and TTFT (ns).
    pub(super) fn first(input: f64, ttft: f64) -> Self {
        PrefillLine {
            input,
            ttft,
            input_sq: input * input,
            input_ttft: input * ttft,
        }
    }

    /// One more request, weighted `alpha`.
    pub(super) fn learn(&mut self, input: f64, ttft: f64, alpha: f64) {
        self.input += alpha * (input - self.input);
        self.ttft += alpha * (ttft - self.ttft);
        self.input_sq += alpha * (input * input - self.input_sq);
        self.input_ttft += alpha * (input * ttft - self.input_ttft);
    }

    /// The mean TTFT (ns).
    pub(super) fn mean_ttft(&self) -> f64 {
        self.ttft
    }

    /// The mean prompt (tokens).
    pub(super) fn mean_input(&self) -> f64 {
        self.input
    }

    /// The mean TTFT per mean prompt token (ns), fixed part included: 0 without input.
    pub(super) fn ratio(&self) -> f64 {
        if self.input > 0.0 {
            self.ttft / self.input
        } else {
            0.0
        }
    }

    /// The prefill time of one more prompt token (ns): the line's slope (see the module doc).
    pub(super) fn per_token(&self) -> f64 {
        let ratio = self.ratio();
        let var = self.input_sq - self.input * self.input;
        let spread = MIN_SPREAD * self.input;
        if self.input <= 0.0 || var <= spread * spread {
            return ratio;
        }
        let cov = self.input_ttft - self.input * self.ttft;
        (cov / var).clamp(0.0, ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(points: &[(f64, f64)]) -> PrefillLine {
        let mut line = PrefillLine::first(points[0].0, points[0].1);
        for _ in 0..400 {
            for &(n, t) in points {
                line.learn(n, t, 1.0 / 32.0);
            }
        }
        line
    }

    #[test]
    fn the_slope_leaves_the_fixed_part_out() {
        // 90 ms fixed, 0.25 ms per token, prompts of 3,000 to 4,096 tokens.
        let ms = 1e6;
        let pts: Vec<(f64, f64)> = [3_000.0, 3_500.0, 4_096.0, 4_096.0, 4_096.0]
            .iter()
            .map(|&n| (n, 90.0 * ms + 0.25 * ms * n))
            .collect();
        let line = fit(&pts);
        assert!((line.per_token() - 0.25 * ms).abs() < 0.01 * ms, "{line:?}");
        assert!(line.ratio() > 0.27 * ms, "the ratio carries the fixed part");
    }

    #[test]
    fn without_spread_the_ratio_stands_in() {
        let line = fit(&[(4_096.0, 1.1e9)]);
        assert_eq!(line.per_token(), line.ratio());
        assert!((line.ratio() - 1.1e9 / 4_096.0).abs() < 1.0);
    }

    #[test]
    fn the_slope_stays_within_zero_and_the_ratio() {
        // TTFT falling with the prompt (noise, a cache): the slope is 0, never negative.
        let falling = fit(&[(1_000.0, 2e9), (4_000.0, 1e9)]);
        assert_eq!(falling.per_token(), 0.0);
        // Steeper than the ratio would need a negative fixed part: the ratio.
        let steep = fit(&[(1_000.0, 0.0), (4_000.0, 4e9)]);
        assert_eq!(steep.per_token(), steep.ratio());
        let empty = PrefillLine::first(0.0, 1e9);
        assert_eq!(empty.per_token(), 0.0);
    }
}

//! Adaptive concurrency limit (AIMD).
//!
//! A deployment's declared `max_in_flight` is what the operator believes it can take; what it
//! can take *right now* may be less (a noisy neighbour, a brown-out, a provider-side rate limit
//! that is not in the config). The router learns it the way TCP learns a congestion window:
//!
//! * **additive increase** — each success adds `1 / current`, so the limit grows by one after
//!   `current` successes (one "window" of work), never above the declared maximum;
//! * **multiplicative decrease** — an overload signal (upstream 429, a timeout) multiplies the
//!   limit by `decrease_factor` (e.g. 0.75), never below `min_limit`.
//!
//! The limit is kept as an `f64` so the fractional part of the increase is not lost;
//! [`current`](AdaptiveLimit::current) is its floor, at least 1 (and at most the declared
//! maximum: a deployment declared with `max_in_flight = 0` admits nothing).

#[derive(Debug, Clone)]
pub struct AimdConfig {
    /// Floor of the limit.
    pub min_limit: u32,
    /// Multiplicative decrease on an overload signal (e.g. 0.75).
    pub decrease_factor: f64,
}

#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    max: u32,
    limit: f64,
}

impl AdaptiveLimit {
    /// Starts at `max` (the declared max in-flight), never exceeds it.
    pub fn new(max: u32) -> Self {
        AdaptiveLimit {
            max,
            limit: f64::from(max),
        }
    }

    pub fn current(&self) -> u32 {
        // `as` saturates. The epsilon absorbs rounding in sums of 1/n (1/3 + 1/3 + 1/3 < 1.0).
        ((self.limit + 1e-9).floor() as u32).max(1).min(self.max)
    }

    /// The declared maximum.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Success: additive increase (+1 per `current` successes), capped at max.
    pub fn on_success(&mut self) {
        let step = 1.0 / f64::from(self.current().max(1));
        self.limit = (self.limit + step).min(f64::from(self.max));
    }

    /// Overload (upstream 429, timeout): multiplicative decrease, floored at min_limit.
    pub fn on_overload(&mut self, cfg: &AimdConfig) {
        let factor = if cfg.decrease_factor.is_nan() {
            1.0
        } else {
            cfg.decrease_factor.clamp(0.0, 1.0)
        };
        let floor = f64::from(cfg.min_limit.max(1).min(self.max));
        self.limit = (self.limit * factor).max(floor).min(f64::from(self.max));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: AimdConfig = AimdConfig {
        min_limit: 2,
        decrease_factor: 0.75,
    };

    #[test]
    fn starts_at_max_and_never_exceeds_it() {
        let mut l = AdaptiveLimit::new(8);
        assert_eq!(l.current(), 8);
        assert_eq!(l.max(), 8);
        for _ in 0..100 {
            l.on_success();
        }
        assert_eq!(l.current(), 8);
    }

    #[test]
    fn decreases_multiplicatively_to_the_floor() {
        let mut l = AdaptiveLimit::new(16);
        l.on_overload(&CFG);
        assert_eq!(l.current(), 12);
        l.on_overload(&CFG);
        assert_eq!(l.current(), 9);
        for _ in 0..20 {
            l.on_overload(&CFG);
        }
        assert_eq!(l.current(), 2);
    }

    #[test]
    fn recovers_additively_keeping_fractions() {
        let mut l = AdaptiveLimit::new(16);
        for _ in 0..20 {
            l.on_overload(&CFG);
        }
        assert_eq!(l.current(), 2);
        l.on_success();
        assert_eq!(l.current(), 2, "half a step");
        l.on_success();
        assert_eq!(l.current(), 3, "+1 after `current` successes");
        for _ in 0..3 {
            l.on_success();
        }
        assert_eq!(l.current(), 4);
        let mut n = 0;
        while l.current() < 16 {
            l.on_success();
            n += 1;
        }
        // 4+5+…+15 successes to climb from 4 to 16.
        assert_eq!(n, (4..16).sum::<u32>());
    }

    #[test]
    fn at_least_one_and_zero_max_admits_nothing() {
        let mut l = AdaptiveLimit::new(4);
        l.on_overload(&AimdConfig {
            min_limit: 0,
            decrease_factor: 0.0,
        });
        assert_eq!(l.current(), 1);
        l.on_overload(&AimdConfig {
            min_limit: 0,
            decrease_factor: f64::NAN,
        });
        assert_eq!(l.current(), 1);
        let mut z = AdaptiveLimit::new(0);
        z.on_success();
        z.on_overload(&CFG);
        assert_eq!(z.current(), 0);
    }
}

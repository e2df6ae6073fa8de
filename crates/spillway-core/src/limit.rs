//! Adaptive concurrency limit (AIMD) (API contract; bodies to be implemented).

#[derive(Debug, Clone)]
pub struct AimdConfig {
    /// Floor of the limit.
    pub min_limit: u32,
    /// Multiplicative decrease on an overload signal (e.g. 0.75).
    pub decrease_factor: f64,
}

#[derive(Debug, Clone)]
pub struct AdaptiveLimit {/* private */}

impl AdaptiveLimit {
    /// Starts at `max` (the declared max in-flight), never exceeds it.
    pub fn new(_max: u32) -> Self {
        todo!()
    }
    pub fn current(&self) -> u32 {
        todo!()
    }
    /// Success: additive increase (+1 per `current` successes), capped at max.
    pub fn on_success(&mut self) {
        todo!()
    }
    /// Overload (upstream 429, timeout): multiplicative decrease, floored at min_limit.
    pub fn on_overload(&mut self, _cfg: &AimdConfig) {
        todo!()
    }
}

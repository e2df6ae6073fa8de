//! Health state machine per deployment (API contract; bodies to be implemented).
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Consecutive failures that eject a deployment (open the circuit).
    pub failure_threshold: u32,
    /// First ejection length; doubles on each failed half-open probe, up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

/// Closed (serving) → Open (ejected until t) → HalfOpen (one probe in flight) → Closed | Open.
#[derive(Debug, Clone)]
pub struct Health {/* private */}

impl Health {
    pub fn new() -> Self {
        todo!()
    }
    /// May a request be sent now? In half-open, true only while no probe is in flight.
    pub fn is_available(&self, _now: Duration) -> bool {
        todo!()
    }
    /// Called when a request is actually sent (marks the half-open probe as taken).
    pub fn on_attempt(&mut self, _now: Duration) {
        todo!()
    }
    pub fn on_success(&mut self, _now: Duration) {
        todo!()
    }
    pub fn on_failure(&mut self, _cfg: &HealthConfig, _now: Duration) {
        todo!()
    }
    /// Until when the deployment is ejected, if it is.
    pub fn ejected_until(&self, _now: Duration) -> Option<Duration> {
        todo!()
    }
}

//! Global retry budget (API contract; bodies to be implemented).
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryBudgetConfig {
    /// Retries allowed per request (e.g. 0.2 = one retry per five requests) ...
    pub ratio: f64,
    /// ... plus this many retries per second regardless of traffic.
    pub min_per_sec: f64,
    /// Cap on the saved-up balance.
    pub max_balance: f64,
}

#[derive(Debug, Clone)]
pub struct RetryBudget {/* private */}

impl RetryBudget {
    pub fn new(_cfg: RetryBudgetConfig, _now: Duration) -> Self {
        todo!()
    }
    pub fn deposit(&mut self, _now: Duration) {
        todo!()
    }
    pub fn try_withdraw(&mut self, _now: Duration) -> bool {
        todo!()
    }
}

//! Quota arithmetic: token buckets, reserve up front and settle to actual usage
//! (API contract; bodies to be implemented).
use std::time::Duration;

/// A token bucket holding at most `capacity`, refilled at `capacity` per `period`.
#[derive(Debug, Clone)]
pub struct TokenBucket {/* private */}

impl TokenBucket {
    pub fn new(_capacity: u64, _period: Duration, _now: Duration) -> Self {
        todo!()
    }
    pub fn capacity(&self) -> u64 {
        todo!()
    }
    /// Available now (after refill).
    pub fn available(&mut self, _now: Duration) -> u64 {
        todo!()
    }
    /// Take `n` if available; false (and nothing taken) otherwise.
    pub fn try_take(&mut self, _n: u64, _now: Duration) -> bool {
        todo!()
    }
    /// Take `n` unconditionally (the level may go negative: a debt repaid by refill).
    pub fn force_take(&mut self, _n: u64, _now: Duration) {
        todo!()
    }
    /// Give back `n` (never above capacity).
    pub fn refund(&mut self, _n: u64, _now: Duration) {
        todo!()
    }
    /// How long until `n` would be available (zero if now).
    pub fn time_until(&mut self, _n: u64, _now: Duration) -> Duration {
        todo!()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// One tenant quota (tenant x model x source region x in-region/cross-region): an RPM bucket and
/// a TPM bucket.
#[derive(Debug, Clone)]
pub struct QuotaBucket {/* private */}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Reservation {
    pub tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quota exhausted; retry after {retry_after:?}")]
pub struct QuotaDenied {
    pub retry_after: Duration,
}

impl QuotaBucket {
    pub fn new(_limits: QuotaLimits, _now: Duration) -> Self {
        todo!()
    }
    /// Reserve one request and `est_tokens` tokens, all or nothing.
    pub fn reserve(&mut self, _est_tokens: u64, _now: Duration) -> Result<Reservation, QuotaDenied> {
        todo!()
    }
    /// Settle a reservation to the actual usage: refund the unused part, or charge the excess.
    pub fn settle(&mut self, _r: Reservation, _actual_tokens: u64, _now: Duration) {
        todo!()
    }
    /// Cancel a reservation entirely (request never sent upstream): refunds request and tokens.
    pub fn cancel(&mut self, _r: Reservation, _now: Duration) {
        todo!()
    }
}

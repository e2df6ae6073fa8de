//! Quota arithmetic: token buckets, reserve up front and settle to actual usage.
//!
//! Bedrock reserves quota when a request arrives (`input tokens + max_tokens × burndown`) and
//! settles it to the actual usage when the response ends. Spillway does the same with two token
//! buckets per quota: one for requests per minute and one for tokens per minute.
//!
//! # Exact arithmetic
//!
//! A [`TokenBucket`] keeps its level in *token·nanosecond* units: one token is worth
//! `period_ns` units and every nanosecond refills `capacity` units. Refill is therefore an integer
//! multiplication with no rounding at all, so the classic token-bucket bound holds exactly, not
//! approximately: over any interval of length `t`, what can be taken (net of refunds) is at most
//! `capacity + capacity × t / period`, plus whatever was charged with
//! [`force_take`](TokenBucket::force_take) (which can drive the level negative: a debt repaid by
//! refill before anything else is admitted). The property tests check this bound under arbitrary
//! interleavings of reserve / settle / cancel with advancing time.
//!
//! Everything saturates instead of overflowing, so absurd inputs (a `u64::MAX` capacity, a
//! century-long period) degrade gracefully instead of panicking.
use std::time::Duration;

/// The period of both buckets of a [`QuotaBucket`].
const MINUTE: Duration = Duration::from_secs(60);
/// Longest period a bucket keeps exactly (about 146 years); longer ones are clamped.
const MAX_PERIOD_NS: u128 = 1 << 62;

/// A token bucket holding at most `capacity`, refilled at `capacity` per `period`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u64,
    /// Units per token: the period in nanoseconds (>= 1).
    scale: i128,
    /// `capacity × scale`: the level of a full bucket.
    max_level: i128,
    /// Current level in token·ns units; negative while in debt.
    level: i128,
    /// Time of the last refill (never goes backwards).
    last: Duration,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u64, period: Duration, now: Duration) -> Self {
        let scale = period.as_nanos().clamp(1, MAX_PERIOD_NS) as i128;
        let max_level = i128::from(capacity).saturating_mul(scale);
        TokenBucket {
            capacity,
            scale,
            max_level,
            level: max_level,
            last: now,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Available now (after refill).
    pub fn available(&mut self, now: Duration) -> u64 {
        self.refill(now);
        if self.level <= 0 {
            0
        } else {
            // level <= max_level = capacity × scale, so the quotient fits in a u64.
            u64::try_from(self.level / self.scale).unwrap_or(self.capacity)
        }
    }

    /// Take `n` if available; false (and nothing taken) otherwise.
    pub fn try_take(&mut self, n: u64, now: Duration) -> bool {
        self.refill(now);
        let need = self.units(n);
        if self.level >= need {
            self.level -= need;
            true
        } else {
            false
        }
    }

    /// Take `n` unconditionally (the level may go negative: a debt repaid by refill).
    pub fn force_take(&mut self, n: u64, now: Duration) {
        self.refill(now);
        self.level = self.level.saturating_sub(self.units(n));
    }

    /// Give back `n` (never above capacity).
    pub fn refund(&mut self, n: u64, now: Duration) {
        self.refill(now);
        self.level = self.level.saturating_add(self.units(n)).min(self.max_level);
    }

    /// How long until `n` would be available (zero if now). The exact ceiling: `n` can be taken
    /// at `now + time_until(n)` but not one nanosecond earlier (absent other takes and refunds).
    /// [`Duration::MAX`] when it never will be (`n > capacity`).
    pub fn time_until(&mut self, n: u64, now: Duration) -> Duration {
        self.refill(now);
        let need = self.units(n);
        if self.level >= need {
            return Duration::ZERO;
        }
        if n > self.capacity || self.capacity == 0 {
            return Duration::MAX;
        }
        let deficit = need.saturating_sub(self.level);
        let cap = i128::from(self.capacity);
        let ns = deficit / cap + i128::from(deficit % cap != 0);
        duration_from_nanos(ns)
    }

    /// `n` tokens in internal units.
    fn units(&self, n: u64) -> i128 {
        i128::from(n).saturating_mul(self.scale)
    }

    fn refill(&mut self, now: Duration) {
        if now <= self.last {
            return;
        }
        let elapsed = now
            .saturating_sub(self.last)
            .as_nanos()
            .min(i64::MAX as u128) as i128;
        self.last = now;
        if self.level < self.max_level {
            let add = i128::from(self.capacity).saturating_mul(elapsed);
            self.level = self.level.saturating_add(add).min(self.max_level);
        }
    }
}

/// Nanoseconds (>= 0) to a `Duration`, saturating.
fn duration_from_nanos(ns: i128) -> Duration {
    let ns = ns.max(0);
    let secs = u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (ns % 1_000_000_000) as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// One tenant quota (tenant x model x source region x in-region/cross-region): an RPM bucket and
/// a TPM bucket.
///
/// [`reserve`](QuotaBucket::reserve) takes one request and the estimated tokens, all or nothing;
/// [`settle`](QuotaBucket::settle) corrects the token charge to the actual usage (the request
/// stays charged); [`cancel`](QuotaBucket::cancel) gives everything back when the request was
/// never sent upstream. `None` limits are unlimited.
#[derive(Debug, Clone)]
pub struct QuotaBucket {
    limits: QuotaLimits,
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
}

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
    /// Both buckets start full.
    pub fn new(limits: QuotaLimits, now: Duration) -> Self {
        QuotaBucket {
            limits,
            rpm: limits.rpm.map(|c| TokenBucket::new(c, MINUTE, now)),
            tpm: limits.tpm.map(|c| TokenBucket::new(c, MINUTE, now)),
        }
    }

    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// Requests and tokens available now (`None` where unlimited), e.g. for
    /// `x-ratelimit-remaining-*` headers.
    pub fn remaining(&mut self, now: Duration) -> (Option<u64>, Option<u64>) {
        (
            self.rpm.as_mut().map(|b| b.available(now)),
            self.tpm.as_mut().map(|b| b.available(now)),
        )
    }

    /// Reserve one request and `est_tokens` tokens, all or nothing.
    ///
    /// On denial `retry_after` is when both would be available (at least 1 ms). A request that
    /// can never fit (`est_tokens` above the TPM capacity, or an RPM of zero) is denied with 60 s.
    pub fn reserve(&mut self, est_tokens: u64, now: Duration) -> Result<Reservation, QuotaDenied> {
        let wait_r = self
            .rpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.time_until(1, now));
        let wait_t = self
            .tpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.time_until(est_tokens, now));
        let wait = wait_r.max(wait_t);
        if wait.is_zero() {
            // Both checks passed on refilled buckets: the takes cannot fail.
            if let Some(b) = self.rpm.as_mut() {
                b.force_take(1, now);
            }
            if let Some(b) = self.tpm.as_mut() {
                b.force_take(est_tokens, now);
            }
            return Ok(Reservation { tokens: est_tokens });
        }
        let retry_after = if wait == Duration::MAX {
            MINUTE
        } else {
            wait.max(Duration::from_millis(1))
        };
        Err(QuotaDenied { retry_after })
    }

    /// Settle a reservation to the actual usage: refund the unused part, or charge the excess.
    pub fn settle(&mut self, r: Reservation, actual_tokens: u64, now: Duration) {
        if let Some(b) = self.tpm.as_mut() {
            if actual_tokens < r.tokens {
                b.refund(r.tokens - actual_tokens, now);
            } else {
                b.force_take(actual_tokens - r.tokens, now);
            }
        }
    }

    /// Cancel a reservation entirely (request never sent upstream): refunds request and tokens.
    pub fn cancel(&mut self, r: Reservation, now: Duration) {
        if let Some(b) = self.rpm.as_mut() {
            b.refund(1, now);
        }
        if let Some(b) = self.tpm.as_mut() {
            b.refund(r.tokens, now);
        }
    }
}

#[cfg(test)]
mod tests;

//! Global retry budget, in the style of tower's `retry::budget` and finagle's `RetryBudget`.
//!
//! Failing over to the next destination is what makes a region outage cost no failed requests,
//! but unbounded retries turn an overload into a retry storm: every failed request becomes two,
//! three, `max_attempts` requests, exactly when capacity is shortest. The budget caps retries to a
//! fraction of the real traffic:
//!
//! * every request entering the gateway deposits `ratio` (0.2 = one retry per five requests);
//! * `min_per_sec` accrues with time regardless of traffic, so a quiet gateway can still retry;
//! * the balance is capped at `max_balance`, so a long quiet period cannot save up a storm;
//! * a retry withdraws 1.0, and is refused when less than 1.0 is left.
//!
//! The budget starts with `min_per_sec` in the balance (one second's worth) so a cold gateway can
//! retry a little before any traffic was recorded.
//!
//! The balance is kept in fixed point (10⁻⁶ retry × nanoseconds), so accrual is exact and two
//! budgets fed the same calls always agree.
use std::time::Duration;

/// Units of balance per retry: micro-retries × nanoseconds-per-second.
const UNIT: u128 = 1_000_000 * 1_000_000_000;

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
pub struct RetryBudget {
    cfg: RetryBudgetConfig,
    /// Units added by one deposit.
    per_deposit: u128,
    /// Units accrued per nanosecond.
    per_ns: u128,
    max: u128,
    balance: u128,
    last: Duration,
}

/// `x` retries in micro-retries; negative and NaN count as zero.
fn micros(x: f64) -> u128 {
    // `as` saturates (and maps NaN to 0).
    u128::from((x * 1e6).round() as u64)
}

impl RetryBudget {
    pub fn new(cfg: RetryBudgetConfig, now: Duration) -> Self {
        let per_ns = micros(cfg.min_per_sec);
        let per_deposit = micros(cfg.ratio) * 1_000_000_000;
        let max = micros(cfg.max_balance) * 1_000_000_000;
        let balance = (per_ns * 1_000_000_000).min(max);
        RetryBudget {
            cfg,
            per_deposit,
            per_ns,
            max,
            balance,
            last: now,
        }
    }

    pub fn config(&self) -> &RetryBudgetConfig {
        &self.cfg
    }

    /// One request entered: deposit `ratio`.
    pub fn deposit(&mut self, now: Duration) {
        self.accrue(now);
        self.balance = (self.balance + self.per_deposit).min(self.max);
    }

    /// Withdraw one retry; false (and nothing withdrawn) when less than one is left.
    pub fn try_withdraw(&mut self, now: Duration) -> bool {
        self.accrue(now);
        if self.balance >= UNIT {
            self.balance -= UNIT;
            true
        } else {
            false
        }
    }

    /// Retries currently in the balance (for metrics).
    pub fn balance(&mut self, now: Duration) -> f64 {
        self.accrue(now);
        self.balance as f64 / UNIT as f64
    }

    fn accrue(&mut self, now: Duration) {
        if now <= self.last {
            return;
        }
        let elapsed = now.saturating_sub(self.last).as_nanos();
        self.last = now;
        self.balance = self
            .balance
            .saturating_add(self.per_ns.saturating_mul(elapsed))
            .min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ratio: f64, min_per_sec: f64, max_balance: f64) -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio,
            min_per_sec,
            max_balance,
        }
    }

    fn drain(b: &mut RetryBudget, now: Duration) -> u32 {
        let mut n = 0;
        while b.try_withdraw(now) {
            n += 1;
        }
        n
    }

    #[test]
    fn cold_budget_allows_min_per_sec() {
        let mut b = RetryBudget::new(cfg(0.2, 10.0, 100.0), Duration::ZERO);
        assert_eq!(b.config().min_per_sec, 10.0);
        assert_eq!(drain(&mut b, Duration::ZERO), 10);
        assert!(!b.try_withdraw(Duration::ZERO));
    }

    #[test]
    fn deposits_exactly_one_retry_per_five_requests() {
        let mut b = RetryBudget::new(cfg(0.2, 0.0, 100.0), Duration::ZERO);
        assert!(!b.try_withdraw(Duration::ZERO));
        for _ in 0..4 {
            b.deposit(Duration::ZERO);
        }
        assert!(!b.try_withdraw(Duration::ZERO));
        b.deposit(Duration::ZERO);
        assert!(
            b.try_withdraw(Duration::ZERO),
            "five deposits of 0.2 make exactly 1.0"
        );
        for _ in 0..50 {
            b.deposit(Duration::ZERO);
        }
        assert_eq!(drain(&mut b, Duration::ZERO), 10);
    }

    #[test]
    fn exhausts_and_refills_with_time_up_to_the_cap() {
        let mut b = RetryBudget::new(cfg(0.0, 10.0, 25.0), Duration::ZERO);
        assert_eq!(drain(&mut b, Duration::ZERO), 10);
        assert!(!b.try_withdraw(Duration::from_millis(99)));
        assert!(b.try_withdraw(Duration::from_millis(100)));
        // A long quiet period saves up at most max_balance.
        let later = Duration::from_secs(3600);
        assert_eq!(b.balance(later), 25.0);
        assert_eq!(drain(&mut b, later), 25);
    }

    #[test]
    fn cap_below_min_per_sec_and_bad_values() {
        let mut b = RetryBudget::new(cfg(0.2, 10.0, 3.0), Duration::ZERO);
        assert_eq!(drain(&mut b, Duration::ZERO), 3);
        let mut b = RetryBudget::new(cfg(f64::NAN, -1.0, 100.0), Duration::ZERO);
        b.deposit(Duration::from_secs(10));
        assert!(!b.try_withdraw(Duration::from_secs(10)));
    }
}

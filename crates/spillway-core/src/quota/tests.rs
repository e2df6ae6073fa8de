use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn bucket_starts_full_and_refills_linearly() {
    let mut b = TokenBucket::new(60, MINUTE, Duration::ZERO);
    assert_eq!(b.capacity(), 60);
    assert_eq!(b.available(Duration::ZERO), 60);
    assert!(b.try_take(60, Duration::ZERO));
    assert!(!b.try_take(1, Duration::ZERO));
    assert_eq!(b.available(ms(999)), 0);
    assert_eq!(b.available(ms(1000)), 1);
    assert_eq!(b.available(ms(30_000)), 30);
    assert_eq!(b.available(ms(600_000)), 60, "capped at capacity");
}

#[test]
fn force_take_goes_into_debt_and_refill_repays_it() {
    let mut b = TokenBucket::new(10, Duration::from_secs(10), Duration::ZERO);
    b.force_take(15, Duration::ZERO);
    assert_eq!(b.available(Duration::ZERO), 0);
    // -5 → 1 token needs 6 s.
    assert_eq!(b.time_until(1, Duration::ZERO), Duration::from_secs(6));
    assert_eq!(b.available(Duration::from_secs(5)), 0);
    assert_eq!(b.available(Duration::from_secs(6)), 1);
}

#[test]
fn refund_never_exceeds_capacity() {
    let mut b = TokenBucket::new(10, Duration::from_secs(10), Duration::ZERO);
    assert!(b.try_take(3, Duration::ZERO));
    b.refund(100, Duration::ZERO);
    assert_eq!(b.available(Duration::ZERO), 10);
}

#[test]
fn time_until_is_exact_ceiling() {
    // 3 tokens per 10 ns period is awkward on purpose: 1 token per 3.33 ns.
    let mut b = TokenBucket::new(3, Duration::from_nanos(10), Duration::ZERO);
    assert!(b.try_take(3, Duration::ZERO));
    let t = b.time_until(1, Duration::ZERO);
    assert_eq!(t, Duration::from_nanos(4)); // ceil(10 / 3)
    assert!(!b.clone().try_take(1, Duration::from_nanos(3)));
    assert!(b.try_take(1, Duration::from_nanos(4)));
    assert_eq!(
        b.time_until(4, Duration::ZERO),
        Duration::MAX,
        "more than capacity: never"
    );
}

#[test]
fn time_never_goes_backwards() {
    let mut b = TokenBucket::new(10, Duration::from_secs(10), Duration::from_secs(100));
    assert!(b.try_take(10, Duration::from_secs(100)));
    assert_eq!(b.available(Duration::from_secs(50)), 0);
    assert_eq!(b.available(Duration::from_secs(101)), 1);
}

#[test]
fn absurd_values_do_not_panic() {
    let mut b = TokenBucket::new(u64::MAX, Duration::MAX, Duration::ZERO);
    assert!(b.try_take(u64::MAX, Duration::ZERO));
    b.force_take(u64::MAX, Duration::ZERO);
    b.force_take(u64::MAX, Duration::ZERO);
    let _ = b.time_until(u64::MAX, Duration::MAX);
    b.refund(u64::MAX, Duration::MAX);
    let mut z = TokenBucket::new(0, Duration::ZERO, Duration::ZERO);
    assert!(z.try_take(0, Duration::ZERO));
    assert!(!z.try_take(1, Duration::ZERO));
    assert_eq!(z.time_until(1, Duration::ZERO), Duration::MAX);
}

#[test]
fn quota_unlimited_always_admits() {
    let mut q = QuotaBucket::new(
        QuotaLimits {
            rpm: None,
            tpm: None,
        },
        Duration::ZERO,
    );
    for _ in 0..1000 {
        let r = q.reserve(1_000_000, Duration::ZERO).unwrap();
        q.settle(r, 5_000_000, Duration::ZERO);
    }
    assert_eq!(q.remaining(Duration::ZERO), (None, None));
}

#[test]
fn quota_is_all_or_nothing_and_denial_says_when() {
    let limits = QuotaLimits {
        rpm: Some(2),
        tpm: Some(600),
    };
    let mut q = QuotaBucket::new(limits, Duration::ZERO);
    assert_eq!(q.limits(), limits);
    let r1 = q.reserve(500, Duration::ZERO).unwrap();
    // TPM short (100 left), RPM fine: nothing taken.
    let d = q.reserve(200, Duration::ZERO).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_secs(10)); // 100 tokens at 10/s
    assert_eq!(q.remaining(Duration::ZERO), (Some(1), Some(100)));
    // Settle the first to 100 actual tokens: 400 back.
    q.settle(r1, 100, Duration::ZERO);
    let _r2 = q.reserve(200, Duration::ZERO).unwrap();
    // RPM now short: 1 request every 30 s.
    let d = q.reserve(1, Duration::ZERO).unwrap_err();
    assert_eq!(d.retry_after, Duration::from_secs(30));
    assert!(q.reserve(1, Duration::from_secs(30)).is_ok());
}

#[test]
fn quota_too_big_request_is_denied_for_a_minute() {
    let mut q = QuotaBucket::new(
        QuotaLimits {
            rpm: None,
            tpm: Some(100),
        },
        Duration::ZERO,
    );
    assert_eq!(
        q.reserve(101, Duration::ZERO).unwrap_err().retry_after,
        MINUTE
    );
    let mut q = QuotaBucket::new(
        QuotaLimits {
            rpm: Some(0),
            tpm: None,
        },
        Duration::ZERO,
    );
    assert_eq!(
        q.reserve(1, Duration::ZERO).unwrap_err().retry_after,
        MINUTE
    );
}

#[test]
fn quota_retry_after_is_at_least_a_millisecond() {
    let mut q = QuotaBucket::new(
        QuotaLimits {
            rpm: None,
            tpm: Some(60_000_000),
        },
        Duration::ZERO,
    );
    let _r = q.reserve(60_000_000, Duration::ZERO).unwrap();
    // 1 token refills in 1 µs, but we never say less than 1 ms.
    assert_eq!(q.reserve(1, Duration::ZERO).unwrap_err().retry_after, ms(1));
}

#[test]
fn quota_settle_charges_excess_and_cancel_refunds_all() {
    let mut q = QuotaBucket::new(
        QuotaLimits {
            rpm: Some(10),
            tpm: Some(1000),
        },
        Duration::ZERO,
    );
    let r = q.reserve(100, Duration::ZERO).unwrap();
    q.settle(r, 300, Duration::ZERO);
    assert_eq!(q.remaining(Duration::ZERO), (Some(9), Some(700)));
    let r = q.reserve(100, Duration::ZERO).unwrap();
    q.cancel(r, Duration::ZERO);
    assert_eq!(q.remaining(Duration::ZERO), (Some(9), Some(700)));
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Reserve(u64),
    Settle(usize, u64),
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..3_000_000_000).prop_map(Op::Advance),
        (0u64..1_500).prop_map(Op::Reserve),
        (any::<usize>(), 0u64..2_000).prop_map(|(i, a)| Op::Settle(i, a)),
        any::<usize>().prop_map(Op::Cancel),
    ]
}

proptest! {
    /// Under any interleaving, what was consumed (admitted − refunded + forced excess) is at most
    /// capacity + refill over the elapsed time, right after any admission; and what was admitted
    /// net of refunds never exceeds that bound at any time. Same for requests.
    #[test]
    fn quota_never_over_admits(
        rpm in 1u64..50,
        tpm in 1u64..5_000,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let p = MINUTE.as_nanos() as i128;
        let (rpm_c, tpm_c) = (rpm as i128, tpm as i128);
        let mut q = QuotaBucket::new(QuotaLimits { rpm: Some(rpm), tpm: Some(tpm) }, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut open: Vec<Reservation> = Vec::new();
        let (mut tok_net, mut tok_forced, mut req_net) = (0i128, 0i128, 0i128);
        for op in ops {
            let mut admitted = false;
            match op {
                Op::Advance(ns) => now += Duration::from_nanos(ns),
                Op::Reserve(est) => match q.reserve(est, now) {
                    Ok(r) => {
                        prop_assert_eq!(r.tokens, est);
                        tok_net += est as i128;
                        req_net += 1;
                        open.push(r);
                        admitted = true;
                    }
                    Err(d) => {
                        prop_assert!(d.retry_after >= ms(1));
                        if est <= tpm {
                            // The promise holds: at now + retry_after it would be admitted.
                            prop_assert!(q.clone().reserve(est, now + d.retry_after).is_ok());
                        }
                    }
                },
                Op::Settle(i, actual) if !open.is_empty() => {
                    let r = open.swap_remove(i % open.len());
                    if actual < r.tokens {
                        tok_net -= (r.tokens - actual) as i128;
                    } else {
                        tok_forced += (actual - r.tokens) as i128;
                    }
                    q.settle(r, actual, now);
                }
                Op::Cancel(i) if !open.is_empty() => {
                    let r = open.swap_remove(i % open.len());
                    tok_net -= r.tokens as i128;
                    req_net -= 1;
                    q.cancel(r, now);
                }
                _ => {}
            }
            let e = now.as_nanos() as i128;
            let tok_bound = tpm_c * p + tpm_c * e;
            let req_bound = rpm_c * p + rpm_c * e;
            prop_assert!(tok_net * p <= tok_bound);
            prop_assert!(req_net * p <= req_bound);
            if admitted {
                prop_assert!((tok_net + tok_forced) * p <= tok_bound);
            }
        }
    }

    /// `time_until` is the exact ceiling: available then, not one nanosecond earlier.
    #[test]
    fn time_until_is_exact(
        cap in 1u64..1_000,
        period_ns in 1u64..100_000_000_000,
        debt in 0u64..3_000,
        n in 0u64..1_000,
        at in 0u64..10_000_000_000,
    ) {
        let n = n.min(cap);
        let mut b = TokenBucket::new(cap, Duration::from_nanos(period_ns), Duration::ZERO);
        b.force_take(debt, Duration::ZERO);
        let now = Duration::from_nanos(at);
        let t = b.time_until(n, now);
        prop_assert!(b.clone().try_take(n, now + t));
        if !t.is_zero() {
            prop_assert!(!b.clone().try_take(n, now + t - Duration::from_nanos(1)));
        }
    }
}

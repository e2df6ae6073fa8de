//! Validation of `[routing]`: the policy and its knobs ([`RouterConfig`]) and the upstream
//! timeouts. Checks run in the order of the keys' documentation, and the first bad value is the
//! error reported.
use std::time::Duration;

use spillway_core::{AimdConfig, HealthConfig, Policy, RetryBudgetConfig, RouterConfig};

use super::raw::RawRouting;
use super::validate::Ctx;
use super::{ConfigError, Timeouts};

/// A positive number of milliseconds under `routing.<key>`, `default` when absent.
fn ms(cx: &Ctx<'_>, key: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(cx.err(
            format!("routing.{key}"),
            "expected a positive number of milliseconds",
        )),
        v => Ok(Duration::from_millis(v)),
    }
}

/// `[routing]` → the router's configuration.
pub(super) fn router(cx: &Ctx<'_>, r: &RawRouting) -> Result<RouterConfig, ConfigError> {
    let max_attempts = r.max_attempts.unwrap_or(3);
    if !(1..=10).contains(&max_attempts) {
        return Err(cx.err(
            "routing.max_attempts",
            format!("expected 1 to 10, got {max_attempts}"),
        ));
    }
    let retry_budget = retry_budget(cx, r)?;
    let (source_queue, source_wait, source_wait_ttft) = source_limits(cx, r)?;
    let health = health(cx, r)?;
    let cache_min_locality = r.cache_min_locality.unwrap_or(0.9);
    if !(0.0..=1.0).contains(&cache_min_locality) {
        return Err(cx.err(
            "routing.cache_min_locality",
            format!(
                "expected 0 to 1 (the share of requests with room in their source that stay there), got {cache_min_locality}"
            ),
        ));
    }
    let tail_budget = r.tail_budget.unwrap_or(0.01);
    if !(0.0..=1.0).contains(&tail_budget) {
        return Err(cx.err(
            "routing.tail_budget",
            format!("expected 0 to 1 (a share of each region's requests), got {tail_budget}"),
        ));
    }
    let policy = match r.policy.as_deref() {
        None | Some("spillway") => Policy::Spillway,
        Some("round-robin") => Policy::RoundRobin,
        Some("least-loaded") => Policy::LeastLoaded,
        Some(other) => {
            return Err(cx.err(
                "routing.policy",
                format!(
                    "expected \"spillway\", \"round-robin\" or \"least-loaded\", got {other:?}"
                ),
            ));
        }
    };
    Ok(RouterConfig {
        policy,
        max_attempts,
        health,
        aimd: AimdConfig {
            min_limit: 1,
            decrease_factor: 0.75,
        },
        retry_budget,
        source_queue,
        source_wait,
        source_wait_ttft,
        spill_reserve: r.spill_reserve,
        tail_budget,
        cache_min_locality,
        ..RouterConfig::default()
    })
}

fn retry_budget(cx: &Ctx<'_>, r: &RawRouting) -> Result<RetryBudgetConfig, ConfigError> {
    let ratio = r.retry_budget_ratio.unwrap_or(0.2);
    let min_per_sec = r.retry_min_per_sec.unwrap_or(10.0);
    if !(ratio.is_finite() && (0.0..=10.0).contains(&ratio)) {
        return Err(cx.err(
            "routing.retry_budget_ratio",
            format!("expected 0 to 10, got {ratio}"),
        ));
    }
    if !(min_per_sec.is_finite() && min_per_sec >= 0.0) {
        return Err(cx.err(
            "routing.retry_min_per_sec",
            format!("expected a non-negative rate, got {min_per_sec}"),
        ));
    }
    Ok(RetryBudgetConfig {
        ratio,
        min_per_sec,
        max_balance: (min_per_sec * 10.0).max(10.0),
    })
}

/// `source_queue`, `source_wait` and `source_wait_ttft`.
fn source_limits(cx: &Ctx<'_>, r: &RawRouting) -> Result<(f64, f64, f64), ConfigError> {
    let source_queue = r.source_queue.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&source_queue) {
        return Err(cx.err(
            "routing.source_queue",
            format!("expected 0 to 1 (a fraction of the in-flight limit), got {source_queue}"),
        ));
    }
    let source_wait = r.source_wait.unwrap_or(0.2);
    if !(0.0..=1.0).contains(&source_wait) {
        return Err(cx.err(
            "routing.source_wait",
            format!("expected 0 to 1 (a fraction of the in-flight limit), got {source_wait}"),
        ));
    }
    let source_wait_ttft = r.source_wait_ttft.unwrap_or(1.5);
    if source_wait_ttft.is_nan() || source_wait_ttft <= 0.0 {
        return Err(cx.err(
            "routing.source_wait_ttft",
            format!(
                "expected a positive multiple of the source's mean TTFT, got {source_wait_ttft}"
            ),
        ));
    }
    Ok((source_queue, source_wait, source_wait_ttft))
}

fn health(cx: &Ctx<'_>, r: &RawRouting) -> Result<HealthConfig, ConfigError> {
    let base_ejection = ms(cx, "base_ejection_ms", r.base_ejection_ms, 1000)?;
    let max_ejection = ms(cx, "max_ejection_ms", r.max_ejection_ms, 30_000)?;
    if max_ejection < base_ejection {
        return Err(cx.err(
            "routing.max_ejection_ms",
            "expected at least routing.base_ejection_ms",
        ));
    }
    Ok(HealthConfig {
        failure_threshold: r.failure_threshold.unwrap_or(3).max(1),
        base_ejection,
        max_ejection,
    })
}

/// The upstream timeouts under `[routing]`.
pub(super) fn timeouts(cx: &Ctx<'_>, r: &RawRouting) -> Result<Timeouts, ConfigError> {
    Ok(Timeouts {
        connect: ms(cx, "connect_timeout_ms", r.connect_timeout_ms, 2_000)?,
        first_byte: ms(cx, "first_byte_timeout_ms", r.first_byte_timeout_ms, 30_000)?,
        request: ms(cx, "request_timeout_ms", r.request_timeout_ms, 600_000)?,
    })
}

//! `bench overhead --state redis://…`: a Redis-backed gateway side by side with the memory one.
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use spillway_bench::overhead::Stats;
use spillway_gateway::{Config, Gateway};

use super::config::UpstreamAt;
use super::{gateway_config, round3};

/// The tenant's quota in both gateways: twice the offered rate, per minute.
pub fn quota_rpm(rps: f64) -> u64 {
    (rps * 120.0).ceil().max(1.0) as u64
}

/// The URL without a password.
pub fn without_password(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
        _ => url.to_string(),
    }
}

/// The Redis-backed gateway, in front of `upstream`, under a key prefix of its own; fails when
/// Redis does not answer (the figures would be the fallback's).
pub async fn start(
    url: &str,
    quota_rpm: u64,
    lease_fraction: f64,
    upstream: UpstreamAt<'_>,
) -> anyhow::Result<Gateway> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = format!("spillway-bench-overhead-{}-{stamp}", std::process::id());
    let toml = gateway_config(
        Some(quota_rpm),
        upstream,
        Some((url, &prefix, lease_fraction)),
    );
    let cfg = Config::parse(&toml, "<bench overhead --state>")?;
    let gw = Gateway::start(cfg)
        .await
        .context("starting the Redis-backed gateway")?;
    if !gw.state().shared_state_up() {
        gw.shutdown(Duration::from_secs(5)).await;
        anyhow::bail!(
            "--state: {} does not answer (a gateway on it would measure its local fallback)",
            without_password(url)
        );
    }
    eprintln!(
        "  state: {} (keys under {prefix}:*, lease_fraction {lease_fraction}), tenant quota {quota_rpm} requests/min in both gateways",
        without_password(url)
    );
    Ok(gw)
}

/// The Redis-backed gateway path against the memory one.
#[derive(Debug, Clone, Serialize)]
pub struct RedisFigures {
    pub gateway_p50_ms: f64,
    pub gateway_p99_ms: f64,
    /// Its percentile minus the memory gateway's.
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    pub gateway: Stats,
}

pub fn figures(memory: &Stats, redis: Stats) -> RedisFigures {
    RedisFigures {
        gateway_p50_ms: round3(redis.p50_ms),
        gateway_p99_ms: round3(redis.p99_ms),
        added_p50_ms: round3(redis.p50_ms - memory.p50_ms),
        added_p99_ms: round3(redis.p99_ms - memory.p99_ms),
        gateway: redis,
    }
}

pub fn print_table<'a>(
    rows: impl Iterator<Item = (&'static str, &'a Option<RedisFigures>)>,
    url: &str,
    quota_rpm: u64,
) {
    println!(
        "\nRedis state ({url}) against memory, same run (tenant quota {quota_rpm}/min in both):"
    );
    println!(
        "{:<14} {:>12} {:>12} {:>16} {:>16} {:>7}",
        "case", "redis gw p50", "redis gw p99", "added p50 (mem)", "added p99 (mem)", "errors"
    );
    for (name, r) in rows {
        if let Some(r) = r {
            println!(
                "{:<14} {:>9.3} ms {:>9.3} ms {:>13.3} ms {:>13.3} ms {:>7}",
                name,
                r.gateway_p50_ms,
                r.gateway_p99_ms,
                r.added_p50_ms,
                r.added_p99_ms,
                r.gateway.errors
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(without_password("redis://:pw@h:1"), "redis://h:1");
        assert_eq!(without_password("redis://h:1"), "redis://h:1");
        assert_eq!(quota_rpm(1000.0), 120_000);
    }
}

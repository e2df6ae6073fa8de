//! The snapshot a dashboard viewer receives once a second, as JSON (its format is documented
//! field by field in docs/DASHBOARD.md; `version` changes when a field changes meaning).
//!
//! Rates are averages over the last [`RATE_SECS`] whole seconds; totals count since the
//! gateway started; first-byte percentiles are over the streams of the last
//! [`window::SLOTS`] seconds (at most [`window::MAX_TTFT`] of them, the most recent).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use spillway_core::DeploymentView;

use super::window::{self, Figures, NameId, SourceFigures, TtftSample, Window};
use super::{Dashboard, RATE_SECS};
use crate::config::Config;

/// The snapshot format's version.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: u32,
    /// When it was built, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub rate_window_s: u64,
    pub ttft_window_s: u64,
    pub totals: Totals,
    pub geographies: Vec<Geography>,
    pub tenants: Vec<TenantRow>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub requests_per_s: f64,
    pub served_per_s: f64,
    pub spilled_per_s: f64,
    pub throttled_quota_per_s: f64,
    pub throttled_capacity_per_s: f64,
    pub errors_per_s: f64,
    pub cost_usd_per_s: f64,
    pub requests: u64,
    pub served: u64,
    pub spilled: u64,
    pub throttled_quota: u64,
    pub throttled_capacity: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub ttft_ms: Ttft,
}

/// Stream first-byte time percentiles (milliseconds; `null` without samples).
#[derive(Debug, Serialize, PartialEq)]
pub struct Ttft {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Geography {
    pub name: String,
    pub regions: Vec<RegionRow>,
    /// Source → destination flows inside the geography (served elsewhere than the source).
    pub flows: Vec<Flow>,
}

#[derive(Debug, Serialize)]
pub struct RegionRow {
    pub name: String,
    /// `healthy`, `degraded` (some deployments ejected or cooling down), `down` (none
    /// available) or `idle` (no deployments).
    pub health: &'static str,
    pub in_flight: u32,
    /// The deployments' effective (adaptive) concurrency limits, summed.
    pub capacity: u32,
    /// Their declared `max_in_flight`, summed.
    pub declared_capacity: u32,
    pub deployments: Vec<DeploymentRow>,
    /// As the source region (requests that arrived on its listeners).
    pub requests_per_s: f64,
    pub throttled_per_s: f64,
    pub spilled_out_per_s: f64,
    pub cost_usd: f64,
    /// As the serving region.
    pub served_per_s: f64,
    pub ttft_ms: Ttft,
}

#[derive(Debug, Serialize)]
pub struct DeploymentRow {
    pub model: String,
    pub in_flight: u32,
    pub limit: u32,
    pub max_in_flight: u32,
    pub healthy: bool,
    /// Milliseconds left of an ejection (circuit open), if ejected.
    pub ejected_ms: Option<u64>,
    /// Milliseconds left of a cooldown (after an upstream 429 with `Retry-After`).
    pub cooldown_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Flow {
    pub from: String,
    pub to: String,
    pub per_s: f64,
    pub spill_per_s: f64,
    pub failover_per_s: f64,
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct TenantRow {
    pub name: String,
    pub requests: u64,
    pub requests_per_s: f64,
    pub throttled: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub cost_usd_per_s: f64,
}

/// What the window holds for one snapshot, copied out under its lock.
struct Read {
    recent: Figures,
    totals: Figures,
    ttft: Vec<TtftSample>,
    names: Vec<(String, NameId)>,
}

impl Read {
    fn id(&self, name: &str) -> Option<NameId> {
        self.names
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    fn name(&self, id: NameId) -> &str {
        self.names
            .iter()
            .find(|(_, i)| *i == id)
            .map_or("", |(n, _)| n.as_str())
    }
}

/// Build a snapshot. `views[i]` is deployment `i`'s state in the routing core at `now` (its
/// clock); regions and deployments are those of `cfg`.
pub fn build(cfg: &Config, views: &[DeploymentView], now: Duration, dash: &Dashboard) -> Snapshot {
    let read = read(cfg, dash);
    let per_s = |n: u64| n as f64 / RATE_SECS as f64;
    let mut geographies: Vec<Geography> = Vec::new();
    for (ix, region) in cfg.regions.iter().enumerate() {
        let row = region_row(cfg, views, now, ix, &read);
        match geographies.iter_mut().find(|g| g.name == region.geography) {
            Some(g) => g.regions.push(row),
            None => geographies.push(Geography {
                name: region.geography.clone(),
                regions: vec![row],
                flows: Vec::new(),
            }),
        }
    }
    for g in &mut geographies {
        g.flows = flows(g, &read);
    }
    let tenants = cfg
        .tenants
        .iter()
        .map(|t| {
            let id = read.id(&t.name);
            let total = id.and_then(|i| read.totals.tenants.get(&i).copied());
            let recent = id.and_then(|i| read.recent.tenants.get(&i).copied());
            let (total, recent) = (total.unwrap_or_default(), recent.unwrap_or_default());
            TenantRow {
                name: t.name.clone(),
                requests: total.requests,
                requests_per_s: per_s(recent.requests),
                throttled: total.throttled,
                input_tokens: total.input_tokens,
                output_tokens: total.output_tokens,
                cost_usd: total.cost,
                cost_usd_per_s: recent.cost / RATE_SECS as f64,
            }
        })
        .collect();
    Snapshot {
        version: VERSION,
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        rate_window_s: RATE_SECS,
        ttft_window_s: window::SLOTS as u64,
        totals: totals(&read),
        geographies,
        tenants,
    }
}

fn read(cfg: &Config, dash: &Dashboard) -> Read {
    let second = dash.second();
    let w: std::sync::MutexGuard<'_, Window> = dash.window();
    let since = second.saturating_sub(window::SLOTS as u64);
    let wanted = cfg
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .chain(cfg.tenants.iter().map(|t| t.name.as_str()));
    Read {
        recent: w.recent(second, RATE_SECS),
        totals: w.totals.clone(),
        ttft: w.ttft_since(since).copied().collect(),
        names: wanted
            .filter_map(|n| w.id_of(n).map(|id| (n.to_string(), id)))
            .collect(),
    }
}

fn region_row(
    cfg: &Config,
    views: &[DeploymentView],
    now: Duration,
    ix: usize,
    read: &Read,
) -> RegionRow {
    let region = &cfg.regions[ix];
    let left = |until: Option<Duration>| until.map(|u| u.saturating_sub(now).as_millis() as u64);
    let deployments: Vec<DeploymentRow> = cfg
        .deployments
        .iter()
        .zip(views)
        .filter(|(d, _)| d.region.0 as usize == ix)
        .map(|(d, v)| DeploymentRow {
            model: cfg.models[d.model].id.clone(),
            in_flight: v.in_flight,
            limit: v.limit,
            max_in_flight: d.max_in_flight,
            healthy: v.healthy,
            ejected_ms: left(v.ejected_until),
            cooldown_ms: left(v.cooldown_until),
        })
        .collect();
    let available = deployments
        .iter()
        .filter(|d| d.healthy && d.ejected_ms.is_none() && d.cooldown_ms.is_none())
        .count();
    let health = match (deployments.len(), available) {
        (0, _) => "idle",
        (n, a) if a == n => "healthy",
        (_, 0) => "down",
        _ => "degraded",
    };
    let id = read.id(&region.name);
    let source = |f: &Figures| -> SourceFigures {
        id.and_then(|i| f.sources.get(&i).copied())
            .unwrap_or_default()
    };
    let (recent, total) = (source(&read.recent), source(&read.totals));
    let served_recent = id.and_then(|i| read.recent.served_in.get(&i).copied());
    let spilled_recent: u64 = read
        .recent
        .flows
        .iter()
        .filter(|((from, _), _)| Some(*from) == id)
        .map(|(_, f)| f.spill + f.failover)
        .sum();
    let per_s = |n: u64| n as f64 / RATE_SECS as f64;
    RegionRow {
        name: region.name.clone(),
        health,
        in_flight: deployments.iter().map(|d| d.in_flight).sum(),
        capacity: deployments.iter().map(|d| d.limit).sum(),
        declared_capacity: deployments.iter().map(|d| d.max_in_flight).sum(),
        deployments,
        requests_per_s: per_s(recent.requests),
        throttled_per_s: per_s(recent.throttled_quota + recent.throttled_capacity),
        spilled_out_per_s: per_s(spilled_recent),
        cost_usd: total.cost,
        served_per_s: per_s(served_recent.unwrap_or(0)),
        ttft_ms: ttft(read.ttft.iter().filter(|s| Some(s.region) == id)),
    }
}

/// Every flow between two regions of `g` seen since start, with its recent rate.
fn flows(g: &Geography, read: &Read) -> Vec<Flow> {
    let inside = |id: NameId| g.regions.iter().any(|r| r.name == read.name(id));
    let mut out: Vec<Flow> = read
        .totals
        .flows
        .iter()
        .filter(|((from, to), _)| inside(*from) && inside(*to))
        .map(|(&(from, to), total)| {
            let recent = read
                .recent
                .flows
                .get(&(from, to))
                .copied()
                .unwrap_or_default();
            let per_s = |n: u64| n as f64 / RATE_SECS as f64;
            Flow {
                from: read.name(from).to_string(),
                to: read.name(to).to_string(),
                per_s: per_s(recent.spill + recent.failover),
                spill_per_s: per_s(recent.spill),
                failover_per_s: per_s(recent.failover),
                total: total.spill + total.failover,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    out
}

fn totals(read: &Read) -> Totals {
    let sum = |f: &Figures| {
        f.sources
            .values()
            .fold(SourceFigures::default(), |mut a, s| {
                a.requests += s.requests;
                a.served += s.served;
                a.throttled_quota += s.throttled_quota;
                a.throttled_capacity += s.throttled_capacity;
                a.errors += s.errors;
                a.input_tokens += s.input_tokens;
                a.output_tokens += s.output_tokens;
                a.cost += s.cost;
                a
            })
    };
    let spilled = |f: &Figures| f.flows.values().map(|x| x.spill + x.failover).sum::<u64>();
    let (recent, total) = (sum(&read.recent), sum(&read.totals));
    let per_s = |n: u64| n as f64 / RATE_SECS as f64;
    Totals {
        requests_per_s: per_s(recent.requests),
        served_per_s: per_s(recent.served),
        spilled_per_s: per_s(spilled(&read.recent)),
        throttled_quota_per_s: per_s(recent.throttled_quota),
        throttled_capacity_per_s: per_s(recent.throttled_capacity),
        errors_per_s: per_s(recent.errors),
        cost_usd_per_s: recent.cost / RATE_SECS as f64,
        requests: total.requests,
        served: total.served,
        spilled: spilled(&read.totals),
        throttled_quota: total.throttled_quota,
        throttled_capacity: total.throttled_capacity,
        errors: total.errors,
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        cost_usd: total.cost,
        ttft_ms: ttft(read.ttft.iter()),
    }
}

/// Nearest-rank p50 and p99 of the samples.
fn ttft<'a>(samples: impl Iterator<Item = &'a TtftSample>) -> Ttft {
    let mut ms: Vec<f64> = samples.map(|s| s.ms).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        ms.get(i.saturating_sub(1).min(ms.len().saturating_sub(1)))
            .map(|v| (v * 10.0).round() / 10.0)
    };
    Ttft {
        count: ms.len(),
        p50: rank(50.0),
        p99: rank(99.0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn samples(ms: &[f64]) -> Vec<TtftSample> {
        ms.iter()
            .map(|&ms| TtftSample {
                second: 0,
                region: 0,
                ms,
            })
            .collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = samples(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(
            ttft(s.iter()),
            Ttft {
                count: 100,
                p50: Some(50.0),
                p99: Some(99.0)
            }
        );
        let none = ttft(std::iter::empty());
        assert_eq!((none.count, none.p50, none.p99), (0, None, None));
        let one = ttft(samples(&[7.0]).iter());
        assert_eq!((one.p50, one.p99), (Some(7.0), Some(7.0)));
    }
}

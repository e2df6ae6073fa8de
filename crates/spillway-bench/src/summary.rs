//! Summaries of a run: the figures `demo` and `bench` print.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::client::RequestResult;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub name: String,
    pub offered: u64,
    pub served: u64,
    pub throttled: u64,
    pub failed: u64,
    /// Served requests that met the TTFT objective, per second of the offered window.
    pub goodput_rps: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    /// Fraction of served requests served in their source region.
    pub locality: f64,
    /// Fraction of served requests served elsewhere.
    pub spilled: f64,
    pub residency_violations: u64,
}

/// `p` in [0, 100] of `sorted` (nearest rank); 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Summarise `results`. `violations` is the number of requests (by id) that any upstream
    /// saw outside the allowed set — counted from the upstreams' own records, not from headers.
    pub fn of(
        name: &str,
        results: &[RequestResult],
        window: Duration,
        ttft_slo: Duration,
        violations: u64,
    ) -> Summary {
        let served: Vec<&RequestResult> = results.iter().filter(|r| r.ok()).collect();
        let mut ttft: Vec<f64> = served
            .iter()
            .filter_map(|r| r.ttft)
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        ttft.sort_by(f64::total_cmp);
        let good = served
            .iter()
            .filter(|r| r.ttft.is_some_and(|t| t <= ttft_slo))
            .count();
        let local = served
            .iter()
            .filter(|r| r.served_region.as_deref() == Some(r.source.as_str()))
            .count();
        let n = served.len().max(1) as f64;
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        Summary {
            name: name.to_string(),
            offered: results.len() as u64,
            served: served.len() as u64,
            throttled: results.iter().filter(|r| r.throttled()).count() as u64,
            failed: results.iter().filter(|r| r.failed()).count() as u64,
            goodput_rps: round(good as f64 / window.as_secs_f64().max(1e-9), 2),
            ttft_p50_ms: round(percentile(&ttft, 50.0), 1),
            ttft_p99_ms: round(percentile(&ttft, 99.0), 1),
            locality: if served.is_empty() {
                0.0
            } else {
                round(local as f64 / n, 4)
            },
            spilled: if served.is_empty() {
                0.0
            } else {
                round((served.len() - local) as f64 / n, 4)
            },
            residency_violations: violations,
        }
    }
}

/// Request ids seen by an upstream in a region outside the allowed set of their source.
/// `seen` holds (request id, region) pairs from the upstreams' records; `source_of` maps ids to
/// their source region; `allowed` maps a source region to its destination set.
pub fn residency_violations(
    seen: &[(String, String)],
    source_of: &HashMap<String, String>,
    allowed: &HashMap<String, HashSet<String>>,
) -> u64 {
    let mut bad: HashSet<&str> = HashSet::new();
    for (id, region) in seen {
        let Some(src) = source_of.get(id) else {
            continue;
        };
        if !allowed.get(src).is_some_and(|set| set.contains(region)) {
            bad.insert(id);
        }
    }
    bad.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn a_request_seen_outside_its_set_is_a_violation() {
        let seen = vec![
            ("a".to_string(), "us-east-2".to_string()),
            ("b".to_string(), "eu-west-1".to_string()),
        ];
        let source_of = HashMap::from([
            ("a".to_string(), "us-east-1".to_string()),
            ("b".to_string(), "us-east-1".to_string()),
        ]);
        let allowed = HashMap::from([(
            "us-east-1".to_string(),
            HashSet::from(["us-east-1".to_string(), "us-east-2".to_string()]),
        )]);
        assert_eq!(residency_violations(&seen, &source_of, &allowed), 1);
    }
}

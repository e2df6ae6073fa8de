//! One policy's results added up request by request, then turned into its [`PolicyReport`]
//! (see the parent module's docs for what each figure means).
use std::collections::BTreeMap;

use super::{Context, PolicyReport, Sent, Timeline, round};
use crate::client::RequestResult;
use crate::summary::percentile;

/// The route reasons of a request that left a source with headroom: for a region's prefix
/// cache (Spillway's policy), or by the choice of a policy that ignores the source.
const LEFT_ROOM: [&str; 2] = ["spill:cache", "spill:balance"];

/// What one policy's results add up to, request by request (latencies in trace time, unsorted
/// until [`Tally::report`]).
pub(super) struct Tally {
    timeline: Timeline,
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    e2e: Vec<f64>,
    /// Served requests that met the SLO, and their output tokens.
    good: u64,
    good_tokens: u64,
    /// Served requests served in their source region.
    local: u64,
    /// Served requests that left a source with headroom (`LEFT_ROOM`).
    left_room: u64,
    by_region: BTreeMap<String, u64>,
    served: u64,
    throttled: u64,
    failed: u64,
}

impl Tally {
    pub(super) fn new(cx: &Context<'_>) -> Tally {
        let nb = cx.timeline_buckets.max(1);
        Tally {
            timeline: Timeline {
                bucket_secs: cx.window_secs.max(1e-9) / nb as f64,
                regions: cx.regions.clone(),
                served: vec![vec![0; cx.regions.len()]; nb],
                offered: vec![0; nb],
            },
            ttft: Vec::new(),
            tpot: Vec::new(),
            e2e: Vec::new(),
            good: 0,
            good_tokens: 0,
            local: 0,
            left_room: 0,
            by_region: BTreeMap::new(),
            served: 0,
            throttled: 0,
            failed: 0,
        }
    }

    /// Counts one request in its arrival bucket (bucket 0 when it was not recorded as sent) and
    /// by outcome; a served one goes on to [`Tally::add_served`].
    pub(super) fn add(&mut self, r: &RequestResult, cx: &Context<'_>) {
        let sent = cx.sent.get(&r.id);
        let nb = self.timeline.offered.len();
        let b = sent.map_or(0, |s| {
            ((s.at.as_secs_f64() / self.timeline.bucket_secs) as usize).min(nb - 1)
        });
        self.timeline.offered[b] += 1;
        if r.throttled() {
            self.throttled += 1;
        } else if r.failed() {
            self.failed += 1;
        }
        if r.ok() {
            self.add_served(r, sent, b, cx);
        }
    }

    /// Where a served request was served, its latencies (RTT to the serving region added), and
    /// whether it met the SLO.
    fn add_served(&mut self, r: &RequestResult, sent: Option<&Sent>, b: usize, cx: &Context<'_>) {
        self.served += 1;
        let region = r.served_region.as_deref().unwrap_or(&r.source);
        let rtt = cx.scale.rtt(&r.source, region);
        *self.by_region.entry(region.to_string()).or_default() += 1;
        if let Some(i) = cx.regions.iter().position(|x| x == region) {
            self.timeline.served[b][i] += 1;
        }
        if region == r.source {
            self.local += 1;
        }
        if r.route_reason
            .as_deref()
            .is_some_and(|reason| LEFT_ROOM.contains(&reason))
        {
            self.left_room += 1;
        }
        let first = r.ttft.map(|t| cx.scale.ms(t) + rtt);
        let per_token = r
            .ttft
            .filter(|_| r.output_chunks > 0)
            .map(|t| cx.scale.ms(r.e2e.saturating_sub(t)) / r.output_chunks as f64);
        self.e2e.push(cx.scale.ms(r.e2e) + rtt);
        if let Some(t) = first {
            self.ttft.push(t);
        }
        if let Some(t) = per_token {
            self.tpot.push(t);
        }
        let meets = first.is_some_and(|t| t <= cx.slo.ttft_ms)
            && per_token.is_none_or(|t| t <= cx.slo.tpot_ms);
        if meets {
            self.good += 1;
            self.good_tokens += sent.map_or(0, |s| s.output_tokens);
        }
    }

    /// The figures: shares, rates over the window, percentiles of the sorted latencies.
    pub(super) fn report(
        mut self,
        name: &str,
        results: &[RequestResult],
        violations: u64,
        cx: &Context<'_>,
    ) -> PolicyReport {
        let mut lag: Vec<f64> = results
            .iter()
            .map(|r| r.late.as_secs_f64() * 1000.0)
            .collect();
        for v in [&mut self.ttft, &mut self.tpot, &mut self.e2e, &mut lag] {
            v.sort_by(f64::total_cmp);
        }
        let offered = results.len() as u64;
        let share = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                round(n as f64 / of as f64, 4)
            }
        };
        let window = cx.window_secs.max(1e-9);
        let goodput_rps = self.good as f64 / window;
        let p = |v: &[f64], q: f64| round(percentile(v, q), 1);
        PolicyReport {
            name: name.to_string(),
            offered,
            served: self.served,
            throttled: self.throttled,
            failed: self.failed,
            goodput_rps: round(goodput_rps, 3),
            goodput_tps: round(self.good_tokens as f64 / window, 1),
            goodput_vs_oracle: if cx.oracle_rps > 0.0 {
                round(goodput_rps / cx.oracle_rps, 4)
            } else {
                0.0
            },
            throttled_share: share(self.throttled, offered),
            failed_share: share(self.failed, offered),
            ttft_p50_ms: p(&self.ttft, 50.0),
            ttft_p90_ms: p(&self.ttft, 90.0),
            ttft_p99_ms: p(&self.ttft, 99.0),
            tpot_p50_ms: p(&self.tpot, 50.0),
            tpot_p90_ms: p(&self.tpot, 90.0),
            tpot_p99_ms: p(&self.tpot, 99.0),
            e2e_p50_ms: p(&self.e2e, 50.0),
            e2e_p90_ms: p(&self.e2e, 90.0),
            e2e_p99_ms: p(&self.e2e, 99.0),
            locality: share(self.local, self.served),
            headroom_locality: share(self.local, self.local + self.left_room),
            spilled: share(self.served - self.local, self.served),
            residency_violations: violations,
            send_lag_p99_ms: round(percentile(&lag, 99.0), 2),
            served_by_region: self.by_region,
            timeline: self.timeline,
            ttft_ms: self.ttft,
            prefix: None,
        }
    }
}

//! The bench report: the figures of each policy, the oracle, and how they were obtained.
//!
//! Per policy ([`PolicyReport`]):
//!
//! * `offered`: requests sent; each ends as exactly one of `served` (HTTP 200 and a stream that
//!   ended with `[DONE]` and no error event), `throttled` (HTTP 429 to the client) or `failed`
//!   (anything else: another status, a broken stream, no response);
//! * `goodput_rps`: served requests that met the SLO (TTFT ≤ `ttft_ms` and TPOT ≤ `tpot_ms`),
//!   per second of the window (the trace time from the first arrival to the end of the last
//!   one-second bucket); `goodput_tps` is the same in output tokens per second;
//!   `goodput_vs_oracle` is `goodput_rps` over the oracle's (see [`crate::oracle`]);
//! * `ttft_*`, `tpot_*`, `e2e_*`: percentiles (nearest rank) over served requests of the time to
//!   first token, time per output token (`(e2e − ttft) / output tokens`) and end-to-end time;
//! * `locality`: share of served requests served in their source region; `spilled` the rest;
//!   `headroom_locality`: the same among the requests whose source had room (the local ones
//!   and those that left it anyway, `spill:cache` or `spill:balance` by their
//!   `x-spillway-route-reason`);
//! * `residency_violations`: requests that any simulator outside their allowed set saw, counted
//!   from the simulators' own records (not from the gateway's headers); must be 0.
//!
//! **Latencies are in trace time.** A replay at `--time-scale X` runs the simulators' service
//! times X times faster, so the measured wall-clock latency is multiplied by X to read as it
//! would on the original time line. The network is not compressed: the simulators inject no
//! RTT of their own (an in-process simulator has one RTT for every source, while a source
//! region's RTT depends on where the request is served), and the RTT between the source region
//! and the region that served the request (DESIGN §7's table, 1 ms inside a region) is added
//! once, uncompressed, to TTFT and end-to-end time. The gateway's own processing time is
//! multiplied by X with the rest, so at high X it weighs more than it would in reality.
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::client::RequestResult;
use crate::oracle::{BREACH_TOLERANCE, Oracle};

mod prefix;
mod tally;
pub use prefix::PrefixFigures;
use prefix::{prefix_breaches, prefix_lines};
use tally::Tally;

/// The service-level objective a served request must meet to count as goodput.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    pub ttft_ms: f64,
    pub tpot_ms: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            ttft_ms: 2000.0,
            tpot_ms: 200.0,
        }
    }
}

impl std::str::FromStr for Slo {
    type Err = String;
    /// `ttft_ms=2000,tpot_ms=200`; a key left out keeps its default.
    fn from_str(s: &str) -> Result<Slo, String> {
        let mut slo = Slo::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {part:?}"))?;
            let v: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{k}: expected a positive number of ms, got {v:?}"))?;
            match k.trim() {
                "ttft_ms" => slo.ttft_ms = v,
                "tpot_ms" => slo.tpot_ms = v,
                other => return Err(format!("unknown SLO key {other:?} (ttft_ms, tpot_ms)")),
            }
        }
        Ok(slo)
    }
}

/// What was sent for one request (trace time).
#[derive(Debug, Clone)]
pub struct Sent {
    pub source: String,
    pub at: Duration,
    pub output_tokens: u64,
}

/// How wall-clock measurements become trace time (see the module docs).
#[derive(Debug, Clone)]
pub struct Scale {
    pub time_scale: f64,
    /// RTT in ms between two regions, either order; a region and itself: `local_rtt_ms`.
    pub rtt_ms: HashMap<(String, String), f64>,
    pub local_rtt_ms: f64,
}

impl Scale {
    pub fn rtt(&self, a: &str, b: &str) -> f64 {
        if a == b {
            return self.local_rtt_ms;
        }
        let key = |x: &str, y: &str| (x.to_string(), y.to_string());
        self.rtt_ms
            .get(&key(a, b))
            .or_else(|| self.rtt_ms.get(&key(b, a)))
            .copied()
            .unwrap_or(0.0)
    }

    fn ms(&self, wall: Duration) -> f64 {
        wall.as_secs_f64() * 1000.0 * self.time_scale
    }
}

/// Served requests per region over time, bucketed by arrival (trace time).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timeline {
    pub bucket_secs: f64,
    pub regions: Vec<String>,
    /// `served[bucket][region]`.
    pub served: Vec<Vec<u32>>,
    /// Requests offered per bucket.
    pub offered: Vec<u32>,
}

/// The figures of one policy (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub offered: u64,
    pub served: u64,
    pub throttled: u64,
    pub failed: u64,
    pub goodput_rps: f64,
    pub goodput_tps: f64,
    pub goodput_vs_oracle: f64,
    pub throttled_share: f64,
    pub failed_share: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p90_ms: f64,
    pub ttft_p99_ms: f64,
    pub tpot_p50_ms: f64,
    pub tpot_p90_ms: f64,
    pub tpot_p99_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p90_ms: f64,
    pub e2e_p99_ms: f64,
    pub locality: f64,
    /// Served in their source region, as a share of those and of the ones that left a source
    /// with headroom (`spill:cache` for a region's prefix cache, `spill:balance` by a baseline's
    /// choice): the locality kept where the source had room; spills for capacity or health and
    /// failovers are not counted.
    pub headroom_locality: f64,
    pub spilled: f64,
    pub residency_violations: u64,
    /// 99th percentile of how late requests were sent (wall clock ms, not scaled): above a few
    /// ms the machine running the bench was saturated, and the latencies (multiplied by the time
    /// scale) include its queueing.
    pub send_lag_p99_ms: f64,
    pub served_by_region: BTreeMap<String, u64>,
    pub timeline: Timeline,
    /// Sorted TTFTs of served requests (ms), for the CDF chart.
    #[serde(skip)]
    pub ttft_ms: Vec<f64>,
    /// The simulators' prefix caches over the run, when they had one (`--prefix-cache-blocks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PrefixFigures>,
}

/// What every policy's report shares.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// By request id.
    pub sent: &'a HashMap<String, Sent>,
    pub window_secs: f64,
    pub slo: Slo,
    pub scale: Scale,
    pub oracle_rps: f64,
    /// Regions of the timeline, in chart order.
    pub regions: Vec<String>,
    pub timeline_buckets: usize,
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    if x.is_finite() {
        (x * p).round() / p
    } else {
        0.0
    }
}

/// The report of one policy from its results and the residency violations counted for it.
pub fn policy_report(
    name: &str,
    results: &[RequestResult],
    violations: u64,
    cx: &Context<'_>,
) -> PolicyReport {
    let mut tally = Tally::new(cx);
    for r in results {
        tally.add(r, cx);
    }
    tally.report(name, results, violations, cx)
}

/// How the run was set up, for the reader of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// The arrival process, e.g. `trace azure_llm_2023_code.csv`.
    pub arrivals: String,
    pub sources: Vec<String>,
    /// Every region with a deployment (the idle ones too).
    pub regions: Vec<String>,
    pub concurrency: u32,
    /// How `concurrency` was chosen.
    pub concurrency_from: String,
    pub region_capacity_rps: f64,
    pub mean_service_ms: f64,
    pub time_scale: f64,
    pub window_secs: f64,
    pub slo_ttft_ms: f64,
    pub slo_tpot_ms: f64,
    pub max_input_tokens: u64,
    pub max_output_tokens: u64,
    /// The RTT between the source and the serving region was added to every latency (simulated
    /// regions); false when the network was real (`--target`).
    pub rtt_added: bool,
}

/// The whole report, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub policies: Vec<PolicyReport>,
    /// `None` (JSON `null`) when the regions' capacity is unknown (`--target` without a
    /// capacity option): see `notes`.
    pub oracle: Option<Oracle>,
    pub setup: Setup,
    /// What the reader must know to read the figures (skipped oracle, unattributed requests…).
    pub notes: Vec<String>,
}

/// Send lag (p99, wall ms) above which the table warns that the machine was saturated.
pub const LAG_WARN_MS: f64 = 5.0;

/// The terminal table.
pub fn table(r: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<15} {:>7} {:>7} {:>6} {:>6} {:>9} {:>7} {:>24} {:>8} {:>24} {:>7} {:>7} {:>5}",
        "policy",
        "offered",
        "served",
        "thrtl",
        "failed",
        "goodput/s",
        "/oracle",
        "TTFT p50/p90/p99 ms",
        "TPOT p50",
        "e2e p50/p90/p99 ms",
        "local",
        "spilled",
        "resid"
    );
    for p in &r.policies {
        policy_row(&mut out, p);
    }
    oracle_row(&mut out, r.oracle.as_ref());
    tail_lines(&mut out, r);
    prefix_lines(&mut out, r);
    for b in breaches(r) {
        let _ = writeln!(out, "error: {b}");
    }
    table_footer(&mut out, r);
    out
}

/// One policy's row of the terminal table.
fn policy_row(out: &mut String, p: &PolicyReport) {
    let tri = |a: f64, b: f64, c: f64| format!("{a:.0}/{b:.0}/{c:.0}");
    let _ = writeln!(
        out,
        "{:<15} {:>7} {:>7} {:>6} {:>6} {:>9.2} {:>7} {:>24} {:>8.1} {:>24} {:>6.1}% {:>6.1}% {:>5}",
        p.name,
        p.offered,
        p.served,
        p.throttled,
        p.failed,
        p.goodput_rps,
        vs_oracle(p),
        tri(p.ttft_p50_ms, p.ttft_p90_ms, p.ttft_p99_ms),
        p.tpot_p50_ms,
        tri(p.e2e_p50_ms, p.e2e_p90_ms, p.e2e_p99_ms),
        p.locality * 100.0,
        p.spilled * 100.0,
        p.residency_violations
    );
}

/// The goodput's share of the oracle, or `BREACH` when it is above the bound.
fn vs_oracle(p: &PolicyReport) -> String {
    if breaches_oracle(p) {
        "BREACH".to_string()
    } else {
        format!("{:.1}%", p.goodput_vs_oracle * 100.0)
    }
}

/// The oracle's row, or why there is none.
fn oracle_row(out: &mut String, oracle: Option<&Oracle>) {
    match oracle {
        Some(o) => {
            let _ = writeln!(
                out,
                "{:<15} {:>7.0} {:>7.0} {:>6} {:>6} {:>9.2} {:>7}   (bound on good requests, slot-seconds in {:.2} s cells, waiting up to the SLO; a schedule reaches {:.0}; in-region bound {:.0}: at most {:.1}% local at the oracle's goodput)",
                "oracle",
                o.offered,
                o.served,
                "",
                "",
                o.goodput_rps,
                "100.0%",
                o.bucket_secs,
                o.schedule_served,
                o.in_region_served,
                o.local_share * 100.0
            );
        }
        None => {
            let _ = writeln!(out, "{:<15} (skipped: capacity unknown)", "oracle");
        }
    }
}

/// Whether a policy's goodput is above the oracle's bound (beyond rounding): the bound is then
/// wrong, and no share of it is printed.
pub fn breaches_oracle(p: &PolicyReport) -> bool {
    p.goodput_vs_oracle > 1.0 + BREACH_TOLERANCE
}

/// One message per policy above the oracle's bound or below its prefill floor; empty when the
/// bounds held.
pub fn breaches(r: &BenchReport) -> Vec<String> {
    let mut out: Vec<String> = match &r.oracle {
        Some(o) => r
            .policies
            .iter()
            .filter(|p| breaches_oracle(p))
            .map(|p| {
                format!(
                    "{} served {:.3} good requests/s, {:.1}% of the oracle's bound of {:.3}/s: the bound is wrong for this run (setup: {})",
                    p.name,
                    p.goodput_rps,
                    p.goodput_vs_oracle * 100.0,
                    o.goodput_rps,
                    r.setup.arrivals
                )
            })
            .collect(),
        None => Vec::new(),
    };
    out.extend(prefix_breaches(r));
    out
}

/// The cross-region peers a policy's tail is read against (`in-region` throttles instead).
const TAIL_PEERS: [&str; 2] = ["round-robin", "least-loaded"];

/// Each other policy's TTFT p50 and p99 as a multiple of the best of the cross-region peers'
/// in the same run, when a peer ran.
fn tail_lines(out: &mut String, r: &BenchReport) {
    let peers: Vec<&PolicyReport> = r
        .policies
        .iter()
        .filter(|p| TAIL_PEERS.contains(&p.name.as_str()) && p.served > 0)
        .collect();
    let best =
        |f: fn(&PolicyReport) -> f64| peers.iter().map(|p| f(p)).fold(f64::INFINITY, f64::min);
    let (p50, p99) = (best(|p| p.ttft_p50_ms), best(|p| p.ttft_p99_ms));
    if peers.is_empty() || p50 <= 0.0 || p99 <= 0.0 {
        return;
    }
    for p in r
        .policies
        .iter()
        .filter(|p| !TAIL_PEERS.contains(&p.name.as_str()) && p.served > 0)
    {
        let _ = writeln!(
            out,
            "tail: {} TTFT p50 {:.2}x, p99 {:.2}x the best of {}",
            p.name,
            p.ttft_p50_ms / p50,
            p.ttft_p99_ms / p99,
            TAIL_PEERS.join(" and ")
        );
    }
}

fn table_footer(out: &mut String, r: &BenchReport) {
    let lag = r
        .policies
        .iter()
        .map(|p| p.send_lag_p99_ms)
        .fold(0.0, f64::max);
    if lag > LAG_WARN_MS {
        let _ = writeln!(
            out,
            "\nnote: the load generator fell behind its schedule by up to {lag:.1} ms (p99, wall clock): this machine was saturated, and at time scale {} its queueing weighs {}x in the latencies; a lower --time-scale measures the gateway rather than the machine.",
            r.setup.time_scale, r.setup.time_scale
        );
    }
    let s = &r.setup;
    let _ = writeln!(
        out,
        "\n{} | {} regions x {} slots ({}) = {:.1} req/s each, mean service {:.0} ms | time scale {} | window {:.0} s | SLO TTFT {} ms, TPOT {} ms | latencies in trace time",
        s.arrivals,
        s.sources.len(),
        s.concurrency,
        s.concurrency_from,
        s.region_capacity_rps,
        s.mean_service_ms,
        s.time_scale,
        s.window_secs,
        s.slo_ttft_ms,
        s.slo_tpot_ms
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
}

#[cfg(test)]
mod tests;

//! `spillway bench --target REGION=URL …`: the arrivals offered to a Spillway gateway that is
//! already running, one listener per source region.
//!
//! Each `--target` names a source region and the URL of the gateway's listener for it; source
//! `k` of the arrivals (a trace shifted `k` times, or its own Poisson/gamma stream) goes to the
//! `k`-th target, as `--model` (required: a plain model id or an inference profile such as
//! `us.demo.chat-small-v1:0`) with `--api-key` or `$SPILLWAY_API_KEY`. The report has one row,
//! `target`.
//!
//! * **Serving region**: the `x-spillway-region` response header. This mode cannot see the
//!   upstreams' records, so residency is judged on the gateway's own claim; a served response
//!   without the header counts as served in `unknown` (not local) and is noted.
//! * **Residency**: a served request is a violation when its serving region is outside the
//!   allowed set of its source: `--allowed-regions` if given (one set for every source), else
//!   the regions whose name shares the source's geography prefix (`us` of `us-east-1`, `eu` of
//!   `eu-west-3`), which is how Bedrock-style geographic profiles are drawn.
//! * **Oracle**: it needs each region's capacity: `--region-rps` (requests per second a region
//!   completes, trace time) or `--concurrency` (slots per region at the simulator's default
//!   speeds, 4,000 prefill and 50 decode tokens/s, for a gateway over `spillway sim`s). Its
//!   regions are the targets plus `--allowed-regions`. Without either option the oracle is
//!   skipped (`"oracle": null`) with a note, and `goodput_vs_oracle` is 0.
//! * **Latencies** are as the client measured them, times `--time-scale`; no RTT is added
//!   (the network is real).
use std::collections::HashSet;

use spillway_bench::client::{LoadClient, RequestResult};
use spillway_bench::oracle::{self, Oracle, Topology, oracle};
use spillway_bench::report::{self, BenchReport, Context, PolicyReport, Scale, Setup};
use spillway_bench::workload::{self, Workload};

use super::local::{DECODE_TPS, PREFILL_TPS};
use super::{BUCKET, BenchArgs, TIMELINE_BUCKETS};

const NAME: &str = "target";
/// The serving region of a served response without `x-spillway-region`.
const UNKNOWN: &str = "unknown";

/// The geography prefix of a region name: `us` of `us-east-1`.
fn geography(region: &str) -> &str {
    region.split('-').next().unwrap_or(region)
}

/// Where requests from each source may be served.
struct Allowed(Option<HashSet<String>>);

impl Allowed {
    fn allows(&self, source: &str, region: &str) -> bool {
        match &self.0 {
            Some(set) => set.contains(region),
            None => geography(source) == geography(region),
        }
    }

    fn describe(&self) -> String {
        match &self.0 {
            Some(set) => {
                let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
                v.sort_unstable();
                format!("--allowed-regions {}", v.join(","))
            }
            None => "the regions sharing the source's geography prefix".into(),
        }
    }
}

/// What the `--target` options name: the model and key to request with, each source region and
/// the URL of its listener, and where each source may be served.
struct Targets {
    model: String,
    key: String,
    sources: Vec<String>,
    urls: Vec<String>,
    allowed: Allowed,
}

impl Targets {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Targets> {
        let model = args.model.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "--target needs --model (the model id or inference profile to request, e.g. us.demo.chat-small-v1:0)"
            )
        })?;
        let key = super::api_key(args).ok_or_else(|| {
            anyhow::anyhow!(
                "--target needs the gateway's API key: --api-key KEY or $SPILLWAY_API_KEY"
            )
        })?;
        let sources: Vec<String> = args.target.iter().map(|t| t.0.clone()).collect();
        let urls: Vec<String> = args.target.iter().map(|t| t.1.clone()).collect();
        for (i, s) in sources.iter().enumerate() {
            anyhow::ensure!(
                !sources[..i].contains(s),
                "--target {s}=… is given twice (one --target per source region)"
            );
        }
        let allowed = Allowed(
            args.allowed_regions
                .as_ref()
                .map(|v| v.iter().map(|r| r.trim().to_string()).collect()),
        );
        if let Some(set) = &allowed.0 {
            anyhow::ensure!(
                !set.is_empty() && !set.contains(""),
                "--allowed-regions: expected region names, comma-separated"
            );
        }
        Ok(Targets {
            model,
            key,
            sources,
            urls,
            allowed,
        })
    }
}

/// The offered load and what it is measured against, before any request is sent.
struct Offer {
    w: Workload,
    /// Sources first (the workload's demand columns), then the other allowed regions.
    regions: Vec<String>,
    /// Mean service time (s) at the simulator's default speeds.
    service: f64,
    /// Requests per second a region completes, when known.
    capacity: Option<f64>,
    /// How `capacity` was obtained.
    concurrency_from: String,
    window_secs: f64,
    bound: Option<Oracle>,
}

impl Offer {
    fn new(args: &BenchArgs, t: &Targets) -> anyhow::Result<Offer> {
        let w = super::workload(args, t.sources.len())?;
        let mut regions = t.sources.clone();
        let mut extra: Vec<String> = t
            .allowed
            .0
            .iter()
            .flatten()
            .filter(|r| !t.sources.contains(r))
            .cloned()
            .collect();
        extra.sort();
        regions.extend(extra);
        let service = w.mean_service_secs(PREFILL_TPS, DECODE_TPS);
        let (capacity, concurrency_from) = capacity(args, service)?;
        let window_secs = w.buckets(BUCKET) as f64 * BUCKET.as_secs_f64();
        let bound = capacity.map(|c| {
            // Slot-seconds per second: the rate times the mean service time. The network's
            // RTTs are unknown here, so none is added (the bound only loosens).
            let slots = c * service;
            let n = regions.len();
            let topology = Topology {
                slots: vec![slots; n],
                reach: regions
                    .iter()
                    .map(|s| regions.iter().map(|r| t.allowed.allows(s, r)).collect())
                    .collect(),
                rtt_secs: vec![vec![0.0; n]; n],
                ttft_slo_secs: args.slo.ttft_ms / 1000.0,
            };
            oracle(
                &topology,
                &oracle::jobs(&w, PREFILL_TPS, DECODE_TPS),
                window_secs,
            )
        });
        Ok(Offer {
            w,
            regions,
            service,
            capacity,
            concurrency_from,
            window_secs,
            bound,
        })
    }

    /// The opening line (see [`super::announce`]).
    fn announce(&self, args: &BenchArgs) {
        super::announce(
            &self.w,
            self.window_secs,
            args.time_scale,
            &self.capacity.map_or_else(
                || "region capacity unknown".to_string(),
                |c| format!("{c:.1} req/s per region ({})", self.concurrency_from),
            ),
            self.bound.as_ref().map(|b| b.goodput_rps),
        );
    }

    /// The `target` row's figures from the results (serving regions already attributed).
    fn policy(
        &self,
        args: &BenchArgs,
        t: &Targets,
        results: &[RequestResult],
        violations: u64,
        chart: &[String],
    ) -> PolicyReport {
        let sent = super::sent_by_id(&self.w, &t.sources);
        let cx = Context {
            sent: &sent,
            window_secs: self.window_secs,
            slo: args.slo,
            scale: Scale {
                time_scale: args.time_scale,
                rtt_ms: Default::default(),
                local_rtt_ms: 0.0,
            },
            oracle_rps: self.bound.as_ref().map_or(0.0, |b| b.goodput_rps),
            regions: chart.to_vec(),
            timeline_buckets: TIMELINE_BUCKETS,
        };
        report::policy_report(NAME, results, violations, &cx)
    }

    /// How the run was set up, for the report.
    fn setup(self, args: &BenchArgs, sources: Vec<String>, chart: Vec<String>) -> Setup {
        Setup {
            arrivals: self.w.description.clone(),
            sources,
            regions: chart,
            concurrency: args.concurrency.unwrap_or(0),
            concurrency_from: self.concurrency_from,
            region_capacity_rps: self.capacity.map_or(0.0, |c| (c * 100.0).round() / 100.0),
            mean_service_ms: if args.concurrency.is_some() {
                (self.service * 1000.0).round()
            } else {
                0.0
            },
            time_scale: args.time_scale,
            window_secs: self.window_secs,
            slo_ttft_ms: args.slo.ttft_ms,
            slo_tpot_ms: args.slo.tpot_ms,
            max_input_tokens: workload::MAX_INPUT_TOKENS,
            max_output_tokens: workload::MAX_OUTPUT_TOKENS,
            rtt_added: false,
        }
    }
}

/// A region's capacity (requests per second) from `--region-rps`, or from `--concurrency` at a
/// mean service time of `service` seconds; `None` without either. With how it was obtained.
fn capacity(args: &BenchArgs, service: f64) -> anyhow::Result<(Option<f64>, String)> {
    Ok(match (args.region_rps, args.concurrency) {
        (Some(rps), _) => {
            anyhow::ensure!(
                rps.is_finite() && rps > 0.0,
                "--region-rps must be a positive number"
            );
            (Some(rps), "--region-rps".to_string())
        }
        (None, Some(c)) => {
            anyhow::ensure!(c > 0, "--concurrency must be at least 1");
            (
                Some(f64::from(c) / service.max(1e-9)),
                "--concurrency, at the simulator's default speeds".to_string(),
            )
        }
        (None, None) => (None, "unknown".to_string()),
    })
}

/// Marks served responses without `x-spillway-region` as served in [`UNKNOWN`]; returns how many
/// there were, and how many served requests were served outside their allowed regions.
fn attribute(results: &mut [RequestResult], allowed: &Allowed) -> (u64, u64) {
    let (mut unknown, mut violations) = (0u64, 0u64);
    for r in results.iter_mut().filter(|r| r.ok()) {
        match &r.served_region {
            None => {
                unknown += 1;
                r.served_region = Some(UNKNOWN.to_string());
            }
            Some(region) if !allowed.allows(&r.source, region) => violations += 1,
            Some(_) => {}
        }
    }
    (unknown, violations)
}

/// The chart's regions: the known ones, then any the gateway reported besides.
fn chart_regions(regions: &[String], results: &[RequestResult]) -> Vec<String> {
    let mut chart = regions.to_vec();
    let mut others: Vec<String> = results
        .iter()
        .filter_map(|r| r.served_region.clone())
        .filter(|r| !chart.contains(r))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    others.sort();
    chart.extend(others);
    chart
}

pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let t = Targets::from_args(args)?;
    let offer = Offer::new(args, &t)?;
    let mut notes = vec![format!(
        "{NAME}: serving regions from the gateway's x-spillway-region header (this mode cannot see the upstreams' records); residency judged against {}",
        t.allowed.describe()
    )];
    if offer.bound.is_none() {
        notes.push(
            "oracle skipped: the regions' capacity is unknown (give --region-rps RPS, or --concurrency N for regions of `spillway sim`s at their default speeds)".into(),
        );
    }
    offer.announce(args);
    let specs = super::specs(&offer.w, args.time_scale, &t.urls, &t.sources, &t.model);
    let mut results = super::drive(NAME, LoadClient::new(&t.key)?, specs).await?;
    let (unknown, violations) = attribute(&mut results, &t.allowed);
    if unknown > 0 {
        notes.push(format!(
            "{NAME}: {unknown} served responses carried no x-spillway-region; they count as '{UNKNOWN}', not local, and residency could not be judged for them"
        ));
    }
    let chart = chart_regions(&offer.regions, &results);
    let policy = offer.policy(args, &t, &results, violations, &chart);
    let oracle = offer.bound.clone();
    let setup = offer.setup(args, t.sources, chart);
    Ok(BenchReport {
        policies: vec![policy],
        oracle,
        setup,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residency_defaults_to_the_geography_prefix() {
        let geo = Allowed(None);
        assert!(geo.allows("us-east-1", "us-west-2"));
        assert!(!geo.allows("us-east-1", "eu-west-1"));
        assert!(geo.allows("eu-central-1", "eu-west-3"));
        let list = Allowed(Some(HashSet::from(["us-east-1".to_string()])));
        assert!(list.allows("us-east-2", "us-east-1"));
        assert!(!list.allows("us-east-1", "us-east-2"));
    }
}

//! `spillway bench --self-contained`: routing policies side by side on the same arrivals, and
//! the oracle bound (`spillway bench overhead` is [`crate::overhead`]).
//!
//! # Topology
//!
//! Five simulated regions run in-process on loopback: three in the `us` geography (us-east-1,
//! us-east-2, us-west-2), the sources, and two in `eu` (eu-west-1, eu-central-1) that no request
//! may reach and that must stay idle. Each region has one deployment of the model with the same
//! capacity: `--concurrency` slots, prefill at 4,000 tokens/s and decode at 50 tokens/s per
//! sequence, service times divided by `--time-scale`; the gateway lets at most `concurrency`
//! requests in flight per deployment. The simulators inject no RTT (an in-process simulator has
//! one RTT for every source, while a source's RTT depends on where it is served); the report
//! adds DESIGN §7's RTT between source and serving region to each latency, uncompressed (see
//! [`spillway_bench::report`]). The gateway is told those RTTs divided by the time scale, so
//! that its routing weighs network against service time in the same ratio as it would in real
//! time (service times are compressed X-fold, so the RTTs it plans with are too). The tenant's
//! quotas are far above the load, so only capacity limits what is served.
//!
//! # Capacity
//!
//! Without `--concurrency`, each region gets an equal share of the 99th percentile of the
//! pooled demand per second (all sources together), times the mean service time of the offered
//! requests: a single source's bursts then exceed its own region, while the three regions
//! together absorb all but the top 1% of seconds. A region completes `concurrency / mean
//! service time` requests per second: the capacity the oracle uses.
//!
//! # Policies
//!
//! Each policy runs against a fresh gateway and fresh simulators, with the same arrivals:
//! `in-region` (the plain model id: never leaves the source), and through the `us.` profile
//! `round-robin`, `least-loaded` and `spillway` (`[routing] policy`).
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use spillway_bench::client::{LoadClient, RequestSpec};
use spillway_bench::oracle::{Network, oracle, size_concurrency};
use spillway_bench::report::{self, BenchReport, Context, PolicyReport, Scale, Sent, Setup, Slo};
use spillway_bench::summary::residency_violations;
use spillway_bench::traces;
use spillway_bench::workload::{self, Arrivals, Workload, WorkloadSpec};
use spillway_gateway::{Config, Gateway};

const MODEL: &str = "bench.chat-v1:0";
const KEY: &str = "spillway-demo-key";
const KEY_SHA256: &str = "4c632e7135929907209e422fd8a878aca2a19f7a3ed1089e7c3e1c53c44bfa69";
/// Regions: name, geography. The first three are the sources.
const REGIONS: [(&str, &str); 5] = [
    ("us-east-1", "us"),
    ("us-east-2", "us"),
    ("us-west-2", "us"),
    ("eu-west-1", "eu"),
    ("eu-central-1", "eu"),
];
const SOURCES: usize = 3;
/// DESIGN §7's round-trip times (ms).
const RTT_MS: [(&str, &str, f64); 5] = [
    ("us-east-1", "us-east-2", 12.0),
    ("us-east-2", "us-west-2", 50.0),
    ("us-east-1", "us-west-2", 70.0),
    ("eu-central-1", "eu-west-1", 20.0),
    ("us-east-1", "eu-west-1", 80.0),
];
const LOCAL_RTT_MS: f64 = 1.0;
const PREFILL_TPS: f64 = 4000.0;
const DECODE_TPS: f64 = 50.0;
/// The oracle's bucket (trace time).
const BUCKET: Duration = Duration::from_secs(1);
/// Points of the served-over-time charts.
const TIMELINE_BUCKETS: usize = 120;
const POLICIES: [&str; 4] = ["in-region", "round-robin", "least-loaded", "spillway"];

#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Run the simulators and the gateway in this process (the only mode so far).
    #[arg(long)]
    pub self_contained: bool,
    /// Replay a trace per source region: Azure CSV (`.csv`) or JSONL (`.jsonl`: `timestamp` in
    /// ms, `input_length`, `output_length`). Tokens are capped at 4096 in, 512 out.
    #[arg(long, value_name = "FILE", group = "arrivals")]
    pub trace: Option<PathBuf>,
    /// Poisson arrivals at RATE requests/s per source region.
    #[arg(long, value_name = "RATE", group = "arrivals")]
    pub poisson: Option<f64>,
    /// Gamma arrivals at RATE requests/s per source region, gaps with coefficient of variation
    /// CV (1 is Poisson; larger is burstier).
    #[arg(long, value_name = "RATE,CV", group = "arrivals", value_parser = parse_gamma)]
    pub gamma: Option<(f64, f64)>,
    /// Seconds of trace time of a Poisson or gamma run.
    #[arg(long, default_value_t = 60.0, conflicts_with = "trace")]
    pub duration: f64,
    /// Prompt tokens of each Poisson or gamma request.
    #[arg(long, default_value_t = 512, conflicts_with = "trace")]
    pub input_tokens: u64,
    /// Output tokens (`max_tokens`) of each Poisson or gamma request.
    #[arg(long, default_value_t = 64, conflicts_with = "trace")]
    pub output_tokens: u64,
    /// Replay X times faster; the simulators' service times are divided by X too.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Offer only the first N requests (all source regions together, in arrival order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Source region k replays the trace from k × S seconds on, wrapping (default: a third of
    /// the trace).
    #[arg(long, value_name = "S", requires = "trace")]
    pub shift_secs: Option<f64>,
    /// Slots per region (default: sized from the arrivals; see the report's setup line).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Objective a served request must meet to count as goodput (trace time).
    #[arg(long, default_value = "ttft_ms=2000,tpot_ms=200")]
    pub slo: Slo,
    /// Policies to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "in-region,round-robin,least-loaded,spillway"
    )]
    pub policies: Vec<String>,
    /// Seed of the arrival processes and of the gateway's routing.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML page with the table and charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// The gateway's own overhead: the same load straight to a simulator and through the
    /// gateway, side by side.
    Overhead(crate::overhead::OverheadArgs),
}

fn parse_gamma(s: &str) -> Result<(f64, f64), String> {
    let (r, c) = s
        .split_once(',')
        .ok_or_else(|| format!("expected RATE,CV, got {s:?}"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    match (num(r), num(c)) {
        (Some(r), Some(c)) => Ok((r, c)),
        _ => Err(format!("expected two positive numbers RATE,CV, got {s:?}")),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchCommand::Overhead(a)) = args.command {
        return crate::overhead::run(a).await;
    }
    anyhow::ensure!(
        args.self_contained,
        "spillway bench: give --self-contained (simulators and gateway in this process), or use `spillway bench overhead`"
    );
    anyhow::ensure!(
        args.time_scale.is_finite() && args.time_scale > 0.0,
        "--time-scale must be a positive number"
    );
    for p in &args.policies {
        anyhow::ensure!(
            POLICIES.contains(&p.as_str()),
            "unknown policy {p:?} (expected some of {})",
            POLICIES.join(", ")
        );
    }
    let w = Workload::build(&workload_spec(&args)?);
    anyhow::ensure!(!w.requests.is_empty(), "the arrivals hold no request");
    let service = w.mean_service_secs(PREFILL_TPS, DECODE_TPS);
    let demand = w.demand(REGIONS.len(), BUCKET);
    let (concurrency, concurrency_from) = match args.concurrency {
        Some(c) if c > 0 => (c, "--concurrency".to_string()),
        Some(_) => anyhow::bail!("--concurrency must be at least 1"),
        None => (
            size_concurrency(&demand[..], SOURCES, service, BUCKET.as_secs_f64()),
            "sized: p99 of the pooled demand per second / 3 regions x mean service time".into(),
        ),
    };
    let capacity = f64::from(concurrency) / service.max(1e-9);
    let net = Network {
        capacity: vec![capacity * BUCKET.as_secs_f64(); REGIONS.len()],
        cross_cap: vec![2.0 * capacity * BUCKET.as_secs_f64(); REGIONS.len()],
        reach: REGIONS
            .iter()
            .map(|(_, ga)| REGIONS.iter().map(|(_, gb)| ga == gb).collect())
            .collect(),
    };
    let bound = oracle(&net, &demand, BUCKET.as_secs_f64());
    let window_secs = demand.len() as f64 * BUCKET.as_secs_f64();
    let setup = Setup {
        arrivals: w.description.clone(),
        sources: REGIONS[..SOURCES].iter().map(|r| r.0.to_string()).collect(),
        regions: REGIONS.iter().map(|r| r.0.to_string()).collect(),
        concurrency,
        concurrency_from,
        region_capacity_rps: (capacity * 100.0).round() / 100.0,
        mean_service_ms: (service * 1000.0).round(),
        time_scale: args.time_scale,
        window_secs,
        slo_ttft_ms: args.slo.ttft_ms,
        slo_tpot_ms: args.slo.tpot_ms,
        max_input_tokens: workload::MAX_INPUT_TOKENS,
        max_output_tokens: workload::MAX_OUTPUT_TOKENS,
    };
    eprintln!(
        "spillway bench: {} requests ({}) over {:.0} s of trace time, {:.0} s at time scale {}; {} slots per region = {:.1} req/s each; oracle {:.2} req/s",
        w.requests.len(),
        w.description,
        window_secs,
        window_secs / args.time_scale,
        args.time_scale,
        concurrency,
        capacity,
        bound.goodput_rps
    );
    let sent: HashMap<String, Sent> = w
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let s = Sent {
                source: REGIONS[r.source].0.to_string(),
                at: r.at,
                output_tokens: r.output_tokens,
            };
            (request_id(i), s)
        })
        .collect();
    let cx = Context {
        sent: &sent,
        window_secs,
        slo: args.slo,
        scale: Scale {
            time_scale: args.time_scale,
            rtt_ms: RTT_MS
                .iter()
                .map(|(a, b, ms)| ((a.to_string(), b.to_string()), *ms))
                .collect(),
            local_rtt_ms: LOCAL_RTT_MS,
        },
        oracle_rps: bound.goodput_rps,
        regions: setup.regions.clone(),
        timeline_buckets: TIMELINE_BUCKETS,
    };
    let mut policies = Vec::new();
    for name in &args.policies {
        policies.push(run_policy(name, &w, &args, concurrency, &cx).await?);
    }
    let report = BenchReport {
        policies,
        oracle: bound,
        setup,
    };
    println!("\n{}", report::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("spillway bench: wrote {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, spillway_bench::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("spillway bench: wrote {}", path.display());
    }
    Ok(())
}

fn workload_spec(args: &BenchArgs) -> anyhow::Result<WorkloadSpec> {
    let arrivals = match (&args.trace, args.poisson, args.gamma) {
        (Some(path), _, _) => Arrivals::Trace {
            trace: traces::load(path)?,
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
        },
        (_, Some(rate), _) => {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0,
                "--poisson needs a positive rate"
            );
            Arrivals::Poisson { rate }
        }
        (_, _, Some((rate, cv))) => Arrivals::Gamma { rate, cv },
        _ => anyhow::bail!(
            "spillway bench: give the arrivals: --trace FILE, --poisson RATE or --gamma RATE,CV"
        ),
    };
    let secs = |what: &str, s: f64| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| anyhow::anyhow!("{what}: expected seconds >= 0, got {s}"))
    };
    Ok(WorkloadSpec {
        arrivals,
        sources: SOURCES,
        duration: secs("--duration", args.duration)?,
        shift: args
            .shift_secs
            .map(|s| secs("--shift-secs", s))
            .transpose()?,
        limit: args.limit,
        input_tokens: args.input_tokens,
        output_tokens: args.output_tokens,
        seed: args.seed,
    })
}

fn request_id(i: usize) -> String {
    format!("bench-{i}")
}

/// The gateway's configuration for one policy (`spillway` also for `in-region`).
fn topology(policy: &str, concurrency: u32, time_scale: f64, seed: u64) -> String {
    let routing = if policy == "in-region" {
        "spillway"
    } else {
        policy
    };
    let mut t = format!(
        "[routing]\npolicy = \"{routing}\"\nmax_attempts = 3\nseed = {seed}\n\n[server]\nshutdown_grace_secs = 10\n\n"
    );
    for (r, g) in REGIONS {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    for (a, b, ms) in RTT_MS {
        let ms = ms / time_scale;
        t += &format!("[[rtt]]\nbetween = [\"{a}\", \"{b}\"]\nms = {ms:?}\n\n");
    }
    t += &format!("[[models]]\nid = \"{MODEL}\"\n\n");
    for (r, _) in REGIONS {
        t += &format!(
            "[[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{r}\"\nmax_in_flight = {concurrency}\n\
             upstream = {{ kind = \"sim\", concurrency = {concurrency}, queue_limit = {concurrency}, prefill_tokens_per_sec = {PREFILL_TPS:.1}, decode_tokens_per_sec = {DECODE_TPS:.1}, rtt_ms = 0, time_scale = {time_scale:?} }}\n\n"
        );
    }
    t +=
        &format!("[[tenants]]\nname = \"bench\"\napi_keys = [{{ sha256 = \"{KEY_SHA256}\" }}]\n\n");
    t += &format!(
        "[[tenants.quotas]]\nmodel = \"{MODEL}\"\nrpm = 1000000000\ntpm = 1000000000000\n\n"
    );
    for (r, _) in &REGIONS[..SOURCES] {
        t += &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{r}\"\n\n");
    }
    t
}

/// One policy against a fresh gateway: offer every request, then judge residency from the
/// simulators' records.
async fn run_policy(
    name: &str,
    w: &Workload,
    args: &BenchArgs,
    concurrency: u32,
    cx: &Context<'_>,
) -> anyhow::Result<PolicyReport> {
    let cfg = Config::parse(
        &topology(name, concurrency, args.time_scale, args.seed),
        "<bench>",
    )?;
    let gateway = Gateway::start(cfg).await.context("starting the gateway")?;
    let model = if name == "in-region" {
        MODEL.to_string()
    } else {
        format!("us.{MODEL}")
    };
    let mut urls = Vec::new();
    for (r, _) in &REGIONS[..SOURCES] {
        let addr = gateway
            .addr(r)
            .with_context(|| format!("no listener for {r}"))?;
        urls.push(format!("http://{addr}"));
    }
    let specs: Vec<RequestSpec> = w
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| RequestSpec {
            id: request_id(i),
            at: r.at.div_f64(args.time_scale),
            base_url: urls[r.source].clone(),
            source: REGIONS[r.source].0.to_string(),
            model: model.clone(),
            prompt_tokens: r.input_tokens,
            max_tokens: r.output_tokens,
        })
        .collect();
    let span = specs.last().map_or(Duration::ZERO, |s| s.at);
    let client = LoadClient::new(KEY)?;
    let progress = client.progress.clone();
    let run = tokio::spawn(async move { client.run(specs).await });
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !run.is_finished() {
        tick.tick().await;
        let done = (started.elapsed().as_secs_f64() / span.as_secs_f64().max(1e-9)).min(1.0);
        let bar = (done * 30.0) as usize;
        eprintln!(
            "  {name:<13} [{}{}] {:>3.0}%  sent {:>6}/{}  ok {:>6}  throttled {:>6}  failed {:>5}",
            "#".repeat(bar),
            ".".repeat(30 - bar),
            done * 100.0,
            progress.sent.load(Ordering::Relaxed),
            w.requests.len(),
            progress.ok.load(Ordering::Relaxed),
            progress.throttled.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
        );
    }
    let results = run.await?;
    let mut seen = Vec::new();
    for sim in gateway.sims() {
        for rec in sim.served() {
            if let Some(id) = rec.request_id {
                seen.push((id, rec.region.clone()));
            }
        }
    }
    let source_of: HashMap<String, String> = cx
        .sent
        .iter()
        .map(|(id, s)| (id.clone(), s.source.clone()))
        .collect();
    let violations =
        residency_violations(&seen, &source_of, &allowed_sets(gateway.config(), &model));
    gateway.shutdown(Duration::from_secs(10)).await;
    Ok(report::policy_report(name, &results, violations, cx))
}

/// For each source region: where `model` may be served from it (the profile's destination set,
/// or the source alone for a plain model id).
fn allowed_sets(cfg: &Config, model: &str) -> HashMap<String, HashSet<String>> {
    let profile = cfg.profile_ix(model);
    REGIONS[..SOURCES]
        .iter()
        .map(|(r, _)| {
            let set: HashSet<String> = match profile {
                Some(p) => cfg
                    .region_ix(r)
                    .and_then(|s| cfg.profiles[p].destinations.get(&s))
                    .map(|d| d.iter().map(|x| cfg.region_name(*x).to_string()).collect())
                    .unwrap_or_default(),
                None => HashSet::from([r.to_string()]),
            };
            (r.to_string(), set)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_topology_is_valid_and_the_profile_stays_in_the_us() {
        for p in POLICIES {
            let cfg = Config::parse(&topology(p, 4, 30.0, 1), "<t>")
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            let sets = allowed_sets(&cfg, &format!("us.{MODEL}"));
            for (src, set) in &sets {
                assert_eq!(set.len(), 3, "{src}: {set:?}");
                assert!(set.iter().all(|r| r.starts_with("us-")), "{src}: {set:?}");
            }
            assert_eq!(
                allowed_sets(&cfg, MODEL)["us-east-2"],
                HashSet::from(["us-east-2".to_string()])
            );
        }
    }

    #[test]
    fn gamma_argument() {
        assert_eq!(parse_gamma("5,2.5"), Ok((5.0, 2.5)));
        assert!(parse_gamma("5").is_err());
        assert!(parse_gamma("5,-1").is_err());
    }
}

//! `spillway bench`: the same open-loop arrivals offered to one or more gateways, one report.
//!
//! Modes (`spillway bench overhead` is [`crate::overhead`], `spillway bench soak`,
//! `spillway bench flood` and `spillway bench streams` are [`soak`], `spillway bench midstream`
//! is [`midstream`]):
//!
//! * `--self-contained` ([`local`]): simulators and a gateway in this process, Spillway's routing
//!   policies side by side, with the oracle bound.
//! * `--peer URL --peer-model NAME` ([`peer`]): the same simulators on fixed, printed ports
//!   (`--sim-base-port`), another OpenAI-compatible gateway configured over them at `URL`
//!   (LiteLLM, say), the same arrivals replayed through it; each request's serving region comes
//!   from the simulators' own records. With `--self-contained` too, Spillway's policies and the
//!   peer run on the same arrivals in one report.
//! * `--target REGION=URL` ([`target`]): the arrivals of each source region sent to an already
//!   running Spillway gateway's listener for that region; the serving region is read from the
//!   `x-spillway-region` response header.
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use spillway_bench::client::{LoadClient, RequestResult, RequestSpec};
use spillway_bench::report::{self, Sent, Slo};
use spillway_bench::traces;
use spillway_bench::workload::{Arrivals, Workload, WorkloadSpec};

mod instances;
mod local;
mod midstream;
mod peer;
mod soak;
mod target;

/// The oracle's bucket (trace time).
const BUCKET: Duration = Duration::from_secs(1);
/// Points of the served-over-time charts.
const TIMELINE_BUCKETS: usize = 120;

#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Run the simulators and the gateway in this process and compare Spillway's policies.
    #[arg(long)]
    pub self_contained: bool,
    /// Send the arrivals of source region REGION to a running Spillway gateway's listener for
    /// that region (`http://host:port`); repeat once per source region.
    #[arg(long = "target", value_name = "REGION=URL", value_parser = parse_target,
          conflicts_with_all = ["self_contained", "peer"])]
    pub target: Vec<(String, String)>,
    /// With --target: the model id or inference profile to request (e.g. `us.demo.chat-small-v1:0`).
    #[arg(long, requires = "target")]
    pub model: Option<String>,
    /// API key for --target (required) or --peer (optional); default: $SPILLWAY_API_KEY.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// With --target: the regions a request may be served in, whatever its source (default:
    /// the regions whose name shares the source's geography prefix, `us` of `us-east-1`).
    #[arg(
        long,
        value_name = "R1,R2,…",
        value_delimiter = ',',
        requires = "target"
    )]
    pub allowed_regions: Option<Vec<String>>,
    /// With --target: requests per second each region completes (trace time), for the oracle.
    #[arg(
        long,
        value_name = "RPS",
        requires = "target",
        conflicts_with = "concurrency"
    )]
    pub region_rps: Option<f64>,
    /// Another OpenAI-compatible gateway (`http://host:port`) configured over the simulators
    /// this command starts on --sim-base-port.
    #[arg(long, value_name = "URL")]
    pub peer: Option<String>,
    /// The model name the peer routes over the us simulators.
    #[arg(long, value_name = "NAME", requires = "peer")]
    pub peer_model: Option<String>,
    /// The peer's row in the report.
    #[arg(long, value_name = "NAME", default_value = "peer", requires = "peer")]
    pub peer_name: String,
    /// With --peer: the simulators listen on P (us-east-1), P+1 (us-east-2), P+2 (us-west-2),
    /// P+3 (eu-west-1), P+4 (eu-central-1).
    #[arg(long, value_name = "P", default_value_t = 9101, requires = "peer")]
    pub sim_base_port: u16,
    /// With --peer: the address the simulators bind.
    #[arg(long, default_value = "127.0.0.1", requires = "peer")]
    pub sim_host: IpAddr,
    /// With --peer: seconds to wait for the peer to answer `GET /v1/models`.
    #[arg(long, value_name = "SECS", default_value_t = 120.0, requires = "peer")]
    pub peer_timeout: f64,
    /// Replay a trace per source region: CSV (`.csv`: Azure's `TIMESTAMP`, `ContextTokens`,
    /// `GeneratedTokens`, or BurstGPT's `Timestamp` in s, `Request tokens`, `Response tokens`) or
    /// JSONL (`.jsonl`: `timestamp` in ms, `input_length`, `output_length`, optional `hash_ids`).
    /// Tokens are capped at 4096 in, 512 out.
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
    /// Replay X times faster; latencies are multiplied by X (simulated regions run X times
    /// faster too; with --target, use X > 1 only against regions that do).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Offer only the first N requests (all source regions together, in arrival order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Source region k replays the trace from k × S seconds on, wrapping (default: the trace's
    /// length over the number of sources).
    #[arg(long, value_name = "S", requires = "trace")]
    pub shift_secs: Option<f64>,
    /// Slots per region (default: sized from the arrivals; see the report's setup line). With
    /// --target: the slots of each target region, for the oracle, at the simulator's speeds.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// With --self-contained: give every simulated region a prefix (KV) cache of this many
    /// 512-token blocks (0: none, the default). The report then gives each policy's cache hit
    /// rate and prompt tokens prefilled; a JSONL trace's `hash_ids` say which prompts share a
    /// prefix. Compare `spillway` (cache-blind) with `spillway-cache` (affinity `on`) and
    /// `spillway-prefer` (`prefer-source`).
    #[arg(long, default_value_t = 0)]
    pub prefix_cache_blocks: u64,
    /// With a trace's `hash_ids`: every source region's copy of the trace carries the same ids
    /// (the same prompts reach every region, a shift apart: shared documents and system
    /// prompts used everywhere), rather than each source standing for its own users.
    #[arg(long)]
    pub shared_prefixes: bool,
    /// With --self-contained: the gateway shares its state through this Redis
    /// (`redis://HOST:PORT`; `[state] kind = "redis"`), each policy's run under keys of its own.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// With --self-contained and --state: serve each policy with this many gateway instances of
    /// one configuration on the same simulators, each source region's requests spread over them
    /// in turn (a load balancer without session affinity).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub instances: usize,
    /// With --self-contained and without --concurrency: size each region so that a source
    /// region alone, refusing what finds every slot busy, would turn away at most this
    /// percentage of its requests.
    #[arg(
        long,
        value_name = "PCT",
        default_value_t = spillway_bench::sizing::OVERFLOW * 100.0,
        conflicts_with = "concurrency"
    )]
    pub overflow: f64,
    /// Objective a served request must meet to count as goodput (trace time).
    #[arg(long, default_value = "ttft_ms=2000,tpot_ms=200")]
    pub slo: Slo,
    /// With --self-contained: the policies to run, comma-separated, among in-region,
    /// round-robin, least-loaded, spillway (the default four) and the variants spillway-queue
    /// (`source_queue = 0.5`) and spillway-nowait (`source_wait = 0`), or a variant with its own
    /// `[routing]` trades, such as
    /// `spillway:source_wait=0.3:source_wait_ttft=2` (keys: source_wait, source_wait_ttft,
    /// source_queue, cache_min_locality, spill_reserve, tail_budget), and `spillway-cache:KEY=VALUE:…` with cache affinity
    /// on, such as `spillway-cache:cache_min_locality=0`.
    #[arg(long, value_delimiter = ',')]
    pub policies: Option<Vec<String>>,
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
    /// Mixed load and faults for a while (default 10 minutes), then whether the gateway
    /// process's RSS, open fds and threads came back to their start.
    Soak(soak::SoakArgs),
    /// Tens of thousands of idle connections against a gateway with a small fd limit, while
    /// its admin /healthz and fresh requests are probed.
    Flood(soak::flood::FloodArgs),
    /// Ten thousand slow streams held at once through a gateway: its RSS per in-flight stream,
    /// and whether the memory comes back once they end.
    Streams(soak::streams::StreamsArgs),
    /// Streams that break after their first tokens (reset, error event, stall), with
    /// mid-stream failover on and off side by side: streams lost, continued, text checked
    /// against the unbroken answer, and the gap the client saw at the break.
    Midstream(midstream::MidstreamArgs),
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

fn parse_target(s: &str) -> Result<(String, String), String> {
    let (region, url) = s
        .split_once('=')
        .ok_or_else(|| format!("expected REGION=URL, got {s:?}"))?;
    let region = region.trim();
    if region.is_empty() || region.contains(char::is_whitespace) {
        return Err(format!("expected a region name before '=', got {s:?}"));
    }
    Ok((region.to_string(), base_url(url)?))
}

/// `http://host:port` from a URL given with or without a trailing `/` or `/v1`.
fn base_url(url: &str) -> Result<String, String> {
    let u = url.trim().trim_end_matches('/');
    let u = u.strip_suffix("/v1").unwrap_or(u).trim_end_matches('/');
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got {url:?}"))?;
    if rest.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok(u.to_string())
}

/// `--api-key`, else `$SPILLWAY_API_KEY`.
fn api_key(args: &BenchArgs) -> Option<String> {
    args.api_key
        .clone()
        .or_else(|| std::env::var("SPILLWAY_API_KEY").ok())
        .filter(|k| !k.is_empty())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Overhead(a)) => return crate::overhead::run(a).await,
        Some(BenchCommand::Soak(a)) => return soak::run(a).await,
        Some(BenchCommand::Flood(a)) => return soak::flood::run(a).await,
        Some(BenchCommand::Streams(a)) => return soak::streams::run(a).await,
        Some(BenchCommand::Midstream(a)) => return midstream::run(a).await,
        None => {}
    }
    anyhow::ensure!(
        args.time_scale.is_finite() && args.time_scale > 0.0,
        "--time-scale must be a positive number"
    );
    anyhow::ensure!(
        args.policies.is_none() || args.self_contained,
        "--policies chooses among Spillway's policies: it needs --self-contained"
    );
    anyhow::ensure!(
        args.state.is_none() || args.self_contained,
        "--state shares the gateway's state between Spillway's policies' instances: it needs --self-contained"
    );
    anyhow::ensure!(
        args.peer.is_none() || args.peer_model.is_some(),
        "--peer needs --peer-model NAME (the model name the peer routes over the us simulators)"
    );
    let report = if !args.target.is_empty() {
        target::run(&args).await?
    } else if args.self_contained || args.peer.is_some() {
        local::run(&args).await?
    } else {
        anyhow::bail!(
            "spillway bench: give --self-contained (simulators and gateway in this process), --target REGION=URL (a running gateway), --peer URL (another gateway over simulators started here), or use `spillway bench overhead`"
        );
    };
    println!("\n{}", report::table(&report));
    if let Some(path) = &args.json {
        crate::output::write_json(path, &report, "spillway bench")?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, spillway_bench::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("spillway bench: wrote {}", path.display());
    }
    // Against simulated regions the bounds are of the very model they run, so a policy above
    // the oracle or below the prefill floor is a bug; a --target's capacity is what the caller
    // said, and the table says so already.
    let breaches = report::breaches(&report);
    anyhow::ensure!(
        breaches.is_empty() || !args.target.is_empty(),
        "a policy broke a bound the run proves: {}",
        breaches.join("; ")
    );
    Ok(())
}

/// The arrivals of `sources` source regions.
fn workload(args: &BenchArgs, sources: usize) -> anyhow::Result<Workload> {
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
    let w = Workload::build(&WorkloadSpec {
        arrivals,
        sources,
        duration: secs("--duration", args.duration)?,
        shift: args
            .shift_secs
            .map(|s| secs("--shift-secs", s))
            .transpose()?,
        limit: args.limit,
        input_tokens: args.input_tokens,
        output_tokens: args.output_tokens,
        seed: args.seed,
        shared_prefixes: args.shared_prefixes,
    });
    anyhow::ensure!(!w.requests.is_empty(), "the arrivals hold no request");
    Ok(w)
}

fn request_id(i: usize) -> String {
    format!("bench-{i}")
}

/// The index [`request_id`] was made from.
fn request_index(id: &str) -> Option<usize> {
    id.strip_prefix("bench-")?.parse().ok()
}

/// What was sent, by request id; `sources[k]` names source `k`.
fn sent_by_id(w: &Workload, sources: &[String]) -> HashMap<String, Sent> {
    w.requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let s = Sent {
                source: sources[r.source].clone(),
                at: r.at,
                output_tokens: r.output_tokens,
            };
            (request_id(i), s)
        })
        .collect()
}

/// One request spec per offered request: source `k` is sent to `urls[k]` as `sources[k]`.
fn specs(
    w: &Workload,
    time_scale: f64,
    urls: &[String],
    sources: &[String],
    model: &str,
) -> Vec<RequestSpec> {
    w.requests
        .iter()
        .enumerate()
        .map(|(i, r)| RequestSpec {
            id: request_id(i),
            at: r.at.div_f64(time_scale),
            base_url: urls[r.source].clone(),
            source: sources[r.source].clone(),
            model: model.to_string(),
            prompt_tokens: r.input_tokens,
            max_tokens: r.output_tokens,
            prompt: None,
            hash_ids: r.hash_ids.clone(),
        })
        .collect()
}

/// The opening line: what is offered, how fast, against what capacity.
fn announce(w: &Workload, window_secs: f64, time_scale: f64, capacity: &str, oracle: Option<f64>) {
    eprintln!(
        "spillway bench: {} requests ({}) over {:.0} s of trace time, {:.0} s at time scale {}; {}; oracle {}",
        w.requests.len(),
        w.description,
        window_secs,
        window_secs / time_scale,
        time_scale,
        capacity,
        oracle.map_or_else(|| "skipped".to_string(), |o| format!("{o:.2} req/s"))
    );
}

/// Offers every request (open loop) with a progress line per second; the results in offered
/// order.
async fn drive(
    name: &str,
    client: LoadClient,
    specs: Vec<RequestSpec>,
) -> anyhow::Result<Vec<RequestResult>> {
    let total = specs.len();
    let span = specs.last().map_or(Duration::ZERO, |s| s.at);
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
            total,
            progress.ok.load(Ordering::Relaxed),
            progress.throttled.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
        );
    }
    Ok(run.await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_argument() {
        assert_eq!(parse_gamma("5,2.5"), Ok((5.0, 2.5)));
        assert!(parse_gamma("5").is_err());
        assert!(parse_gamma("5,-1").is_err());
    }

    #[test]
    fn target_argument() {
        assert_eq!(
            parse_target("us-east-1=http://127.0.0.1:8080/v1/"),
            Ok(("us-east-1".into(), "http://127.0.0.1:8080".into()))
        );
        assert_eq!(
            parse_target("eu-west-1=https://gw.example/"),
            Ok(("eu-west-1".into(), "https://gw.example".into()))
        );
        for bad in [
            "http://x",
            "=http://x",
            "us-east-1=x:80",
            "us-east-1=http://",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}

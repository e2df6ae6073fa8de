//! `spillway bench overhead`: what the gateway adds to a request's latency, and how many
//! requests per second it sustains, measured on this machine.
//!
//! # Topology
//!
//! One gateway with one region, one model and one deployment: an in-process simulator (no
//! injected RTT, a time scale and token rates so high that prefill and decode take no time, and
//! more slots and queue than any run can fill, so it never throttles), and one tenant without
//! quotas, routing at its defaults. Everything listens on loopback; the gateway and the
//! simulator run on this process's tokio runtime, the load generator on its own thread with its
//! own single-threaded runtime (`--client-threads` for more), as a separate client process
//! would, plus a thread that paces its sends. All of them share the machine's cores.
//!
//! The simulator answers as soon as tokio's timer lets it: with no service time it still awaits
//! a `sleep_until(now)`, which tokio rounds up to its next 1 ms tick, so the direct path's
//! latency has a floor of about a millisecond that both paths pay alike.
//!
//! # What is measured
//!
//! For each case (`non-streaming`, then `streaming`) the same request (a fixed short prompt,
//! `max_tokens` 8 by default) is sent open-loop at a constant `--rps` **to each path at once**:
//! straight to the simulator (`{sim}/chat/completions`) and through the gateway
//! (`{gateway}/v1/chat/completions` with the tenant's key). Each path's request of every
//! `1 / rps` slot is due at a random instant inside it, paced with sub-millisecond precision
//! ([`spillway_bench::overhead`]), and the two schedules are interleaved, so both paths see the
//! same machine conditions in the same run. The gateway path costs the machine about twice the
//! direct one (two hops), and the simulator serves `2 × rps`. A warm-up of `--warmup` seconds
//! fills the connection pools first and is not counted.
//!
//! Latency is from handing the request to the HTTP client to the complete answer: the whole
//! JSON body (non-streaming) or the `[DONE]` event (streaming). Reported per path: p50 and p99;
//! `added_p50_ms` / `added_p99_ms` are the gateway path's percentile minus the direct path's
//! (the difference of the two distributions' percentiles: the requests are not paired).
//!
//! `max_rps` is the highest rate of the gateway path alone that the machine sustains: a ramp of
//! `--ramp-seconds` steps, doubling from `--rps` until a step fails (up to `--ramp-max-rps`),
//! then `--ramp-bisect` bisection steps between the last passing and the first failing rate. A
//! step passes when every request succeeded, the generator kept up (fewer than a second's worth
//! of requests outstanding at any time, and fewer than a quarter of the open-files limit: each
//! holds four sockets of this process), and the p99 latency *from each request's due time*
//! (so any lag of the generator counts) is at most the gateway p99 of the side-by-side run plus
//! `--ramp-slack-ms` (default 10 ms, ten times the overhead target; past saturation queues grow
//! and the p99 jumps by orders of magnitude, so the exact bound barely moves the result; it is
//! relative so that a path with a high floor, such as a stream held back by Nagle's algorithm,
//! is judged on whether it keeps up, not on its floor). A step that fails without being plainly
//! overloaded is run once more, and fails only if it fails again: one stall of a shared machine
//! can fail a short step on its own. When no failing step was found,
//! `max_rps` is the ramp's ceiling and the table says `≥`.
//!
//! The defaults (1,000 requests/s for 10 s per case, 3 s ramp steps) take 70 to 100 s. The
//! gateway logs every request at `info`; this command's default log level is `warn`, and a
//! `SPILLWAY_LOG` that turns `info` back on measures the logging too.
//!
//! # `--state redis://HOST:PORT`: Redis against memory
//!
//! A second gateway, the same in every way but `[state] kind = "redis"` on that Redis (under a
//! key prefix of its own), in front of the same simulator, is a third path of the same
//! side-by-side run: `redis.added_p50_ms` / `redis.added_p99_ms` are its percentiles minus the
//! memory gateway's. So that the shared state is on the path, both gateways give the tenant a
//! quota of twice the offered rate (`rps × 120` requests per minute, no token limit): the
//! Redis gateway leases it in chunks of `lease_fraction` (0.5%) of that, one Redis round trip
//! per chunk, and gives back what it did not use in the background, as it would in production.
//! The ramp is skipped (that quota would throttle it).
//!
//! # `--reference`: nginx beside Spillway
//!
//! When `nginx` and `wrk` are on `PATH` (or with `--reference nginx`), the run ends with a
//! comparison on a static mock upstream: latency at `--rps` side by side and max rps by wrk for
//! the direct path, nginx as a reverse proxy, and Spillway, with Spillway's figures as ratios to
//! nginx's ([`reference`]); with `--state`, the Redis-backed gateway is a fourth path there, its
//! max rps also as a ratio to the memory gateway's. `--reference-only` runs just that.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use spillway_bench::overhead::{self as load, Bytes, Endpoint, Load};
use spillway_embedded::Stack;
use spillway_gateway::{Config, Gateway};

mod config;
mod floor;
mod nginx;
mod ramp;
mod reference;
mod report;
mod state;
mod wrk;

use config::{UpstreamAt, gateway_config};
use ramp::ramp;
use report::{CaseReport, Report, Settings, print_side_by_side};

const MODEL: &str = "bench.overhead-v1:0";
const REGION: &str = "us-east-1";
const API_KEY: &str = "spillway-bench-overhead-key";

#[derive(clap::Args, Debug, Clone)]
pub struct OverheadArgs {
    /// Requests per second sent to each path (direct and through the gateway) side by side.
    #[arg(long, default_value_t = 1000.0)]
    pub rps: f64,
    /// Seconds of measured side-by-side load per case.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of unmeasured load before each case (fills the connection pools).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Output tokens per request (`max_tokens`).
    #[arg(long, default_value_t = 8)]
    pub max_tokens: u64,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 32)]
    pub prompt_tokens: u64,
    /// Which cases to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Case::NonStreaming, Case::Streaming])]
    pub cases: Vec<Case>,
    /// Seconds per step of the max-rps ramp.
    #[arg(long, default_value_t = 3.0)]
    pub ramp_seconds: f64,
    /// Highest rate the ramp tries; 0 skips the ramp (`max_rps` is then 0).
    #[arg(long, default_value_t = 64000.0)]
    pub ramp_max_rps: f64,
    /// Bisection steps after the doubling found a failing rate.
    #[arg(long, default_value_t = 3)]
    pub ramp_bisect: u32,
    /// A ramp step fails when its p99, from each request's due time, exceeds the gateway p99
    /// of the side-by-side run by more than this many milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub ramp_slack_ms: f64,
    /// Worker threads of the load generator's runtime (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also measure a gateway with its state in this Redis (`redis://HOST:PORT`), side by side
    /// with the memory one; skips the ramp.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// `lease_fraction` of the Redis-backed gateway (default 0.005: one Redis round trip per
    /// 0.5% of the quota; a tiny value puts Redis on the path of every request).
    #[arg(long, default_value_t = 0.005, requires = "state")]
    pub lease_fraction: f64,
    /// Compare with nginx as a reverse proxy on a static mock upstream (`auto`: when `nginx`
    /// and `wrk` are on PATH).
    #[arg(long, value_enum, default_value_t = reference::Reference::Auto)]
    pub reference: reference::Reference,
    /// Run only the comparison with nginx (not the simulator cases).
    #[arg(long)]
    pub reference_only: bool,
    /// wrk's connections for each path's max rps in the comparison.
    #[arg(long, default_value_t = 32)]
    pub wrk_connections: u32,
    /// wrk's threads.
    #[arg(long, default_value_t = 2)]
    pub wrk_threads: u32,
    /// Seconds of wrk per path.
    #[arg(long, default_value_t = 10.0)]
    pub wrk_seconds: f64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    NonStreaming,
    Streaming,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::NonStreaming => "non-streaming",
            Case::Streaming => "streaming",
        }
    }

    fn stream(self) -> bool {
        self == Case::Streaming
    }
}

pub async fn run(args: OverheadArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let mut report = if args.reference_only {
        Report {
            cases: Vec::new(),
            settings: settings(&args, None),
            reference: None,
        }
    } else {
        simulator_cases(&args).await?
    };
    report.reference = reference::run(&args).await?;
    report::print_table(&report);
    if let Some(path) = &args.json {
        crate::output::write_json(path, &report, "spillway bench overhead")?;
    }
    Ok(())
}

/// The cases against the in-process simulator (and the Redis-backed gateway with `--state`).
async fn simulator_cases(args: &OverheadArgs) -> anyhow::Result<Report> {
    let quota = args.state.as_ref().map(|_| state::quota_rpm(args.rps));
    let cfg = Config::parse(
        &gateway_config(quota, UpstreamAt::Embedded, None),
        "<bench overhead>",
    )?;
    let stack = Stack::start(cfg).await.context("starting the gateway")?;
    let sim = stack.sim(MODEL, REGION).map(|s| s.base_url());
    let redis = match (&args.state, quota, &sim) {
        (Some(url), Some(q), Some(sim)) => {
            match state::start(url, q, args.lease_fraction, UpstreamAt::Sim(sim)).await {
                Ok(g) => Some(g),
                Err(e) => {
                    stack.shutdown(Duration::from_secs(5)).await;
                    return Err(e);
                }
            }
        }
        (Some(_), _, _) => {
            stack.shutdown(Duration::from_secs(5)).await;
            anyhow::bail!("the gateway started no simulator");
        }
        _ => None,
    };
    let result = measure(args, &stack, redis.as_ref(), quota).await;
    stack.shutdown(Duration::from_secs(5)).await;
    if let Some(g) = redis {
        g.shutdown(Duration::from_secs(5)).await;
    }
    result
}

fn check_args(a: &OverheadArgs) -> anyhow::Result<()> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "--{name} must be a positive number, got {v}"
            ))
        }
    };
    positive("rps", a.rps)?;
    positive("seconds", a.seconds)?;
    positive("ramp-seconds", a.ramp_seconds)?;
    positive("ramp-slack-ms", a.ramp_slack_ms)?;
    positive("wrk-seconds", a.wrk_seconds)?;
    if a.wrk_connections == 0 || a.wrk_threads == 0 || a.wrk_threads > a.wrk_connections {
        anyhow::bail!(
            "--wrk-connections and --wrk-threads must be at least 1, and threads at most connections"
        );
    }
    if !(a.warmup.is_finite() && a.warmup >= 0.0) {
        anyhow::bail!("--warmup must be 0 or more seconds, got {}", a.warmup);
    }
    if !(a.ramp_max_rps.is_finite() && a.ramp_max_rps >= 0.0) {
        anyhow::bail!("--ramp-max-rps must be 0 or more, got {}", a.ramp_max_rps);
    }
    if a.max_tokens == 0 {
        anyhow::bail!("--max-tokens must be at least 1");
    }
    if a.client_threads == 0 {
        anyhow::bail!("--client-threads must be at least 1");
    }
    if a.cases.is_empty() {
        anyhow::bail!("--cases names no case");
    }
    Ok(())
}

/// Everything the load generator's thread needs.
#[derive(Debug, Clone)]
struct Plan {
    args: OverheadArgs,
    direct: Endpoint,
    gateway: Endpoint,
    /// The Redis-backed gateway (`--state`).
    redis: Option<Endpoint>,
}

async fn measure(
    args: &OverheadArgs,
    stack: &Stack,
    redis: Option<&Gateway>,
    quota_rpm: Option<u64>,
) -> anyhow::Result<Report> {
    let sim = stack
        .sim(MODEL, REGION)
        .context("the gateway started no simulator")?
        .clone();
    let addr = stack
        .gateway()
        .addr(REGION)
        .context("the gateway has no listener")?;
    let plan = Plan {
        args: args.clone(),
        direct: Endpoint {
            url: format!("{}/chat/completions", sim.base_url()),
            api_key: API_KEY.to_string(),
        },
        gateway: Endpoint {
            url: format!("http://{addr}/v1/chat/completions"),
            api_key: API_KEY.to_string(),
        },
        redis: redis.and_then(|g| g.addr(REGION)).map(|a| Endpoint {
            url: format!("http://{a}/v1/chat/completions"),
            api_key: API_KEY.to_string(),
        }),
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "spillway bench overhead: {} requests/s to each path (direct to the simulator, and through the gateway) for {} s per case, on {cores} cores",
        args.rps, args.seconds
    );
    // The load generator gets its own thread and runtime, as a separate process would.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || {
            let _ = tx.send(drive_on_own_runtime(plan, sim));
        })
        .context("starting the load generator's thread")?;
    let cases = rx
        .await
        .context("the load generator's thread ended without a result")??;
    Ok(Report {
        cases,
        settings: settings(args, quota_rpm),
        reference: None,
    })
}

fn settings(args: &OverheadArgs, quota_rpm: Option<u64>) -> Settings {
    Settings {
        seconds: args.seconds,
        warmup: args.warmup,
        prompt_tokens: args.prompt_tokens,
        max_tokens: args.max_tokens,
        ramp_seconds: args.ramp_seconds,
        ramp_max_rps: args.ramp_max_rps,
        ramp_slack_ms: args.ramp_slack_ms,
        client_threads: args.client_threads,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        state: args.state.as_deref().map(state::without_password),
        quota_rpm,
        lease_fraction: args.state.as_ref().map(|_| args.lease_fraction),
    }
}

fn drive_on_own_runtime(
    plan: Plan,
    sim: spillway_sim::SimHandle,
) -> anyhow::Result<Vec<CaseReport>> {
    let rt = if plan.args.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.args.client_threads)
            .enable_all()
            .build()?
    };
    rt.block_on(drive(plan, sim))
}

/// Each case in turn: side by side, then (without `--state`) the ramp of the gateway path.
async fn drive(plan: Plan, sim: spillway_sim::SimHandle) -> anyhow::Result<Vec<CaseReport>> {
    let args = &plan.args;
    let client = load::client(4096)?;
    let mut reports = Vec::new();
    for case in args.cases.clone() {
        let body = request_body(args, case.stream());
        let out = side_by_side(&client, &plan, case, &body).await;
        sim.clear_served();
        let (direct, gw) = (out.stats(0), out.stats(1));
        let redis = plan
            .redis
            .as_ref()
            .map(|_| state::figures(&gw, out.stats(2)));
        print_side_by_side(case, &direct, &gw, redis.as_ref());
        let bound = gw.p99_ms + args.ramp_slack_ms;
        let ramped = if plan.redis.is_some() {
            (0.0, false, Vec::new())
        } else {
            ramp(&client, &plan, case, &body, &sim, bound).await
        };
        reports.push(CaseReport::new(case, args.rps, direct, gw, redis, ramped));
    }
    Ok(reports)
}

/// One case's side-by-side run, after its warm-up: the same request at `--rps` to each path at
/// once (direct, gateway, and the Redis-backed gateway with `--state`).
async fn side_by_side(
    client: &load::Client,
    plan: &Plan,
    case: Case,
    body: &Bytes,
) -> load::Outcome {
    let args = &plan.args;
    let side_by_side = |duration: f64| Load {
        endpoints: [&plan.direct, &plan.gateway]
            .into_iter()
            .chain(plan.redis.as_ref())
            .cloned()
            .collect(),
        rps: args.rps,
        duration: Duration::from_secs_f64(duration),
        body: body.clone(),
        stream: case.stream(),
        timeout: Duration::from_secs(10),
        max_outstanding: None,
        seed: duration.to_bits(),
    };
    if args.warmup > 0.0 {
        eprintln!("  {:<14} warming up", case.name());
        load::run(client, &side_by_side(args.warmup)).await;
    }
    eprintln!(
        "  {:<14} side by side: {} requests/s to each path for {} s",
        case.name(),
        args.rps,
        args.seconds
    );
    load::run(client, &side_by_side(args.seconds)).await
}

fn request_body(args: &OverheadArgs, stream: bool) -> Bytes {
    let body = serde_json::json!({
        "model": MODEL,
        "messages": [{
            "role": "user",
            "content": spillway_bench::client::synth_prompt(args.prompt_tokens),
        }],
        "max_tokens": args.max_tokens,
        "stream": stream,
    });
    Bytes::from(body.to_string())
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

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
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use spillway_bench::overhead::{self as load, Bytes, Endpoint, Load, Outcome, Stats};
use spillway_gateway::{Config, Gateway};

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

/// One ramp step of the gateway path.
#[derive(Debug, Clone, Serialize)]
struct RampStep {
    rps: f64,
    passed: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    #[serde(flatten)]
    stats: Stats,
}

/// The figures of one case: the keys of the issue, then the detail.
#[derive(Debug, Clone, Serialize)]
struct CaseReport {
    name: &'static str,
    rps: f64,
    direct_p50_ms: f64,
    direct_p99_ms: f64,
    gateway_p50_ms: f64,
    gateway_p99_ms: f64,
    added_p50_ms: f64,
    added_p99_ms: f64,
    max_rps: f64,
    /// No ramp step failed below the ceiling: `max_rps` is a lower bound.
    max_rps_is_ceiling: bool,
    errors: usize,
    direct: Stats,
    gateway: Stats,
    ramp: Vec<RampStep>,
}

#[derive(Debug, Serialize)]
struct Report {
    cases: Vec<CaseReport>,
    settings: Settings,
}

#[derive(Debug, Clone, Serialize)]
struct Settings {
    seconds: f64,
    warmup: f64,
    prompt_tokens: u64,
    max_tokens: u64,
    ramp_seconds: f64,
    ramp_max_rps: f64,
    ramp_slack_ms: f64,
    client_threads: usize,
    cores: usize,
}

pub async fn run(args: OverheadArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let cfg = Config::parse(&gateway_config(), "<bench overhead>")?;
    let gateway = Gateway::start(cfg).await.context("starting the gateway")?;
    let result = measure(&args, &gateway).await;
    gateway.shutdown(Duration::from_secs(5)).await;
    let report = result?;
    print_table(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
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

/// One region, one model served by an in-process simulator that takes no time and never
/// throttles, one tenant without quotas.
fn gateway_config() -> String {
    let hash: String = spillway_gateway::config::sha256(API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "[[regions]]\nname = \"{REGION}\"\ngeography = \"us\"\n\n\
         [[models]]\nid = \"{MODEL}\"\n\n\
         [[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{REGION}\"\nmax_in_flight = 1000000\n\
         upstream = {{ kind = \"sim\", concurrency = 1000000, queue_limit = 1000000, \
         prefill_tokens_per_sec = 1e12, decode_tokens_per_sec = 1e12, time_scale = 1e6, rtt_ms = 0 }}\n\n\
         [[tenants]]\nname = \"bench\"\napi_keys = [{{ sha256 = \"{hash}\" }}]\n\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{REGION}\"\n"
    )
}

/// Everything the load generator's thread needs.
#[derive(Debug, Clone)]
struct Plan {
    args: OverheadArgs,
    direct: Endpoint,
    gateway: Endpoint,
}

async fn measure(args: &OverheadArgs, gateway: &Gateway) -> anyhow::Result<Report> {
    let sim = gateway
        .sim(MODEL, REGION)
        .context("the gateway started no simulator")?
        .clone();
    let addr = gateway
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
        settings: Settings {
            seconds: args.seconds,
            warmup: args.warmup,
            prompt_tokens: args.prompt_tokens,
            max_tokens: args.max_tokens,
            ramp_seconds: args.ramp_seconds,
            ramp_max_rps: args.ramp_max_rps,
            ramp_slack_ms: args.ramp_slack_ms,
            client_threads: args.client_threads,
            cores,
        },
    })
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

async fn drive(plan: Plan, sim: spillway_sim::SimHandle) -> anyhow::Result<Vec<CaseReport>> {
    let args = &plan.args;
    let client = load::client(4096)?;
    let mut reports = Vec::new();
    for case in args.cases.clone() {
        let body = request_body(args, case.stream());
        let side_by_side = |duration: f64| Load {
            endpoints: vec![plan.direct.clone(), plan.gateway.clone()],
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
            load::run(&client, &side_by_side(args.warmup)).await;
        }
        eprintln!(
            "  {:<14} side by side: {} requests/s to each path for {} s",
            case.name(),
            args.rps,
            args.seconds
        );
        let out = load::run(&client, &side_by_side(args.seconds)).await;
        sim.clear_served();
        let (direct, gw) = (out.stats(0), out.stats(1));
        eprintln!(
            "  {:<14} direct p50 {:.3} ms p99 {:.3} ms | gateway p50 {:.3} ms p99 {:.3} ms | errors {}",
            case.name(),
            direct.p50_ms,
            direct.p99_ms,
            gw.p50_ms,
            gw.p99_ms,
            direct.errors + gw.errors
        );
        let bound = gw.p99_ms + args.ramp_slack_ms;
        let (max_rps, ceiling, ramp) = ramp(&client, &plan, case, &body, &sim, bound).await;
        reports.push(CaseReport {
            name: case.name(),
            rps: args.rps,
            direct_p50_ms: round3(direct.p50_ms),
            direct_p99_ms: round3(direct.p99_ms),
            gateway_p50_ms: round3(gw.p50_ms),
            gateway_p99_ms: round3(gw.p99_ms),
            added_p50_ms: round3(gw.p50_ms - direct.p50_ms),
            added_p99_ms: round3(gw.p99_ms - direct.p99_ms),
            max_rps,
            max_rps_is_ceiling: ceiling,
            errors: direct.errors + gw.errors,
            direct,
            gateway: gw,
            ramp,
        });
    }
    Ok(reports)
}

/// The max-rps ramp of the gateway path: doubling from `--rps`, then bisection. Returns the
/// highest passing rate (0 when none passed), whether that is just the ramp's ceiling, and
/// every step.
async fn ramp(
    client: &load::Client,
    plan: &Plan,
    case: Case,
    body: &Bytes,
    sim: &spillway_sim::SimHandle,
    p99_bound_ms: f64,
) -> (f64, bool, Vec<RampStep>) {
    let args = &plan.args;
    let mut steps = Vec::new();
    if args.ramp_max_rps <= 0.0 {
        return (0.0, false, steps);
    }
    // Every request outstanding through the gateway holds four sockets of this process (the
    // client's, the gateway's two, the simulator's); stay clear of the open-files limit.
    let fd_budget = open_files_limit().unwrap_or(1024).saturating_sub(1024) / 4;
    let mut step = async |rps: f64| -> bool {
        // A failed step is run again once unless it was plainly overloaded: one stall of the
        // shared machine (another process, a page-cache flush) can fail a 3 s step on its own.
        for attempt in 0..2 {
            let l = Load {
                endpoints: vec![plan.gateway.clone()],
                rps,
                duration: Duration::from_secs_f64(args.ramp_seconds),
                body: body.clone(),
                stream: case.stream(),
                timeout: Duration::from_secs(5),
                // More than a second's worth outstanding: the machine is not keeping up.
                max_outstanding: Some((rps as usize).max(100).min(fd_budget.max(16))),
                seed: rps.to_bits() ^ attempt,
            };
            // A fresh client each step: the idle connections of a faster step before it would
            // otherwise hold sockets (and the gateway's side of them) through this one.
            let fresh = load::client(4096);
            let out = load::run(fresh.as_ref().unwrap_or(client), &l).await;
            drop(fresh);
            sim.clear_served();
            let s = ramp_step(rps, &out, p99_bound_ms);
            eprintln!(
                "  {:<14} ramp {:>7.0} requests/s: p99 {:>8.3} ms from due time, errors {:>5} {}",
                case.name(),
                rps,
                s.stats.p99_from_schedule_ms,
                s.stats.errors,
                match &s.failure {
                    None => "pass".to_string(),
                    Some(why) => format!("FAIL ({why})"),
                }
            );
            let (passed, overloaded) = (s.passed, out.aborted);
            steps.push(s);
            // Let the backlog of a failed step drain before the next one.
            tokio::time::sleep(Duration::from_millis(if passed { 200 } else { 1000 })).await;
            if passed || overloaded {
                return passed;
            }
        }
        false
    };
    let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = args.rps.min(args.ramp_max_rps);
    loop {
        if step(rate).await {
            good = Some(rate);
            if rate >= args.ramp_max_rps {
                break;
            }
            rate = (rate * 2.0).min(args.ramp_max_rps);
        } else {
            bad = Some(rate);
            if good.is_some() || rate < 20.0 {
                break;
            }
            rate /= 2.0;
        }
    }
    for _ in 0..args.ramp_bisect {
        let (lo, hi) = (good.unwrap_or(0.0), bad.unwrap_or(0.0));
        let mid = ((lo + hi) / 2.0 / 10.0).round() * 10.0;
        if bad.is_none() || hi - lo < 0.05 * hi || mid <= lo || mid >= hi {
            break;
        }
        if step(mid).await {
            good = Some(mid);
        } else {
            bad = Some(mid);
        }
    }
    let max = good.unwrap_or(0.0);
    (max, bad.is_none() && max > 0.0, steps)
}

/// The soft limit on open files of this process (Linux: `/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Judge one ramp step (see the module docs).
fn ramp_step(rps: f64, out: &Outcome, p99_bound_ms: f64) -> RampStep {
    let stats = out.stats(0);
    let failure = if out.aborted {
        Some("the generator stopped: too many requests outstanding".to_string())
    } else if stats.errors > 0 {
        Some(format!("{} errors", stats.errors))
    } else if stats.requests == 0 {
        Some("no requests".to_string())
    } else if stats.p99_from_schedule_ms > p99_bound_ms {
        Some(format!(
            "p99 {:.1} ms > {p99_bound_ms:.1} ms",
            stats.p99_from_schedule_ms
        ))
    } else {
        None
    };
    RampStep {
        rps,
        passed: failure.is_none(),
        failure,
        stats,
    }
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

fn print_table(r: &Report) {
    println!();
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "case",
        "rps",
        "direct p50",
        "direct p99",
        "gw p50",
        "gw p99",
        "added p50",
        "added p99",
        "max rps",
        "errors"
    );
    for c in &r.cases {
        println!(
            "{:<14} {:>6.0} {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>7.3} ms {:>9} {:>7}",
            c.name,
            c.rps,
            c.direct_p50_ms,
            c.direct_p99_ms,
            c.gateway_p50_ms,
            c.gateway_p99_ms,
            c.added_p50_ms,
            c.added_p99_ms,
            format!(
                "{}{:.0}",
                if c.max_rps_is_ceiling { "≥" } else { "" },
                c.max_rps
            ),
            c.errors
        );
    }
    println!(
        "\nrps is per path; latency is to the complete answer (non-streaming) or to [DONE] (streaming); \
         added = gateway − direct. max rps: the gateway path alone, no errors, p99 from the due time at most \
         {} ms over the side-by-side gateway p99 ({} s steps; load generator, gateway and simulator on the same {} cores).",
        r.settings.ramp_slack_ms, r.settings.ramp_seconds, r.settings.cores
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }

    #[test]
    fn the_config_is_valid() {
        let cfg = Config::parse(&gateway_config(), "<test>").unwrap();
        assert_eq!(cfg.deployments.len(), 1);
        assert_eq!(cfg.listeners.len(), 1);
    }

    #[test]
    fn a_step_fails_on_errors_abort_or_a_slow_tail() {
        let sample = |ok, ms| load::Sample {
            endpoint: 0,
            status: if ok { 200 } else { 502 },
            ok,
            latency: Duration::from_millis(ms),
            from_schedule: Duration::from_millis(ms),
        };
        let out = |samples: Vec<load::Sample>, aborted| Outcome {
            samples,
            aborted,
            send_window: Duration::from_secs(1),
        };
        assert!(ramp_step(100.0, &out(vec![sample(true, 1); 100], false), 10.0).passed);
        assert!(!ramp_step(100.0, &out(vec![sample(true, 1); 100], true), 10.0).passed);
        let mut with_error = vec![sample(true, 1); 100];
        with_error.push(sample(false, 1));
        assert!(!ramp_step(100.0, &out(with_error, false), 10.0).passed);
        assert!(!ramp_step(100.0, &out(vec![sample(true, 11); 100], false), 10.0).passed);
        assert!(!ramp_step(100.0, &out(Vec::new(), false), 10.0).passed);
    }
}

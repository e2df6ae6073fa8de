//! `spillway bench streams`: what one in-flight stream costs the gateway in resident memory,
//! with ten thousand of them held at once, and whether the memory comes back once they end
//! (issue 16: "≤ 20 KB of RSS per in-flight stream with 10,000 streams held, and RSS back
//! within 20% of the start once they end").
//!
//! # Run
//!
//! 1. Three simulated regions (`us-east-1`, `us-east-2`, `us-west-2`) of one model run in this
//!    process ([`setup`]), with 20,000 slots and as long a queue each so that none throttles,
//!    no prefill time, and decode at `--max-tokens / --stream-secs` tokens/s, so that each
//!    stream lasts `--stream-secs` (default 15 s, 30 tokens: a chunk every 0.5 s).
//! 2. A `spillway serve` child of this executable in front of them (so the memory read is the
//!    gateway's own, [`super::gateway`]), under `prlimit --nofile=N:N` (`--gateway-nofile`,
//!    default 65,536: each stream takes two descriptors in the gateway, its client connection
//!    and its upstream one). This process's soft limit is raised to its hard one (the
//!    simulators hold one descriptor per stream), and the hard one to `--gateway-nofile` if
//!    that is above it; the run stops at once, saying what to change, when it cannot.
//! 3. Warm-up: `--warmup` short requests (half streamed) through the gateway, so that the start
//!    is read warm (code paged in, pools, worker stacks); a second later the gateway's RSS
//!    (`VmRSS`), open fds, threads and tokio tasks (`spillway_runtime_tasks` on its admin
//!    listener) are read: the **start**.
//! 4. `--streams` streamed OpenAI chat completions (default 10,000) on the `us.` profile, each on
//!    a connection of its own with the bench tenant's key, ramped over `--ramp-secs` with at most
//!    `--connects` connects in flight, each read as it arrives until `data: [DONE]`. They are
//!    opened by client processes ([`worker`], `--per-worker` streams each): the streams'
//!    sockets and the simulators' would not fit in one process's descriptor limit. Every
//!    stream's serving region (`x-spillway-region`) must be one of the three (residency); one
//!    that is not counts as failed.
//! 5. While they run, the gateway is read every 250 ms (its tasks every second). **Held** is
//!    the reading taken as soon as every stream has had its first chunk (or failed); RSS per
//!    stream is (held − start) / the streams in flight then, in KiB. The peak is the largest
//!    reading (also given per stream, over the most streams in flight at any reading).
//! 6. When every stream has ended, the **settle** reads the gateway every second, at most
//!    `--settle-secs` (default 30 s; jemalloc, the default allocator, returns freed pages
//!    after a ~10 s decay from a background thread), and ends early once RSS is within 20% of
//!    the start and fds and tasks within 10%; the last reading is **after**. The gateway keeps
//!    idle upstream connections pooled for 60 s, so fds and tasks may not be back by then: the
//!    fds are sorted by kind (client, upstream, listening, other) at start and after so that it
//!    shows. The settle's readings are in the timeline too.
//!
//! The table ([`report`]) has start, held, peak and after, KiB per stream, after against start,
//! the streams ok and failed (by reason), first-chunk latency p50/p99, and the issue's bars;
//! `--json FILE` writes the figures with the 250 ms timeline.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use spillway_sim::SimHandle;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::gateway::{self, Launch, ServeChild};
use super::http;
use super::procfs::{self, FdKinds, Sample};

mod fleet;
mod report;
mod setup;
pub mod worker;

use fleet::Fleet;
use report::{GatewayInfo, Held, Measured, Row, StreamsReport};

/// The model the simulators serve, its profile, the bench tenant's key (loopback only) and the
/// regions the streams may be served in.
pub const MODEL: &str = "bench.streams-v1:0";
pub const PROFILE: &str = "us.bench.streams-v1:0";
pub const API_KEY: &str = "spillway-bench-streams-key";
pub const REGIONS: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];

#[derive(clap::Args, Debug, Clone)]
pub struct StreamsArgs {
    /// Streams held at once.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// How long each stream lasts (its tokens are spread over it).
    #[arg(long, default_value_t = 15.0)]
    pub stream_secs: f64,
    /// Output tokens of each stream.
    #[arg(long, default_value_t = 30)]
    pub max_tokens: u64,
    /// The streams are started evenly over this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub ramp_secs: f64,
    /// Connects in flight at once (until the connection is up), per client process.
    #[arg(long, default_value_t = 256)]
    pub connects: usize,
    /// Longest wait after the streams for the figures to come back.
    #[arg(long, default_value_t = 30.0)]
    pub settle_secs: f64,
    /// The gateway's descriptor limit (`prlimit --nofile=N:N`).
    #[arg(long, default_value_t = 65_536)]
    pub gateway_nofile: u64,
    /// `[server] max_connections` for the gateway (default: the gateway's own).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Streams per client process (each needs that many descriptors).
    #[arg(long, default_value_t = 10_000)]
    pub per_worker: usize,
    /// Requests sent before the start is read.
    #[arg(long, default_value_t = 16)]
    pub warmup: usize,
    /// Write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run as one client process (started by this command).
    #[arg(long, hide = true, requires = "target")]
    pub worker: bool,
    /// The client process's gateway.
    #[arg(long, hide = true)]
    pub target: Option<SocketAddr>,
}

pub async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    check(&args)?;
    if args.worker {
        let target = args.target.context("--worker needs --target")?;
        return worker::run(worker::WorkerSpec {
            target,
            streams: args.streams,
            max_tokens: args.max_tokens,
            ramp: Duration::from_secs_f64(args.ramp_secs),
            connects: args.connects,
        })
        .await;
    }
    let limits = setup::raise_limits(&args)?;
    let sims = setup::start_sims(&args).await?;
    let result = started(&args, &sims, limits).await;
    for s in &sims {
        s.shutdown();
    }
    let r = result?;
    report::print(&r);
    if let Some(path) = &args.json {
        crate::output::write_json(path, &r, "spillway bench streams")?;
    }
    Ok(())
}

fn check(args: &StreamsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.streams > 0, "--streams must be at least 1");
    anyhow::ensure!(args.max_tokens > 0, "--max-tokens must be at least 1");
    anyhow::ensure!(
        args.stream_secs.is_finite() && args.stream_secs > 0.0,
        "--stream-secs must be a positive number"
    );
    for (name, v) in [
        ("--ramp-secs", args.ramp_secs),
        ("--settle-secs", args.settle_secs),
    ] {
        anyhow::ensure!(v.is_finite() && v >= 0.0, "{name} must be a number >= 0");
    }
    Ok(())
}

/// Starts the gateway, measures, and stops it.
async fn started(
    args: &StreamsArgs,
    sims: &[SimHandle],
    limits: setup::Limits,
) -> anyhow::Result<StreamsReport> {
    let text = setup::config_text(sims, args.max_connections)?;
    let mut child = ServeChild::start(&Launch {
        config_text: &text,
        nofile: Some(limits.gateway),
    })
    .await?;
    let ports = Ports {
        serving: vec![child.api.port(), child.admin.port()],
        upstream: sims.iter().map(|s| s.addr().port()).collect(),
    };
    let result = measure(args, &mut child, &ports, limits).await;
    child.stop(Duration::from_secs(10)).await;
    result
}

/// The gateway's own ports and its upstreams', to sort its descriptors.
#[derive(Clone)]
struct Ports {
    serving: Vec<u16>,
    upstream: Vec<u16>,
}

impl Ports {
    fn fds(&self, pid: u32) -> Option<FdKinds> {
        procfs::fd_kinds(pid, &self.serving, &self.upstream)
    }
}

/// Warm-up, start, the streams, settle; see the module docs.
async fn measure(
    args: &StreamsArgs,
    child: &mut ServeChild,
    ports: &Ports,
    limits: setup::Limits,
) -> anyhow::Result<StreamsReport> {
    gateway::wait_ready(child.admin, "/readyz", Duration::from_secs(30)).await?;
    warm_up(child.api, args.warmup, args.max_tokens.min(2)).await?;
    // Let the gateway see the warm-up's connections close before the start is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = read(child, 0.0).await?;
    let fds_start = ports.fds(child.pid);
    eprintln!(
        "spillway bench streams: gateway pid {} on {} (fd limit {}); start: RSS {:.1} MiB, {} fds, {} threads, {} tasks; {} streams of {:.0} s over {:.1} s",
        child.pid,
        child.api,
        limits.gateway,
        start.rss_kb as f64 / 1024.0,
        start.fds,
        start.threads,
        start.tasks.map_or("?".into(), |t| t.to_string()),
        args.streams,
        args.stream_secs,
        args.ramp_secs
    );
    let t0 = Instant::now();
    let mut fleet = Fleet::start(args, child.api, limits.hard)?;
    let (mut timeline, held) = hold(args, child, ports, &mut fleet, t0).await?;
    let last = fleet.counts();
    let clients = fleet.finish(Duration::from_secs(60)).await?;
    let (after, settle) = settle(args, child, &start, t0, |s| timeline.push(row(s, last))).await?;
    Ok(StreamsReport::new(Measured {
        gateway: GatewayInfo {
            pid: child.pid,
            api: child.api.to_string(),
            admin: child.admin.to_string(),
            nofile_limit: gateway::nofile_limit(child.pid),
            max_connections: args.max_connections,
        },
        setup: report::Setup {
            streams_asked: args.streams,
            stream_secs: args.stream_secs,
            max_tokens: args.max_tokens,
            ramp_secs: args.ramp_secs,
            connects_in_flight: args.connects,
            client_processes: fleet::shares(args.streams, args.per_worker).len(),
        },
        start,
        held,
        after,
        fds_start,
        fds_after: ports.fds(child.pid),
        clients,
        settle,
        gateway_log_tail: child.stderr_tail().lines().map(plain).collect(),
        timeline,
    }))
}

/// The gateway's figures now, its tasks included.
async fn read(child: &ServeChild, t: f64) -> anyhow::Result<Sample> {
    let mut s = procfs::sample(child.pid, t).with_context(|| {
        format!(
            "the gateway process is gone; its stderr:\n{}",
            child.stderr_tail()
        )
    })?;
    s.tasks = http::runtime_tasks(Some(child.admin)).await;
    Ok(s)
}

/// `n` short requests at once, half of them streamed; each must be answered 200.
async fn warm_up(api: SocketAddr, n: usize, max_tokens: u64) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let body = serde_json::json!({
            "model": PROFILE,
            "messages": [{"role": "user", "content": "warm up"}],
            "max_tokens": max_tokens,
            "stream": i % 2 == 0,
        })
        .to_string();
        let req = http::request(
            "POST",
            "/v1/chat/completions",
            Some(API_KEY),
            body.as_bytes(),
        );
        set.spawn(async move { http::exchange(api, &req, Duration::from_secs(30)).await });
    }
    while let Some(done) = set.join_next().await {
        match done? {
            Ok((200, _)) => {}
            Ok((status, body)) => anyhow::bail!(
                "a warm-up request was answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(e) => anyhow::bail!("a warm-up request failed: {e}"),
        }
    }
    Ok(())
}

/// Reads the gateway every 250 ms until every client process has exited; takes the held
/// reading once every stream has had its first chunk or failed.
async fn hold(
    args: &StreamsArgs,
    child: &mut ServeChild,
    ports: &Ports,
    fleet: &mut Fleet,
    t0: Instant,
) -> anyhow::Result<(Vec<Row>, Option<Held>)> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit =
        Duration::from_secs_f64(args.ramp_secs + args.stream_secs) + Duration::from_secs(300);
    let (mut rows, mut held, mut extras) = (Vec::new(), None, None);
    for n in 0u64.. {
        tick.tick().await;
        let c = fleet.counts();
        let t = t0.elapsed().as_secs_f64();
        anyhow::ensure!(
            child.alive(),
            "the gateway exited during the streams; its stderr:\n{}",
            child.stderr_tail()
        );
        let mut s = procfs::sample(child.pid, t).context("the gateway process is gone")?;
        if n % 4 == 0 {
            s.tasks = http::runtime_tasks(Some(child.admin)).await;
        }
        let row = row(&s, c);
        if n % 4 == 0 {
            progress(&row);
        }
        rows.push(row);
        if held.is_none() && worker::all_first(&c, args.streams) {
            let (h, x) = read_held(child, ports, t0, c).await?;
            (held, extras) = (Some(h), Some(x));
        }
        if fleet.finished() {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < limit,
            "the streams did not end within {limit:?}"
        );
    }
    if let (Some(h), Some(x)) = (held.as_mut(), extras) {
        (h.fds, h.connection_metrics) = x.await.unwrap_or_default();
    }
    Ok((rows, held))
}

fn row(s: &Sample, c: worker::Counts) -> Row {
    let [started, opened, first, done, failed, _] = c;
    Row {
        t: s.t,
        rss_kb: s.rss_kb,
        fds: s.fds,
        threads: s.threads,
        tasks: s.tasks,
        started,
        opened,
        first,
        done,
        failed,
        in_flight: worker::in_flight(&c),
    }
}

fn progress(r: &Row) {
    eprintln!(
        "  t={:>5.1}s  RSS {:>7.1} MiB  fds {:>6}  threads {:>3}  tasks {:>6} | streams started {} open {} first chunk {} done {} failed {}",
        r.t,
        r.rss_kb as f64 / 1024.0,
        r.fds,
        r.threads,
        r.tasks.map_or("-".into(), |t| t.to_string()),
        r.started,
        r.opened,
        r.first,
        r.done,
        r.failed
    );
}

/// What the held reading adds besides the figures: the descriptors by kind and the gateway's
/// connection gauges, read beside the 250 ms readings (sorting 20,000 descriptors against the
/// kernel's TCP table takes a while).
type Extras = tokio::task::JoinHandle<(Option<FdKinds>, Vec<String>)>;

/// The held reading: RSS first, then tasks; the extras are started.
async fn read_held(
    child: &ServeChild,
    ports: &Ports,
    t0: Instant,
    c: worker::Counts,
) -> anyhow::Result<(Held, Extras)> {
    let at_secs = t0.elapsed().as_secs_f64();
    let sample = read(child, at_secs).await?;
    let (pid, admin, ports) = (child.pid, child.admin, ports.clone());
    let extras = tokio::spawn(async move {
        let fds = tokio::task::spawn_blocking(move || ports.fds(pid));
        let metrics = match http::metrics_text(admin).await {
            Some(text) => text
                .lines()
                .filter(|l| l.starts_with("spillway_connections_"))
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        (fds.await.ok().flatten(), metrics)
    });
    eprintln!(
        "spillway bench streams: held {} streams at t={at_secs:.1}s: RSS {:.1} MiB, {} fds",
        worker::in_flight(&c),
        sample.rss_kb as f64 / 1024.0,
        sample.fds
    );
    let held = Held {
        sample,
        at_secs,
        streams_in_flight: worker::in_flight(&c),
        fds: None,
        connection_metrics: Vec::new(),
    };
    Ok((held, extras))
}

/// After the streams: reads every second until RSS is within 20% of the start and fds and
/// tasks within 10%, or `--settle-secs`; the last reading and how long it took. Each reading
/// goes to `keep` as well.
async fn settle(
    args: &StreamsArgs,
    child: &ServeChild,
    start: &Sample,
    t0: Instant,
    mut keep: impl FnMut(&Sample),
) -> anyhow::Result<(Sample, report::Settle)> {
    let from = Instant::now();
    let deadline = Duration::from_secs_f64(args.settle_secs);
    loop {
        let now = read(child, t0.elapsed().as_secs_f64()).await?;
        keep(&now);
        let tasks_back = match (start.tasks, now.tasks) {
            (Some(s), Some(n)) => super::report::within(s, n),
            _ => true,
        };
        let back = report::back_within(start.rss_kb, now.rss_kb, report::AFTER_TOLERANCE)
            && super::report::within(start.fds, now.fds)
            && tasks_back;
        if back || from.elapsed() >= deadline {
            let settle = report::Settle {
                deadline_secs: args.settle_secs,
                waited_secs: from.elapsed().as_secs_f64(),
                reached: back,
            };
            return Ok((now, settle));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `line` without its terminal colour codes (`ESC [ … m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        a: StreamsArgs,
    }

    /// The arguments as `spillway bench streams ARGV` parses them.
    pub fn args(argv: &[&str]) -> StreamsArgs {
        Cli::parse_from(std::iter::once("streams").chain(argv.iter().copied())).a
    }

    #[test]
    fn the_defaults_are_the_issues_run() {
        let a = args(&[]);
        assert_eq!(
            (a.streams, a.max_tokens, a.gateway_nofile),
            (10_000, 30, 65_536)
        );
        assert_eq!(
            (a.stream_secs, a.ramp_secs, a.settle_secs),
            (15.0, 5.0, 30.0)
        );
        assert!(check(&a).is_ok());
        assert!(check(&args(&["--stream-secs", "0"])).is_err());
        assert!(check(&args(&["--streams", "0"])).is_err());
    }

    #[test]
    fn colour_codes_are_taken_off_log_lines() {
        let line = "\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m upstream attempt failed";
        assert_eq!(plain(line), "2026  WARN upstream attempt failed");
        assert_eq!(plain("plain"), "plain");
    }
}

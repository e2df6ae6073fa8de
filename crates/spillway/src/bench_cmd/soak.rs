//! `spillway bench soak`: does the gateway give back what it took? Mixed load and faults for a
//! while, then the gateway process's resident memory, open file descriptors and threads are
//! compared with their values before the load.
//!
//! # The gateway
//!
//! By default a `spillway serve` child process of this executable ([`gateway`]) on the
//! embedded default configuration, with free ports, in front of simulators that run in this
//! process: so what is measured (`/proc/PID`) is the gateway's own, and faults can be switched
//! on the simulators. With `--target URL --pid PID` an already running gateway is measured
//! instead (its simulators' roots with `--sim URL` if faults are wanted).
//!
//! # The load ([`load`], [`raw`])
//!
//! For `--duration` (default 10 minutes): `--clients` clients of each kind (OpenAI chat, its
//! stream, Bedrock Converse, ConverseStream, a client that disconnects mid-stream, a client that
//! stops reading a long stream for `--slow-hold`), each one request at a time with a pause, and
//! `--idle` connections that never send a request (each reopened when the gateway closes it).
//! Meanwhile ([`faults`]) a region outage, a 429 storm, a brown-out, 50% errors and mid-stream
//! breaks take turns in the US regions, with healthy turns between them.
//!
//! # What is reported ([`report`])
//!
//! The gateway's RSS (`VmRSS`), open fds (entries of `/proc/PID/fd`) and threads (`Threads`)
//! before the load, every `--sample-secs` during it (the peak is taken from a reading every
//! second), and after it: the load stops (requests in flight are dropped, idle connections are
//! left open for the gateway to close), then the settle waits until every idle connection has
//! been closed by the gateway and fds, threads and tasks are back within 10% of their start, at most
//! `--settle-secs` (default twice the header-read timeout). The gateway's tokio tasks are read
//! from its admin listener (`spillway_runtime_tasks`), before, every second and after. Memory the
//! allocator keeps after the load shows as it is: the verdict is computed on the figure read,
//! for every figure alike.
//!
//! `spillway bench flood` ([`flood`]) is the other measurement of issue 15: an idle-connection
//! flood against a gateway with a small descriptor limit. `spillway bench streams`
//! ([`streams`]) measures issue 16's memory per in-flight stream on the same machinery.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::time::Instant;

mod faults;
pub mod flood;
mod gateway;
mod http;
mod load;
mod procfs;
mod raw;
mod report;
mod sampler;
pub mod streams;
mod tally;

use gateway::{Launch, ServeChild, Sims};
use report::{GatewayInfo, Report, Settle};

#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long the load runs: `10m`, `90s`, `500ms`, or seconds.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seconds between the samples kept in the report (the peak is read every second).
    #[arg(long, default_value_t = 10.0)]
    pub sample_secs: f64,
    /// Clients of each request kind.
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Connections that never send a request, held at once.
    #[arg(long, default_value_t = 8)]
    pub idle: usize,
    /// Mean pause between one client's requests, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub pause_ms: u64,
    /// How long a slow reader reads nothing (default 40 s, or a third of the duration if less).
    #[arg(long, value_parser = parse_duration)]
    pub slow_hold: Option<Duration>,
    /// For the gateway started here: `[server] header_read_timeout_ms` (default: the gateway's
    /// own default). With --target: the target's (default 30000), for the settle.
    #[arg(long)]
    pub header_read_timeout_ms: Option<u64>,
    /// For the gateway started here: another `[server]` key, as `KEY=VALUE` (TOML value), such
    /// as `stream_stall_timeout_ms=5000`; repeat.
    #[arg(long = "server", value_name = "KEY=VALUE", conflicts_with = "target")]
    pub server_keys: Vec<String>,
    /// Longest wait after the load for the figures to come back (default: twice the
    /// header-read timeout).
    #[arg(long)]
    pub settle_secs: Option<f64>,
    /// Run no faults.
    #[arg(long)]
    pub no_faults: bool,
    /// Run the same load and faults this long first, and settle, before the start is read: the
    /// start then holds what a gateway keeps once warm (code paged in, pools, thread stacks);
    /// the cold reading is reported beside it. `0s` (the default): the start is read cold.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long each fault (and each healthy pause between faults) lasts (default: a tenth of
    /// the duration, between 0.5 and 30 s).
    #[arg(long, value_parser = parse_duration)]
    pub fault_turn: Option<Duration>,
    /// Measure a running gateway: its API listener, `http://host:port`.
    #[arg(long, value_name = "URL", requires = "pid")]
    pub target: Option<String>,
    /// With --target: the gateway's process id (for /proc).
    #[arg(long, requires = "target")]
    pub pid: Option<u32>,
    /// With --target: the gateway's admin listener (readiness, metrics).
    #[arg(long, requires = "target")]
    pub admin: Option<SocketAddr>,
    /// With --target: a simulator behind it (`http://host:port`) to switch faults on; repeat.
    #[arg(long = "sim", value_name = "URL", requires = "target")]
    pub sims: Vec<String>,
    /// Seed of the clients' choices.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `10m`, `90s`, `500ms`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 10m, 30s or 500ms, got {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("expected a duration >= 0, got {s:?}"))
}

/// The gateway being measured, and what this command started for it.
struct Subject {
    pid: u32,
    api: SocketAddr,
    admin: Option<SocketAddr>,
    header_read: Duration,
    sims: Vec<faults::SimTarget>,
    child: Option<ServeChild>,
    local_sims: Option<Sims>,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.sample_secs.is_finite() && args.sample_secs > 0.0,
        "--sample-secs must be a positive number"
    );
    let mut subject = match &args.target {
        Some(url) => targeted(&args, url).await?,
        None => started(&args).await?,
    };
    let result = measure(&args, &mut subject).await;
    if let Some(child) = subject.child.as_mut() {
        child.stop(Duration::from_secs(10)).await;
    }
    if let Some(sims) = &subject.local_sims {
        sims.shutdown();
    }
    let report = result?;
    report::print(&report);
    if let Some(path) = &args.json {
        crate::output::write_json(path, &report, "spillway bench soak")?;
    }
    Ok(())
}

/// Simulators here, and a `spillway serve` child in front of them.
async fn started(args: &SoakArgs) -> anyhow::Result<Subject> {
    let sims = Sims::start().await?;
    let mut server: Vec<String> = args
        .header_read_timeout_ms
        .map(|ms| format!("header_read_timeout_ms = {ms}"))
        .into_iter()
        .collect();
    for kv in &args.server_keys {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--server: expected KEY=VALUE, got {kv:?}"))?;
        server.push(format!("{} = {}", k.trim(), v.trim()));
    }
    let text = sims.config_text(&server)?;
    let header_read = spillway_gateway::Config::parse(&text, "<bench soak>")?
        .edge
        .header_read;
    let child = ServeChild::start(&Launch {
        config_text: &text,
        nofile: None,
    })
    .await?;
    let targets = sims
        .handles
        .iter()
        .map(|h| faults::SimTarget {
            region: h.region().to_string(),
            root: faults::root(&h.base_url()),
        })
        .collect();
    Ok(Subject {
        pid: child.pid,
        api: child.api,
        admin: Some(child.admin),
        header_read,
        sims: targets,
        child: Some(child),
        local_sims: Some(sims),
    })
}

/// A running gateway given on the command line.
async fn targeted(args: &SoakArgs, url: &str) -> anyhow::Result<Subject> {
    let hostport = url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .context("--target: expected http://host:port")?;
    let api = tokio::net::lookup_host(hostport)
        .await?
        .next()
        .with_context(|| format!("--target: {hostport} does not resolve"))?;
    let pid = args.pid.context("--target needs --pid")?;
    let http = reqwest::Client::new();
    let mut sims = Vec::new();
    for s in &args.sims {
        let root = faults::root(s);
        let region = faults::region_of(&http, &root).await?;
        sims.push(faults::SimTarget { region, root });
    }
    Ok(Subject {
        pid,
        api,
        admin: args.admin,
        header_read: Duration::from_millis(args.header_read_timeout_ms.unwrap_or(30_000)),
        sims,
        child: None,
        local_sims: None,
    })
}

/// Before, during, settle, after.
async fn measure(args: &SoakArgs, s: &mut Subject) -> anyhow::Result<Report> {
    if let Some(admin) = s.admin {
        gateway::wait_ready(admin, "/readyz", Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ports = |s: &Subject| -> (Vec<u16>, Vec<u16>) {
        let serving = [Some(s.api.port()), s.admin.map(|a| a.port())];
        let upstream = s
            .sims
            .iter()
            .filter_map(|t| t.root.rsplit(':').next()?.parse().ok());
        (serving.into_iter().flatten().collect(), upstream.collect())
    };
    let (serving, upstream) = ports(s);
    let cold = warm_up(args, s).await?;
    let mut before = procfs::sample(s.pid, 0.0).context("reading /proc for the gateway")?;
    before.tasks = http::runtime_tasks(s.admin).await;
    let fds_before = procfs::fd_kinds(s.pid, &serving, &upstream);
    eprintln!(
        "spillway bench soak: gateway pid {} on {}; before: RSS {:.1} MiB, {} fds, {} threads; load for {:.0} s",
        s.pid,
        s.api,
        before.rss_kb as f64 / 1024.0,
        before.fds,
        before.threads,
        args.duration.as_secs_f64()
    );
    let started = Instant::now();
    let every = Duration::from_secs_f64(args.sample_secs);
    let sampler = sampler::Sampler::start(s.pid, s.admin, started, every);
    let (mut running, turns) = run_load(args, s, started, &sampler).await?;
    let settle_deadline = args
        .settle_secs
        .map_or(s.header_read * 2, Duration::from_secs_f64);
    let settle = settle(s, &before, &running.idle_open, settle_deadline).await;
    let mut after = procfs::sample(s.pid, started.elapsed().as_secs_f64())
        .context("the gateway process is gone")?;
    after.tasks = http::runtime_tasks(s.admin).await;
    let fds_after = procfs::fd_kinds(s.pid, &serving, &upstream);
    running.release().await;
    let (samples, peak) = sampler.finish().await;
    let (change_pct, within_10pct) = report::change(&before, &after);
    Ok(Report {
        cold,
        warmup_secs: args.warmup.as_secs_f64(),
        gateway: GatewayInfo {
            pid: s.pid,
            api: s.api.to_string(),
            admin: s.admin.map(|a| a.to_string()),
            started_here: s.child.is_some(),
            nofile_limit: gateway::nofile_limit(s.pid),
        },
        duration_secs: args.duration.as_secs_f64(),
        sample_secs: args.sample_secs,
        header_read_timeout_ms: s.header_read.as_millis() as u64,
        faults_injected: !turns.is_empty(),
        settle,
        before,
        peak: procfs::peak([&peak, &before, &after]),
        after,
        change_pct,
        within_10pct,
        fds_before,
        fds_after,
        tasks_note: (before.tasks.is_none() || after.tasks.is_none()).then_some(report::TASKS_NOTE),
        requests: running
            .tally
            .snapshot()
            .into_iter()
            .map(|(k, c)| (k.name(), c))
            .collect(),
        fault_turns: turns,
        samples,
        connection_metrics: connection_metrics(s.admin).await,
    })
}

/// With `--warmup`: the cold reading, then the load and faults for the warm-up, then the
/// settle; the caller reads the start after it.
async fn warm_up(args: &SoakArgs, s: &mut Subject) -> anyhow::Result<Option<procfs::Sample>> {
    if args.warmup.is_zero() {
        return Ok(None);
    }
    let mut cold = procfs::sample(s.pid, 0.0).context("reading /proc for the gateway")?;
    cold.tasks = http::runtime_tasks(s.admin).await;
    eprintln!(
        "spillway bench soak: cold: RSS {:.1} MiB; warming up for {:.0} s",
        cold.rss_kb as f64 / 1024.0,
        args.warmup.as_secs_f64()
    );
    let warm = SoakArgs {
        duration: args.warmup,
        ..args.clone()
    };
    let started = Instant::now();
    let every = Duration::from_secs_f64(args.sample_secs);
    let sampler = sampler::Sampler::start(s.pid, s.admin, started, every);
    let (mut running, _) = run_load(&warm, s, started, &sampler).await?;
    let deadline = args
        .settle_secs
        .map_or(s.header_read * 2, Duration::from_secs_f64);
    let settled = settle(s, &cold, &running.idle_open, deadline).await;
    running.release().await;
    sampler.finish().await;
    eprintln!(
        "spillway bench soak: warm-up settled in {:.1} s",
        settled.waited_secs
    );
    Ok(Some(cold))
}

/// Runs the load (and the faults) for the duration, watching that the gateway stays up.
async fn run_load(
    args: &SoakArgs,
    s: &mut Subject,
    started: Instant,
    sampler: &sampler::Sampler,
) -> anyhow::Result<(load::Running, Vec<faults::TurnRecord>)> {
    let spec = load::LoadSpec {
        api: s.api,
        clients: args.clients,
        idle: args.idle,
        pause: Duration::from_millis(args.pause_ms),
        slow_hold: args
            .slow_hold
            .unwrap_or_else(|| Duration::from_secs(40).min(args.duration / 3)),
        slow_tokens: slow_tokens(args.duration),
        seed: args.seed,
    };
    let mut running = load::start(&spec);
    let (stop_faults, stop_rx) = watch::channel(false);
    let fault_task = (!args.no_faults && !s.sims.is_empty()).then(|| {
        let turn = args.fault_turn.unwrap_or_else(|| {
            (args.duration / 10).clamp(Duration::from_millis(500), Duration::from_secs(30))
        });
        tokio::spawn(faults::run(s.sims.clone(), turn, started, stop_rx))
    });
    let end = started + args.duration;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.sample_secs));
    tick.tick().await;
    let mut gone = false;
    while Instant::now() < end {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = tick.tick() => {}
        }
        sampler.progress(&running);
        if s.child.as_mut().is_some_and(|c| !c.alive()) {
            gone = true;
            break;
        }
    }
    stop_faults.send_replace(true);
    running.stop().await;
    let turns = match fault_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if gone {
        let tail = s
            .child
            .as_ref()
            .map(|c| c.stderr_tail())
            .unwrap_or_default();
        anyhow::bail!("the gateway exited during the load; its stderr:\n{tail}");
    }
    Ok((running, turns))
}

/// A slow reader's output tokens: 3,000 (about 450 KB of SSE, 30 s at the small model's
/// 100 tokens/s), fewer in a short run so that its streams can end within it (a quarter of the
/// duration's worth, at least 200). On loopback the kernel's socket buffers (autotuned to
/// megabytes) take all of it, so the gateway's stall deadline is not reached: these clients
/// hold a connection and an upstream slot for the hold, no more.
fn slow_tokens(duration: Duration) -> u64 {
    ((duration.as_secs_f64() * 25.0) as u64).clamp(200, 3000)
}

/// Waits until the gateway has closed every idle connection and its fds, threads and tasks
/// (when they can be read) are back within 10% of `before`, or `deadline`.
async fn settle(
    s: &Subject,
    before: &procfs::Sample,
    idle_open: &Arc<std::sync::atomic::AtomicUsize>,
    deadline: Duration,
) -> Settle {
    let t0 = Instant::now();
    let mut reached = false;
    while t0.elapsed() < deadline {
        let now = procfs::sample(s.pid, 0.0);
        let idle = idle_open.load(Ordering::Relaxed);
        let tasks_back = match before.tasks {
            Some(b) => http::runtime_tasks(s.admin)
                .await
                .is_some_and(|n| report::within(b, n)),
            None => true,
        };
        if idle == 0
            && tasks_back
            && now.is_some_and(|n| {
                report::within(before.fds, n.fds) && report::within(before.threads, n.threads)
            })
        {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Settle {
        deadline_secs: deadline.as_secs_f64(),
        waited_secs: t0.elapsed().as_secs_f64(),
        reached,
        idle_still_open: idle_open.load(Ordering::Relaxed),
    }
}

/// The `spillway_connections_*` lines of the gateway's `/metrics`.
async fn connection_metrics(admin: Option<SocketAddr>) -> Vec<String> {
    let Some(admin) = admin else {
        return Vec::new();
    };
    match http::metrics_text(admin).await {
        Some(text) => text
            .lines()
            .filter(|l| l.starts_with("spillway_connections_"))
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

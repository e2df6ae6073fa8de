//! `spillway bench flood`: idle connections by the tens of thousands against a gateway's API
//! listener, while its admin `/healthz` and ordinary requests on fresh connections are probed.
//!
//! # Run
//!
//! 1. A `spillway serve` child on the embedded default (simulators in this process, see
//!    [`super::gateway`]) under `prlimit --nofile=N:N` (`--gateway-nofile`, default 4,096), with
//!    `[server] max_connections` if `--max-connections` is given; or a running gateway
//!    (`--target ADDR --admin ADDR --pid PID`).
//! 2. Probes start `--lead` before the flood ([`probe`]): `GET /healthz` on the admin listener
//!    every 100 ms (1 s timeout), and a non-streamed chat completion on the API listener every
//!    250 ms (5 s timeout), each on a new connection.
//! 3. At t = 0, `--connections` idle connections (default 30,000) are opened by generator
//!    processes ([`worker`], `--per-worker` each, from 127.0.0.2, 127.0.0.3, …), at most
//!    `--concurrency` connects in flight per worker, each given `--connect-timeout-ms`. Each is
//!    held, sending nothing, until the gateway closes it or `--hold` ends.
//! 4. Then the generators close what is left, and the settle waits (at most `--settle`) until
//!    the gateway's descriptors are back within 10% of their start; the last reading is
//!    "after".
//!
//! Every second one line: the gateway's RSS, fds, threads, the flood's counts, the probes that
//! ended since the previous line, and the gateway's own connection gauges from `/metrics` when it answers.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::Instant;

use super::gateway::{self, Launch, ServeChild, Sims};
use super::http::{self, DEMO_KEY};
use super::procfs::{self, Sample};
use super::{load, parse_duration};

mod fleet;
pub mod probe;
mod report;
pub mod worker;

use fleet::Fleet;
use probe::Prober;

#[derive(clap::Args, Debug, Clone)]
pub struct FloodArgs {
    /// Idle connections to open.
    #[arg(long, default_value_t = 30_000)]
    pub connections: usize,
    /// Connections per generator process (each needs that many descriptors).
    #[arg(long, default_value_t = 15_000)]
    pub per_worker: usize,
    /// Connects in flight at once, per generator.
    #[arg(long, default_value_t = 1024)]
    pub concurrency: usize,
    /// How long a connect may take before it counts as failed.
    #[arg(long, default_value_t = 3000)]
    pub connect_timeout_ms: u64,
    /// The descriptor limit of the gateway started here (`prlimit --nofile=N:N`); 0: inherit.
    #[arg(long, default_value_t = 4096)]
    pub gateway_nofile: u64,
    /// `[server] max_connections` for the gateway started here (default: the gateway's own).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// `[server] header_read_timeout_ms` for the gateway started here (default: the
    /// gateway's own); with --target, the target's (default 30000).
    #[arg(long)]
    pub header_read_timeout_ms: Option<u64>,
    /// How long the flood's connections are held (default: twice the header-read timeout
    /// plus 10 s).
    #[arg(long, value_parser = parse_duration)]
    pub hold: Option<Duration>,
    /// Longest wait after the flood for the descriptors to come back (default: twice the
    /// header-read timeout).
    #[arg(long, value_parser = parse_duration)]
    pub settle: Option<Duration>,
    /// Probing before the flood starts.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub lead: Duration,
    /// A running gateway's API listener instead of starting one.
    #[arg(long, value_name = "ADDR")]
    pub target: Option<SocketAddr>,
    /// With --target: its admin listener.
    #[arg(long, value_name = "ADDR", requires = "target")]
    pub admin: Option<SocketAddr>,
    /// With --target: its process id.
    #[arg(long, requires = "target")]
    pub pid: Option<u32>,
    /// Write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run as one generator process (started by this command).
    #[arg(long, hide = true, requires = "target")]
    pub worker: bool,
    /// The generator's local address.
    #[arg(long, hide = true)]
    pub local_ip: Option<IpAddr>,
}

/// The gateway being flooded.
struct Subject {
    pid: u32,
    api: SocketAddr,
    admin: SocketAddr,
    header_read: Duration,
    child: Option<ServeChild>,
    sims: Option<Sims>,
}

pub async fn run(args: FloodArgs) -> anyhow::Result<()> {
    if args.worker {
        let target = args.target.context("--worker needs --target")?;
        return worker::run(worker::WorkerSpec {
            target,
            local_ip: args.local_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            connections: args.per_worker.min(args.connections),
            concurrency: args.concurrency.max(1),
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        })
        .await;
    }
    let mut subject = match args.target {
        Some(api) => Subject {
            pid: args.pid.context("--target needs --pid")?,
            api,
            admin: args.admin.context("--target needs --admin")?,
            header_read: Duration::from_millis(args.header_read_timeout_ms.unwrap_or(30_000)),
            child: None,
            sims: None,
        },
        None => start(&args).await?,
    };
    let result = measure(&args, &subject).await;
    if let Some(c) = subject.child.as_mut() {
        c.stop(Duration::from_secs(10)).await;
    }
    if let Some(s) = &subject.sims {
        s.shutdown();
    }
    let r = result?;
    report::print(&r);
    if let Some(path) = &args.json {
        crate::output::write_json(path, &r, "spillway bench flood")?;
    }
    Ok(())
}

async fn start(args: &FloodArgs) -> anyhow::Result<Subject> {
    let sims = Sims::start().await?;
    let mut server = Vec::new();
    if let Some(n) = args.max_connections {
        server.push(format!("max_connections = {n}"));
    }
    if let Some(ms) = args.header_read_timeout_ms {
        server.push(format!("header_read_timeout_ms = {ms}"));
    }
    let text = sims.config_text(&server)?;
    let header_read = spillway_gateway::Config::parse(&text, "<bench flood>")?
        .edge
        .header_read;
    let child = ServeChild::start(&Launch {
        config_text: &text,
        nofile: (args.gateway_nofile > 0).then_some(args.gateway_nofile),
    })
    .await?;
    Ok(Subject {
        pid: child.pid,
        api: child.api,
        admin: child.admin,
        header_read,
        child: Some(child),
        sims: Some(sims),
    })
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub t: f64,
    pub rss_kb: u64,
    pub fds: u64,
    pub threads: u64,
    /// Flood connections established so far, closed by the gateway so far, connects failed.
    pub opened: u64,
    pub closed_by_gateway: u64,
    pub connect_failed: u64,
    /// Probes that ended since the previous row, by result.
    pub healthz_ok: u64,
    pub healthz_failed: u64,
    pub fresh_ok: u64,
    pub fresh_failed: u64,
    /// The gateway's `spillway_connections_*` series summed over listeners (absent when
    /// `/metrics` did not answer within a second).
    pub metrics: BTreeMap<String, f64>,
}

/// The probes and the rows of a run.
struct Watch<'a> {
    s: &'a Subject,
    t0: Instant,
    healthz: Prober,
    fresh: Prober,
    rows: Vec<Row>,
    tick: tokio::time::Interval,
}

impl<'a> Watch<'a> {
    /// Starts probing `s`; the flood starts at `t0`.
    fn start(s: &'a Subject, t0: Instant) -> Watch<'a> {
        let healthz = Prober::start(
            s.admin,
            http::request("GET", "/healthz", None, b""),
            Duration::from_millis(100),
            Duration::from_secs(1),
            t0,
        );
        let body = load::chat_body(load::SMALL, 4, false).to_string();
        let req = http::request(
            "POST",
            "/v1/chat/completions",
            Some(DEMO_KEY),
            body.as_bytes(),
        );
        let fresh = Prober::start(
            s.api,
            req,
            Duration::from_millis(250),
            Duration::from_secs(5),
            t0,
        );
        Watch {
            s,
            t0,
            healthz,
            fresh,
            rows: Vec::new(),
            tick: tokio::time::interval(Duration::from_secs(1)),
        }
    }

    /// Waits for the next second and adds its row (`flood`: the generators' counts).
    async fn next(&mut self, flood: [u64; 5]) -> &Row {
        self.tick.tick().await;
        let since = self.rows.last().map_or(f64::MIN, |r| r.t);
        let r = row(self.s, self.t0, flood, &self.healthz, &self.fresh, since).await;
        self.rows.push(r);
        &self.rows[self.rows.len() - 1]
    }
}

/// The whole run; see the module docs.
async fn measure(args: &FloodArgs, s: &Subject) -> anyhow::Result<report::FloodReport> {
    gateway::wait_ready(s.admin, "/readyz", Duration::from_secs(30)).await?;
    let t0 = Instant::now() + args.lead;
    let mut w = Watch::start(s, t0);
    while Instant::now() < t0 {
        w.next([0; 5]).await;
    }
    let before = procfs::sample(s.pid, 0.0).context("reading /proc for the gateway")?;
    let overflows_before = procfs::listen_overflows();
    let fleet = Fleet::start(args, s.api)?;
    let hold = args
        .hold
        .unwrap_or(s.header_read * 2 + Duration::from_secs(10));
    while Instant::now() < t0 + hold {
        w.next(fleet.counts()).await;
    }
    let totals = fleet.stop().await;
    let listen_overflows = procfs::listen_overflows()
        .zip(overflows_before)
        .map(|((o, d), (o0, d0))| (o.saturating_sub(o0), d.saturating_sub(d0)));
    let settle = settle(args, &mut w, &before, totals.counts()).await;
    let after = procfs::sample(s.pid, probe::secs_from(t0, Instant::now()))
        .context("the gateway process is gone")?;
    let (healthz, fresh) = (w.healthz.finish().await, w.fresh.finish().await);
    let m = report::Measured {
        pid: s.pid,
        api: s.api,
        admin: s.admin,
        header_read: s.header_read,
        hold,
        before,
        after,
        rows: w.rows,
        totals,
        listen_overflows,
        settle,
        healthz,
        fresh,
    };
    Ok(report::FloodReport::new(args, m))
}

/// After the flood: the whole settle period (so that the memory's course shows), noting when
/// the descriptors came back within 10% of `before`.
async fn settle(
    args: &FloodArgs,
    w: &mut Watch<'_>,
    before: &Sample,
    flood: [u64; 5],
) -> super::report::Settle {
    let deadline = args.settle.unwrap_or(w.s.header_read * 2);
    let from = Instant::now();
    let mut fds_back = None;
    while from.elapsed() < deadline {
        let fds = w.next(flood).await.fds;
        if fds_back.is_none() && super::report::within(before.fds, fds) {
            fds_back = Some(from.elapsed());
        }
    }
    super::report::Settle {
        deadline_secs: deadline.as_secs_f64(),
        waited_secs: fds_back.unwrap_or_else(|| from.elapsed()).as_secs_f64(),
        reached: fds_back.is_some(),
        idle_still_open: 0,
    }
}

/// The readings of this second.
async fn row(
    s: &Subject,
    t0: Instant,
    flood: [u64; 5],
    healthz: &Prober,
    fresh: &Prober,
    since: f64,
) -> Row {
    let t = probe::secs_from(t0, Instant::now());
    let p = procfs::sample(s.pid, t).unwrap_or_default();
    let [opened, closed, timeout, refused, other] = flood;
    let (healthz_ok, healthz_failed) = healthz.window(since, t);
    let (fresh_ok, fresh_failed) = fresh.window(since, t);
    let r = Row {
        t,
        rss_kb: p.rss_kb,
        fds: p.fds,
        threads: p.threads,
        opened,
        closed_by_gateway: closed,
        connect_failed: timeout + refused + other,
        healthz_ok,
        healthz_failed,
        fresh_ok,
        fresh_failed,
        metrics: metrics(s.admin).await,
    };
    report::print_row(&r);
    r
}

/// The gateway's `spillway_connections_*` series, summed over their labels.
async fn metrics(admin: SocketAddr) -> BTreeMap<String, f64> {
    let req = http::request("GET", "/metrics", None, b"");
    let Ok((200, body)) = http::exchange(admin, &req, Duration::from_secs(1)).await else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for line in String::from_utf8_lossy(&body).lines() {
        let Some(rest) = line.strip_prefix("spillway_connections_") else {
            continue;
        };
        let name = rest.split(['{', ' ']).next().unwrap_or_default();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(name.to_string()).or_default() += value;
    }
    out
}

/// Where the flood's figures came from, for the report: before and after as read, the peak of
/// every row.
pub fn peak_of(rows: &[Row], before: &Sample, after: &Sample) -> Sample {
    let mut p = procfs::peak([before, after]);
    for r in rows {
        p = procfs::peak([
            &p,
            &Sample {
                t: r.t,
                rss_kb: r.rss_kb,
                rss_anon_kb: 0,
                rss_file_kb: 0,
                fds: r.fds,
                threads: r.threads,
                tasks: None,
            },
        ]);
    }
    p
}

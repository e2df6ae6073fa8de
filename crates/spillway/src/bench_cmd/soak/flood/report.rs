//! The flood's report: a line per second while it runs, then the summary and the JSON.
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::super::gateway::nofile_limit;
use super::super::procfs::Sample;
use super::super::report::{Settle, within};
use super::fleet::Totals;
use super::probe::{Probe, ProbeSummary, summarize};
use super::{FloodArgs, Row, peak_of};

/// What [`super::measure`] gathered.
pub struct Measured {
    pub pid: u32,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub header_read: Duration,
    pub hold: Duration,
    pub before: Sample,
    pub after: Sample,
    pub rows: Vec<Row>,
    pub totals: Totals,
    pub listen_overflows: Option<(u64, u64)>,
    pub settle: Settle,
    pub healthz: Vec<Probe>,
    pub fresh: Vec<Probe>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    pub pid: u32,
    pub api: String,
    pub admin: String,
    pub gateway_nofile_limit: Option<u64>,
    /// `[server] max_connections` as configured (`None`: the gateway's default).
    pub max_connections: Option<usize>,
    pub header_read_timeout_ms: u64,
    pub connections_asked: usize,
    pub hold_secs: f64,
    pub flood: Totals,
    /// The kernel's `ListenOverflows` and `ListenDrops` during the flood (whole network
    /// namespace): handshakes dropped because an accept queue was full.
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    pub healthz: ProbeSummary,
    pub fresh_requests: ProbeSummary,
    pub before: Sample,
    pub peak: Sample,
    pub after: Sample,
    pub rss_after_within_20pct: bool,
    pub fds_after_within_10pct: bool,
    pub settle: Settle,
    /// Every failed probe (the successful ones are only counted).
    pub healthz_failures: Vec<Probe>,
    pub fresh_failures: Vec<Probe>,
    pub timeline: Vec<Row>,
}

impl FloodReport {
    pub fn new(args: &FloodArgs, m: Measured) -> FloodReport {
        let peak = peak_of(&m.rows, &m.before, &m.after);
        FloodReport {
            pid: m.pid,
            api: m.api.to_string(),
            admin: m.admin.to_string(),
            gateway_nofile_limit: nofile_limit(m.pid),
            max_connections: args.max_connections,
            header_read_timeout_ms: m.header_read.as_millis() as u64,
            connections_asked: args.connections,
            hold_secs: m.hold.as_secs_f64(),
            flood: m.totals,
            listen_overflows: m.listen_overflows.map(|(o, _)| o),
            listen_drops: m.listen_overflows.map(|(_, d)| d),
            healthz: summarize(&m.healthz),
            fresh_requests: summarize(&m.fresh),
            rss_after_within_20pct: m.after.rss_kb as f64 <= m.before.rss_kb as f64 * 1.2,
            fds_after_within_10pct: within(m.before.fds, m.after.fds),
            before: m.before,
            peak,
            after: m.after,
            settle: m.settle,
            healthz_failures: m.healthz.into_iter().filter(|p| !p.ok).collect(),
            fresh_failures: m.fresh.into_iter().filter(|p| !p.ok).collect(),
            timeline: m.rows,
        }
    }
}

/// One second on stderr.
pub fn print_row(r: &Row) {
    let gauge = |k: &str| {
        r.metrics
            .get(k)
            .map_or("-".to_string(), |v| format!("{v:.0}"))
    };
    eprintln!(
        "  t={:>6.1}s  RSS {:>7.1} MiB  fds {:>5}  thr {:>3} | flood open {:>6} closed {:>6} failed {:>6} | healthz {:>2} ok {:>2} bad | fresh {:>2} ok {:>2} bad | gw open {} refused {}",
        r.t,
        r.rss_kb as f64 / 1024.0,
        r.fds,
        r.threads,
        r.opened,
        r.closed_by_gateway,
        r.connect_failed,
        r.healthz_ok,
        r.healthz_failed,
        r.fresh_ok,
        r.fresh_failed,
        gauge("open"),
        gauge("refused_total"),
    );
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |s| format!("{s:.1} s"))
}

fn probes_line(name: &str, s: &ProbeSummary) {
    let why: Vec<String> = s
        .failures
        .iter()
        .map(|(w, n)| format!("{n}× {w}"))
        .collect();
    println!(
        "{name:<15} {:>6} {:>6} {:>6}  first fail {:>8}  last fail {:>8}  ok again {:>8}  longest outage {:>6.1} s  max {:>6.0} ms  {}",
        s.probes,
        s.ok,
        s.failed,
        secs(s.first_failure_secs),
        secs(s.last_failure_secs),
        secs(s.recovered_at_secs),
        s.longest_outage_secs,
        s.max_ms,
        why.join("; ")
    );
}

pub fn print(r: &FloodReport) {
    println!();
    println!(
        "flood: {} idle connections against {} (pid {}, fd limit {}, max_connections {}, header-read timeout {} ms), held {:.0} s",
        r.connections_asked,
        r.api,
        r.pid,
        r.gateway_nofile_limit.map_or("?".into(), |n| n.to_string()),
        r.max_connections
            .map_or("default".into(), |n| n.to_string()),
        r.header_read_timeout_ms,
        r.hold_secs
    );
    let f = &r.flood;
    println!(
        "flood connections: {} opened, {} closed by the gateway, connects failed: {} timed out, {} refused, {} other ({} generator processes)",
        f.opened,
        f.closed_by_gateway,
        f.connect_timed_out,
        f.connect_refused,
        f.connect_other_error,
        f.workers
    );
    if let (Some(o), Some(d)) = (r.listen_overflows, r.listen_drops) {
        println!(
            "kernel: {o} listen-queue overflows, {d} listen drops during the flood (handshakes the gateway never saw; their clients may think them open)"
        );
    }
    println!(
        "{:<15} {:>6} {:>6} {:>6}  (times from the flood's start)",
        "probe", "sent", "ok", "failed"
    );
    probes_line("admin /healthz", &r.healthz);
    probes_line("fresh request", &r.fresh_requests);
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "RSS MiB  before {:.1}  peak {:.1}  after {:.1} ({:+.1}%, {})",
        mib(r.before.rss_kb),
        mib(r.peak.rss_kb),
        mib(r.after.rss_kb),
        (r.after.rss_kb as f64 / r.before.rss_kb.max(1) as f64 - 1.0) * 100.0,
        if r.rss_after_within_20pct {
            "within 20%"
        } else {
            "NOT within 20%"
        }
    );
    println!(
        "         of which anon (heap) before {:.1} after {:.1}, file-backed (code) before {:.1} after {:.1}",
        mib(r.before.rss_anon_kb),
        mib(r.after.rss_anon_kb),
        mib(r.before.rss_file_kb),
        mib(r.after.rss_file_kb),
    );
    println!(
        "fds      before {}  peak {}  after {} ({})   threads before {} peak {} after {}",
        r.before.fds,
        r.peak.fds,
        r.after.fds,
        if r.fds_after_within_10pct {
            "within 10%"
        } else {
            "NOT within 10%"
        },
        r.before.threads,
        r.peak.threads,
        r.after.threads
    );
    match r.settle.reached {
        true => println!(
            "fds back within 10% {:.1} s after the generators closed their connections; after: read at the end of the {:.0} s settle",
            r.settle.waited_secs, r.settle.deadline_secs
        ),
        false => println!(
            "fds NOT back within 10% within the {:.0} s settle after the generators closed their connections; after: read at its end",
            r.settle.deadline_secs
        ),
    }
}

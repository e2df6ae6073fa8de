//! The report of `spillway bench streams`: the figures (JSON with `--json`), the verdicts on
//! issue 16's bars, and the table on stdout.
use std::collections::BTreeMap;

use serde::Serialize;

use super::super::procfs::{FdKinds, Sample};
use super::super::report::within;
use super::worker::WorkerResult;

/// Issue 16's bar for memory per in-flight stream: 20 KB, read as 20,000 bytes.
pub const PER_STREAM_BAR_BYTES: f64 = 20_000.0;
/// Issue 16's bar for RSS after the streams: within 20% of the start.
pub const AFTER_TOLERANCE: f64 = 0.20;

/// One reading while the streams run (every 250 ms).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Row {
    pub t: f64,
    pub rss_kb: u64,
    pub fds: u64,
    pub threads: u64,
    /// Read every second only.
    pub tasks: Option<u64>,
    /// The clients' counts: streams started, answered 200, with a first chunk, done, failed.
    pub started: u64,
    pub opened: u64,
    pub first: u64,
    pub done: u64,
    pub failed: u64,
    /// Streams with a first chunk that have not ended.
    pub in_flight: u64,
}

/// The reading taken once every stream has had its first chunk (or failed).
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub sample: Sample,
    /// Seconds since the first stream started.
    pub at_secs: f64,
    /// Streams open with a first chunk and not ended at that moment.
    pub streams_in_flight: u64,
    pub fds: Option<FdKinds>,
    /// The gateway's `spillway_connections_*` lines on `/metrics` then.
    pub connection_metrics: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayInfo {
    pub pid: u32,
    pub api: String,
    pub admin: String,
    pub nofile_limit: Option<u64>,
    /// `[server] max_connections` as configured (`None`: the gateway's default).
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub streams_asked: usize,
    pub stream_secs: f64,
    pub max_tokens: u64,
    pub ramp_secs: f64,
    pub connects_in_flight: usize,
    pub client_processes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quantiles {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settle {
    pub deadline_secs: f64,
    pub waited_secs: f64,
    /// RSS within 20% of the start, fds and tasks within 10%, before the deadline.
    pub reached: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bars {
    pub per_stream_bytes_max: f64,
    pub per_stream_met: bool,
    /// Every stream asked for was held at once and none failed.
    pub all_streams_held_met: bool,
    pub after_within_20pct_met: bool,
    /// Not bars of the issue, reported beside them.
    pub fds_after_within_10pct: bool,
    pub tasks_after_within_10pct: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamsReport {
    pub gateway: GatewayInfo,
    pub setup: Setup,
    pub start: Sample,
    pub held: Option<Held>,
    pub peak: Sample,
    pub after: Sample,
    pub fds_start: Option<FdKinds>,
    pub fds_after: Option<FdKinds>,
    /// (held − start) RSS over the streams in flight then, in KiB.
    pub kib_per_stream: Option<f64>,
    /// The most streams in flight at any reading.
    pub most_in_flight: u64,
    /// (peak − start) RSS over the most streams in flight, in KiB.
    pub kib_per_stream_at_peak: Option<f64>,
    /// after / start − 1, in percent.
    pub after_vs_start_pct: f64,
    pub ok: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Streams answered from a region outside the three (counted among the failures).
    pub residency_violations: u64,
    pub regions: BTreeMap<String, u64>,
    pub first_chunk_ms: Option<Quantiles>,
    pub bars: Bars,
    pub settle: Settle,
    /// The last lines the gateway wrote on stderr (warnings and errors only).
    pub gateway_log_tail: Vec<String>,
    pub timeline: Vec<Row>,
}

/// What the run gathered, for [`StreamsReport::new`].
pub struct Measured {
    pub gateway: GatewayInfo,
    pub setup: Setup,
    pub start: Sample,
    pub held: Option<Held>,
    pub after: Sample,
    pub fds_start: Option<FdKinds>,
    pub fds_after: Option<FdKinds>,
    pub clients: WorkerResult,
    pub settle: Settle,
    pub gateway_log_tail: Vec<String>,
    pub timeline: Vec<Row>,
}

impl StreamsReport {
    pub fn new(m: Measured) -> StreamsReport {
        let mut peak = super::super::procfs::peak([&m.start, &m.after]);
        for r in &m.timeline {
            peak.rss_kb = peak.rss_kb.max(r.rss_kb);
            peak.fds = peak.fds.max(r.fds);
            peak.threads = peak.threads.max(r.threads);
            peak.tasks = peak.tasks.max(r.tasks);
        }
        if let Some(h) = &m.held {
            peak = super::super::procfs::peak([&peak, &h.sample]);
        }
        let kib_per_stream = m
            .held
            .as_ref()
            .and_then(|h| per_stream_kib(m.start.rss_kb, h.sample.rss_kb, h.streams_in_flight));
        let most_in_flight = m
            .timeline
            .iter()
            .map(|r| r.in_flight)
            .chain(m.held.as_ref().map(|h| h.streams_in_flight))
            .max()
            .unwrap_or(0);
        let kib_at_peak = per_stream_kib(m.start.rss_kb, peak.rss_kb, most_in_flight);
        let failed: u64 = m.clients.failures.values().sum();
        let residency_violations = m
            .clients
            .failures
            .iter()
            .filter(|(why, _)| why.starts_with("served in"))
            .map(|(_, n)| n)
            .sum();
        let held_all = m
            .held
            .as_ref()
            .is_some_and(|h| h.streams_in_flight == m.setup.streams_asked as u64);
        let bars = Bars {
            per_stream_bytes_max: PER_STREAM_BAR_BYTES,
            per_stream_met: kib_per_stream.is_some_and(meets_per_stream_bar),
            all_streams_held_met: held_all && failed == 0,
            after_within_20pct_met: back_within(m.start.rss_kb, m.after.rss_kb, AFTER_TOLERANCE),
            fds_after_within_10pct: within(m.start.fds, m.after.fds),
            tasks_after_within_10pct: m.start.tasks.zip(m.after.tasks).map(|(s, a)| within(s, a)),
        };
        StreamsReport {
            gateway: m.gateway,
            setup: m.setup,
            after_vs_start_pct: pct(m.start.rss_kb, m.after.rss_kb),
            start: m.start,
            held: m.held,
            peak,
            after: m.after,
            fds_start: m.fds_start,
            fds_after: m.fds_after,
            kib_per_stream,
            most_in_flight,
            kib_per_stream_at_peak: kib_at_peak,
            ok: m.clients.ok,
            failed,
            failures: m.clients.failures,
            residency_violations,
            regions: m.clients.regions,
            first_chunk_ms: quantiles(m.clients.first_chunk_ms),
            bars,
            settle: m.settle,
            gateway_log_tail: m.gateway_log_tail,
            timeline: m.timeline,
        }
    }
}

/// (`held_kb` − `start_kb`) / `streams`, in KiB (negative if RSS went down); `None` without
/// streams.
pub fn per_stream_kib(start_kb: u64, held_kb: u64, streams: u64) -> Option<f64> {
    (streams > 0).then(|| (held_kb as f64 - start_kb as f64) / streams as f64)
}

/// Whether `kib` of RSS per stream is within [`PER_STREAM_BAR_BYTES`].
pub fn meets_per_stream_bar(kib: f64) -> bool {
    kib * 1024.0 <= PER_STREAM_BAR_BYTES
}

/// Whether `after` is at most `tolerance` above `start`.
pub fn back_within(start: u64, after: u64, tolerance: f64) -> bool {
    after as f64 <= start as f64 * (1.0 + tolerance)
}

fn pct(start: u64, after: u64) -> f64 {
    if start == 0 {
        return 0.0;
    }
    (after as f64 / start as f64 - 1.0) * 100.0
}

/// p50, p99 and max (nearest rank) of `v`; `None` when empty.
pub fn quantiles(mut v: Vec<f64>) -> Option<Quantiles> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Quantiles {
        n: v.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        max: v[v.len() - 1],
    })
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |n| n.to_string())
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The table on stdout.
pub fn print(r: &StreamsReport) {
    let s = &r.setup;
    println!();
    println!(
        "streams: {} streamed chat completions through spillway serve pid {} (fd limit {}), {:.0} s each ({} tokens), ramped over {:.1} s by {} client process(es)",
        s.streams_asked,
        r.gateway.pid,
        opt(r.gateway.nofile_limit),
        s.stream_secs,
        s.max_tokens,
        s.ramp_secs,
        s.client_processes
    );
    let regions: Vec<String> = r.regions.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "streams ok {}, failed {} (residency violations {}); served in: {}",
        r.ok,
        r.failed,
        r.residency_violations,
        regions.join(", ")
    );
    for (why, n) in &r.failures {
        println!("  failed: {n}× {why}");
    }
    print_figures(r);
    print_verdicts(r);
}

fn print_figures(r: &StreamsReport) {
    let held = r.held.as_ref().map(|h| h.sample);
    let col = |f: &dyn Fn(&Sample) -> String| {
        let h = held.as_ref().map_or("-".into(), f);
        format!(
            "{:>9} {:>9} {:>9} {:>9}",
            f(&r.start),
            h,
            f(&r.peak),
            f(&r.after)
        )
    };
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>9}",
        "", "start", "held", "peak", "after"
    );
    println!("{:<14} {}", "RSS MiB", col(&|x| mib(x.rss_kb)));
    println!("{:<14} {}", "  anon MiB", col(&|x| mib(x.rss_anon_kb)));
    println!("{:<14} {}", "  file MiB", col(&|x| mib(x.rss_file_kb)));
    println!("{:<14} {}", "open fds", col(&|x| x.fds.to_string()));
    println!("{:<14} {}", "threads", col(&|x| x.threads.to_string()));
    println!("{:<14} {}", "tokio tasks", col(&|x| opt(x.tasks)));
    if let Some(h) = &r.held {
        println!(
            "held: {} streams in flight, read {:.1} s after the first started",
            h.streams_in_flight, h.at_secs
        );
    }
    if let (Some(a), Some(b)) = (&r.fds_start, &r.fds_after) {
        println!(
            "fds by kind, start → after: clients {} → {}, upstream {} → {}, listening {} → {}, other {} → {}",
            a.clients,
            b.clients,
            a.upstream,
            b.upstream,
            a.listening,
            b.listening,
            a.other,
            b.other
        );
    }
    if let Some(q) = &r.first_chunk_ms {
        println!(
            "first chunk (connect to first data event): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} streams)",
            q.p50, q.p99, q.max, q.n
        );
    }
    println!(
        "settle: {:.1} s of at most {:.0} s ({})",
        r.settle.waited_secs,
        r.settle.deadline_secs,
        if r.settle.reached {
            "RSS within 20%, fds and tasks within 10% of the start"
        } else {
            "not all back by then; after: read at its end"
        }
    );
}

fn print_verdicts(r: &StreamsReport) {
    let kib = |v: Option<f64>| v.map_or("-".into(), |k| format!("{k:.1} KiB"));
    println!(
        "RSS per in-flight stream: {} held ({} at the peak, over the most streams in flight at once, {})",
        kib(r.kib_per_stream),
        kib(r.kib_per_stream_at_peak),
        r.most_in_flight
    );
    println!("issue 16's bars:");
    println!(
        "  <= 20 KB (20,000 bytes) of RSS per in-flight stream: {:<12} {}",
        kib(r.kib_per_stream),
        met(r.bars.per_stream_met)
    );
    println!(
        "  {} streams held, none failed: {:<12} {}",
        r.setup.streams_asked,
        format!(
            "{} held",
            r.held.as_ref().map_or(0, |h| h.streams_in_flight)
        ),
        met(r.bars.all_streams_held_met)
    );
    println!(
        "  RSS back within 20% of the start: {:<12} {}",
        format!("{:+.1}%", r.after_vs_start_pct),
        met(r.bars.after_within_20pct_met)
    );
    println!(
        "  (fds back within 10%: {}; tokio tasks: {})",
        r.bars.fds_after_within_10pct,
        r.bars
            .tasks_after_within_10pct
            .map_or("-".into(), |b| b.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_stream() {
        assert_eq!(per_stream_kib(10_000, 30_000, 1_000), Some(20.0));
        assert_eq!(per_stream_kib(10_000, 9_000, 100), Some(-10.0));
        assert_eq!(per_stream_kib(10_000, 30_000, 0), None);
        // 20 KB is 19.53 KiB: 19.5 KiB meets the bar, 19.6 does not.
        assert!(meets_per_stream_bar(19.5) && meets_per_stream_bar(-3.0));
        assert!(!meets_per_stream_bar(19.6));
    }

    #[test]
    fn back_within_a_fifth() {
        assert!(back_within(100, 120, AFTER_TOLERANCE));
        assert!(!back_within(100, 121, AFTER_TOLERANCE));
        assert_eq!(pct(200, 250), 25.0);
        assert_eq!(pct(0, 5), 0.0);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let q = quantiles((1..=100).map(f64::from).collect()).expect("some");
        assert_eq!((q.n, q.p50, q.p99, q.max), (100, 50.0, 99.0, 100.0));
        let one = quantiles(vec![7.0, f64::NAN]).expect("one finite");
        assert_eq!((one.n, one.p50, one.p99, one.max), (1, 7.0, 7.0, 7.0));
        assert!(quantiles(Vec::new()).is_none());
    }
}

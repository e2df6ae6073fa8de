//! The soak's report: the figures as JSON and the summary table.
use std::collections::BTreeMap;

use serde::Serialize;

use super::faults::TurnRecord;
use super::procfs::{FdKinds, Sample};
use super::tally::Counts;

/// "Back within 10% of the start": the figure after the settle is at most 10% above the one
/// before the load.
pub const TOLERANCE: f64 = 0.10;

/// What the report says about the process's tokio tasks when it cannot read them.
pub const TASKS_NOTE: &str = "tokio tasks not read: they are only visible on the gateway's admin listener (spillway_runtime_tasks), and it was not given or did not answer";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// With `--warmup`: the reading before the warm-up (the `before` figures are read after
    /// it, and the verdicts compare with them).
    pub cold: Option<Sample>,
    pub warmup_secs: f64,
    pub gateway: GatewayInfo,
    pub duration_secs: f64,
    pub sample_secs: f64,
    pub header_read_timeout_ms: u64,
    pub faults_injected: bool,
    pub settle: Settle,
    pub before: Sample,
    pub peak: Sample,
    pub after: Sample,
    /// after / before − 1, in percent.
    pub change_pct: Figures<f64>,
    /// Whether each figure came back within [`TOLERANCE`] of its start.
    pub within_10pct: Figures<bool>,
    pub fds_before: Option<FdKinds>,
    pub fds_after: Option<FdKinds>,
    /// Why tasks are missing from the figures, when they are.
    pub tasks_note: Option<&'static str>,
    pub requests: BTreeMap<&'static str, Counts>,
    pub fault_turns: Vec<TurnRecord>,
    pub samples: Vec<Sample>,
    /// The gateway's `spillway_connections_*` lines on `/metrics` after the settle.
    pub connection_metrics: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayInfo {
    pub pid: u32,
    pub api: String,
    pub admin: Option<String>,
    /// Started by this command (`spillway serve` child) or given with `--target`.
    pub started_here: bool,
    pub nofile_limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settle {
    pub deadline_secs: f64,
    pub waited_secs: f64,
    /// Every condition met before the deadline: idle connections closed by the gateway, fds
    /// and threads back within 10%.
    pub reached: bool,
    pub idle_still_open: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figures<T> {
    pub rss: T,
    /// The anonymous part of the RSS (what the process allocated).
    pub rss_anon: T,
    /// The file-backed part (executable pages first run during the load).
    pub rss_file: T,
    pub fds: T,
    pub threads: T,
    /// tokio tasks, when the admin listener was read before and after.
    pub tasks: Option<T>,
}

fn pct(before: u64, after: u64) -> f64 {
    if before == 0 {
        return 0.0;
    }
    (after as f64 / before as f64 - 1.0) * 100.0
}

/// Whether `after` is back within [`TOLERANCE`] of `before`.
pub fn within(before: u64, after: u64) -> bool {
    after as f64 <= before as f64 * (1.0 + TOLERANCE)
}

pub fn change(before: &Sample, after: &Sample) -> (Figures<f64>, Figures<bool>) {
    (
        Figures {
            rss: pct(before.rss_kb, after.rss_kb),
            rss_anon: pct(before.rss_anon_kb, after.rss_anon_kb),
            rss_file: pct(before.rss_file_kb, after.rss_file_kb),
            fds: pct(before.fds, after.fds),
            threads: pct(before.threads, after.threads),
            tasks: before.tasks.zip(after.tasks).map(|(b, a)| pct(b, a)),
        },
        Figures {
            rss: within(before.rss_kb, after.rss_kb),
            rss_anon: within(before.rss_anon_kb, after.rss_anon_kb),
            rss_file: within(before.rss_file_kb, after.rss_file_kb),
            fds: within(before.fds, after.fds),
            threads: within(before.threads, after.threads),
            tasks: before.tasks.zip(after.tasks).map(|(b, a)| within(b, a)),
        },
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "back within 10%"
    } else {
        "NOT back within 10%"
    }
}

/// The summary table on stdout.
pub fn print(r: &Report) {
    println!();
    println!(
        "soak: {:.0} s of mixed load{} against spillway serve pid {} ({}); settle {:.1} s of at most {:.0} s{}",
        r.duration_secs,
        if r.faults_injected { " and faults" } else { "" },
        r.gateway.pid,
        r.gateway.api,
        r.settle.waited_secs,
        r.settle.deadline_secs,
        if r.settle.reached {
            ""
        } else {
            " (deadline reached)"
        }
    );
    print_figures(r);
    if let Some(note) = r.tasks_note {
        println!("tasks: {note}");
    }
    print_fd_kinds(r);
    print_requests(r);
}

/// Before, peak and after of each figure, with its change and verdict.
fn print_figures(r: &Report) {
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8}  verdict",
        "", "before", "peak", "after", "change"
    );
    let mib = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
    let rows = [
        (
            "RSS MiB",
            mib(r.before.rss_kb),
            mib(r.peak.rss_kb),
            mib(r.after.rss_kb),
            r.change_pct.rss,
            r.within_10pct.rss,
        ),
        (
            "  anon MiB",
            mib(r.before.rss_anon_kb),
            mib(r.peak.rss_anon_kb),
            mib(r.after.rss_anon_kb),
            r.change_pct.rss_anon,
            r.within_10pct.rss_anon,
        ),
        (
            "  file MiB",
            mib(r.before.rss_file_kb),
            mib(r.peak.rss_file_kb),
            mib(r.after.rss_file_kb),
            r.change_pct.rss_file,
            r.within_10pct.rss_file,
        ),
        (
            "open fds",
            r.before.fds.to_string(),
            r.peak.fds.to_string(),
            r.after.fds.to_string(),
            r.change_pct.fds,
            r.within_10pct.fds,
        ),
        (
            "threads",
            r.before.threads.to_string(),
            r.peak.threads.to_string(),
            r.after.threads.to_string(),
            r.change_pct.threads,
            r.within_10pct.threads,
        ),
    ];
    if let Some(cold) = &r.cold {
        println!(
            "{:<12} {:>10} (RSS; anon {}, file {}, fds {}, threads {}, tasks {}) before the {:.0} s warm-up; after is {:+.1}% of it",
            "cold",
            mib(cold.rss_kb),
            mib(cold.rss_anon_kb),
            mib(cold.rss_file_kb),
            cold.fds,
            cold.threads,
            cold.tasks.map_or("-".to_string(), |t| t.to_string()),
            r.warmup_secs,
            (r.after.rss_kb as f64 / cold.rss_kb.max(1) as f64 - 1.0) * 100.0
        );
    }
    for (name, b, p, a, c, ok) in rows {
        println!(
            "{name:<12} {b:>10} {p:>10} {a:>10} {c:>+7.1}%  {}",
            verdict(ok)
        );
    }
    let tasks = (r.before.tasks, r.peak.tasks, r.after.tasks);
    if let ((Some(b), Some(p), Some(a)), Some(c), Some(ok)) =
        (tasks, r.change_pct.tasks, r.within_10pct.tasks)
    {
        println!(
            "{:<12} {b:>10} {p:>10} {a:>10} {c:>+7.1}%  {}",
            "tokio tasks",
            verdict(ok)
        );
    }
}

/// The gateway's descriptors by kind, before and after.
fn print_fd_kinds(r: &Report) {
    let (Some(b), Some(a)) = (&r.fds_before, &r.fds_after) else {
        return;
    };
    println!(
        "fds by kind, before → after: listening {} → {}, clients {} → {}, upstream {} → {}, other tcp {} → {}, other {} → {}",
        b.listening,
        a.listening,
        b.clients,
        a.clients,
        b.upstream,
        a.upstream,
        b.other_tcp,
        a.other_tcp,
        b.other,
        a.other
    );
    if !r.within_10pct.fds && a.upstream > b.upstream {
        println!(
            "note: {} of the fds after are upstream connections to the simulators, idle in the gateway's HTTP client pool (it closes them after 60 s idle, on a timer, so up to about 2 minutes after the load); a longer --settle-secs waits them out",
            a.upstream - b.upstream
        );
    }
}

fn print_requests(r: &Report) {
    println!();
    println!(
        "{:<16} {:>8} {:>8} {:>10} {:>8}  notes",
        "client", "ok", "cut", "throttled", "failed"
    );
    for (kind, c) in &r.requests {
        let mut notes = Vec::new();
        if let (Some(lo), Some(hi)) = (c.cut_after_min_secs, c.cut_after_max_secs) {
            notes.push(format!("closed by the gateway after {lo:.1}–{hi:.1} s"));
        }
        for (why, n) in &c.failures {
            notes.push(format!("{n}× {why}"));
        }
        println!(
            "{kind:<16} {:>8} {:>8} {:>10} {:>8}  {}",
            c.ok,
            c.cut,
            c.throttled,
            c.failed,
            notes.join("; ")
        );
    }
    if !r.fault_turns.is_empty() {
        let turns: Vec<String> = r
            .fault_turns
            .iter()
            .map(|t| format!("{:.0}s {} {}", t.at_secs, t.fault, t.region))
            .collect();
        println!("\nfault turns: {}", turns.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_ten_percent_above_the_start() {
        assert!(within(20, 22));
        assert!(!within(20, 23));
        assert!(within(20, 10));
        let b = Sample {
            t: 0.0,
            rss_kb: 1000,
            rss_anon_kb: 600,
            rss_file_kb: 400,
            fds: 20,
            threads: 10,
            tasks: Some(40),
        };
        let a = Sample {
            t: 1.0,
            rss_kb: 1500,
            rss_anon_kb: 620,
            rss_file_kb: 880,
            fds: 21,
            threads: 10,
            tasks: Some(60),
        };
        let (c, w) = change(&b, &a);
        assert!((c.rss - 50.0).abs() < 1e-9 && (c.fds - 5.0).abs() < 1e-9);
        assert!(!w.rss && w.fds && w.threads);
        assert!(w.rss_anon && !w.rss_file);
        assert_eq!((c.tasks, w.tasks), (Some(50.0), Some(false)));
        let (c, w) = change(&Sample { tasks: None, ..b }, &a);
        assert_eq!((c.tasks, w.tasks), (None, None));
    }
}

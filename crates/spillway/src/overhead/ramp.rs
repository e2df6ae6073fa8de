//! The max-rps ramp of the gateway path (see the parent module's docs).
use std::time::Duration;

use serde::Serialize;
use spillway_bench::overhead::{self as load, Bytes, Load, Outcome, Stats};

use super::{Case, Plan};

/// One ramp step of the gateway path.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    rps: f64,
    passed: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    #[serde(flatten)]
    stats: Stats,
}

/// The max-rps ramp of the gateway path: doubling from `--rps`, then bisection. Returns the
/// highest passing rate (0 when none passed), whether that is just the ramp's ceiling, and
/// every step.
pub async fn ramp(
    client: &load::Client,
    plan: &Plan,
    case: Case,
    body: &Bytes,
    sim: &spillway_sim::SimHandle,
    p99_bound_ms: f64,
) -> (f64, bool, Vec<RampStep>) {
    if plan.args.ramp_max_rps <= 0.0 {
        return (0.0, false, Vec::new());
    }
    // Every request outstanding through the gateway holds four sockets of this process (the
    // client's, the gateway's two, the simulator's); stay clear of the open-files limit.
    let fd_budget = open_files_limit().unwrap_or(1024).saturating_sub(1024) / 4;
    let mut r = Ramp {
        client,
        plan,
        case,
        body,
        sim,
        p99_bound_ms,
        fd_budget,
        steps: Vec::new(),
    };
    let (good, bad) = r.double().await;
    let (good, bad) = r.bisect(good, bad).await;
    let max = good.unwrap_or(0.0);
    (max, bad.is_none() && max > 0.0, r.steps)
}

/// One ramp in progress: what each step sends, and the steps so far.
struct Ramp<'a> {
    client: &'a load::Client,
    plan: &'a Plan,
    case: Case,
    body: &'a Bytes,
    sim: &'a spillway_sim::SimHandle,
    p99_bound_ms: f64,
    /// Requests the open-files limit lets be outstanding.
    fd_budget: usize,
    steps: Vec<RampStep>,
}

impl Ramp<'_> {
    /// Doubling from `--rps` until a step fails or one at the ceiling passes (halving instead
    /// while nothing has passed, until a rate below 20 requests/s fails): the last passing and
    /// the last failing rate, if any.
    async fn double(&mut self) -> (Option<f64>, Option<f64>) {
        let args = &self.plan.args;
        let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
        let mut rate = args.rps.min(args.ramp_max_rps);
        loop {
            if self.step(rate).await {
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
        (good, bad)
    }

    /// Up to `--ramp-bisect` steps halfway (rounded to 10 requests/s) between the passing and
    /// the failing rate, while they are more than 5% apart.
    async fn bisect(
        &mut self,
        mut good: Option<f64>,
        mut bad: Option<f64>,
    ) -> (Option<f64>, Option<f64>) {
        for _ in 0..self.plan.args.ramp_bisect {
            let (lo, hi) = (good.unwrap_or(0.0), bad.unwrap_or(0.0));
            let mid = ((lo + hi) / 2.0 / 10.0).round() * 10.0;
            if bad.is_none() || hi - lo < 0.05 * hi || mid <= lo || mid >= hi {
                break;
            }
            if self.step(mid).await {
                good = Some(mid);
            } else {
                bad = Some(mid);
            }
        }
        (good, bad)
    }

    /// One step at `rps`: whether it passed. A failed step is run again once unless it was
    /// plainly overloaded: one stall of the shared machine (another process, a page-cache
    /// flush) can fail a 3 s step on its own.
    async fn step(&mut self, rps: f64) -> bool {
        for attempt in 0..2 {
            let (passed, overloaded) = self.attempt(rps, attempt).await;
            // Let the backlog of a failed step drain before the next one.
            tokio::time::sleep(Duration::from_millis(if passed { 200 } else { 1000 })).await;
            if passed || overloaded {
                return passed;
            }
        }
        false
    }

    /// One run of a step, judged, printed and recorded: whether it passed, and whether the
    /// generator stopped because it was overloaded.
    async fn attempt(&mut self, rps: f64, attempt: u64) -> (bool, bool) {
        let l = Load {
            endpoints: vec![self.plan.gateway.clone()],
            rps,
            duration: Duration::from_secs_f64(self.plan.args.ramp_seconds),
            body: self.body.clone(),
            stream: self.case.stream(),
            timeout: Duration::from_secs(5),
            // More than a second's worth outstanding: the machine is not keeping up.
            max_outstanding: Some((rps as usize).max(100).min(self.fd_budget.max(16))),
            seed: rps.to_bits() ^ attempt,
        };
        // A fresh client each step: the idle connections of a faster step before it would
        // otherwise hold sockets (and the gateway's side of them) through this one.
        let fresh = load::client(4096);
        let out = load::run(fresh.as_ref().unwrap_or(self.client), &l).await;
        drop(fresh);
        self.sim.clear_served();
        let s = ramp_step(rps, &out, self.p99_bound_ms);
        eprintln!(
            "  {:<14} ramp {:>7.0} requests/s: p99 {:>8.3} ms from due time, errors {:>5} {}",
            self.case.name(),
            rps,
            s.stats.p99_from_schedule_ms,
            s.stats.errors,
            match &s.failure {
                None => "pass".to_string(),
                Some(why) => format!("FAIL ({why})"),
            }
        );
        let result = (s.passed, out.aborted);
        self.steps.push(s);
        result
    }
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

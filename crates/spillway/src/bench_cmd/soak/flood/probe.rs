//! Probes during the flood: a request on a fresh connection every `every`, each on a task of
//! its own (so one that hangs does not delay the next), each judged by its status within a
//! timeout.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::super::http::{self, io_reason};

/// One probe: when it started and ended (seconds from the flood's start), whether it got 200,
/// how long it took, and why not.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub t: f64,
    pub end: f64,
    pub ok: bool,
    pub ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

pub struct Prober {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    results: Arc<Mutex<Vec<Probe>>>,
}

impl Prober {
    /// Sends `req` to `addr` every `every` until [`Prober::finish`].
    pub fn start(
        addr: SocketAddr,
        req: Vec<u8>,
        every: Duration,
        timeout: Duration,
        t0: Instant,
    ) -> Prober {
        let (stop, mut rx) = watch::channel(false);
        let results = Arc::new(Mutex::new(Vec::new()));
        let out = results.clone();
        let req = Arc::new(req);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut running = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.wait_for(|s| *s) => break,
                }
                let (req, out) = (req.clone(), out.clone());
                running.spawn(async move {
                    let start = Instant::now();
                    let r = http::exchange(addr, &req, timeout).await;
                    let (ok, why) = match r {
                        Ok((200, _)) => (true, None),
                        Ok((s, _)) => (false, Some(format!("status {s}"))),
                        Err(e) => (false, Some(io_reason(&e))),
                    };
                    let p = Probe {
                        t: secs_from(t0, start),
                        end: secs_from(t0, Instant::now()),
                        ok,
                        ms: start.elapsed().as_secs_f64() * 1000.0,
                        why,
                    };
                    out.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                });
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        });
        Prober {
            stop,
            task,
            results,
        }
    }

    /// Probes that ended in `[from, to)` seconds: (ok, failed).
    pub fn window(&self, from: f64, to: f64) -> (u64, u64) {
        let r = self.results.lock().unwrap_or_else(|e| e.into_inner());
        r.iter()
            .filter(|p| p.end >= from && p.end < to)
            .fold(
                (0, 0),
                |(ok, bad), p| if p.ok { (ok + 1, bad) } else { (ok, bad + 1) },
            )
    }

    /// Stops (probes in flight finish) and returns every probe in start order.
    pub async fn finish(self) -> Vec<Probe> {
        self.stop.send_replace(true);
        let _ = self.task.await;
        let mut v = std::mem::take(&mut *self.results.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_by(|a, b| a.t.total_cmp(&b.t));
        v
    }
}

/// Seconds from `t0` to `t`, negative before it.
pub fn secs_from(t0: Instant, t: Instant) -> f64 {
    if t >= t0 {
        (t - t0).as_secs_f64()
    } else {
        -(t0 - t).as_secs_f64()
    }
}

/// What a series of probes shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeSummary {
    pub probes: u64,
    pub ok: u64,
    pub failed: u64,
    /// Start of the first and of the last failing probe (seconds from the flood's start).
    pub first_failure_secs: Option<f64>,
    pub last_failure_secs: Option<f64>,
    /// Start of the first successful probe after the last failure.
    pub recovered_at_secs: Option<f64>,
    /// The longest stretch from a failing probe to the next successful one.
    pub longest_outage_secs: f64,
    pub max_ms: f64,
    pub failures: BTreeMap<String, u64>,
}

pub fn summarize(probes: &[Probe]) -> ProbeSummary {
    let mut s = ProbeSummary::default();
    let mut outage_from: Option<f64> = None;
    for p in probes {
        s.probes += 1;
        s.max_ms = s.max_ms.max(p.ms);
        if p.ok {
            s.ok += 1;
            if let Some(from) = outage_from.take() {
                s.longest_outage_secs = s.longest_outage_secs.max(p.t - from);
            }
            if s.last_failure_secs.is_some() && s.recovered_at_secs.is_none() {
                s.recovered_at_secs = Some(p.t);
            }
            continue;
        }
        s.failed += 1;
        s.first_failure_secs.get_or_insert(p.t);
        s.last_failure_secs = Some(p.t);
        s.recovered_at_secs = None;
        outage_from.get_or_insert(p.t);
        *s.failures
            .entry(p.why.clone().unwrap_or_default())
            .or_default() += 1;
    }
    if let (Some(from), Some(last)) = (outage_from, probes.last()) {
        s.longest_outage_secs = s.longest_outage_secs.max(last.t - from);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f64, ok: bool) -> Probe {
        Probe {
            t,
            end: t + 0.001,
            ok,
            ms: 1.0,
            why: (!ok).then(|| "x".into()),
        }
    }

    #[test]
    fn outages_and_recovery() {
        let s = summarize(&[
            p(0.0, true),
            p(1.0, false),
            p(2.0, false),
            p(3.0, true),
            p(4.0, false),
            p(4.5, true),
        ]);
        assert_eq!((s.probes, s.ok, s.failed), (6, 3, 3));
        assert_eq!(s.first_failure_secs, Some(1.0));
        assert_eq!(s.last_failure_secs, Some(4.0));
        assert_eq!(s.recovered_at_secs, Some(4.5));
        assert_eq!(s.longest_outage_secs, 2.0);
        let never = summarize(&[p(0.0, true), p(1.0, false), p(5.0, false)]);
        assert_eq!(
            (never.recovered_at_secs, never.longest_outage_secs),
            (None, 4.0)
        );
    }
}

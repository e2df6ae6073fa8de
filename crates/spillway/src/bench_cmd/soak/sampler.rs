//! Reads the gateway process every second for the peak, and keeps a sample every
//! `--sample-secs` for the report.
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::load::Running;
use super::procfs::{self, Sample};

pub struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    kept: Arc<Mutex<Vec<Sample>>>,
    peak: Arc<Mutex<Sample>>,
    latest: Arc<Mutex<Option<Sample>>>,
    started: Instant,
}

impl Sampler {
    /// Reads `pid` from `/proc`, and its tokio tasks from `admin` when given.
    pub fn start(
        pid: u32,
        admin: Option<std::net::SocketAddr>,
        started: Instant,
        every: Duration,
    ) -> Sampler {
        let (stop, mut stop_rx) = watch::channel(false);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(Mutex::new(Sample::default()));
        let latest = Arc::new(Mutex::new(None));
        let (k, p, l) = (kept.clone(), peak.clone(), latest.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1).min(every));
            let mut next_kept = started;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
                let Some(mut s) = procfs::sample(pid, started.elapsed().as_secs_f64()) else {
                    continue;
                };
                s.tasks = super::http::runtime_tasks(admin).await;
                let mut pk = p.lock().unwrap_or_else(|e| e.into_inner());
                *pk = procfs::peak([&*pk, &s]);
                *l.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                if Instant::now() >= next_kept {
                    k.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    next_kept += every;
                }
            }
        });
        Sampler {
            stop,
            task,
            kept,
            peak,
            latest,
            started,
        }
    }

    /// One progress line on stderr: the latest reading and the clients' counts so far.
    pub fn progress(&self, load: &Running) {
        let latest = *self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = latest else { return };
        let (mut ok, mut cut, mut throttled, mut failed) = (0, 0, 0, 0);
        for (_, c) in load.tally.snapshot() {
            (ok, cut, throttled, failed) = (
                ok + c.ok,
                cut + c.cut,
                throttled + c.throttled,
                failed + c.failed,
            );
        }
        eprintln!(
            "  t={:>5.0}s  RSS {:>7.1} MiB  fds {:>5}  threads {:>3}  tasks {:>5}  |  ok {ok}  cut {cut}  throttled {throttled}  failed {failed}  idle open {}",
            self.started.elapsed().as_secs_f64(),
            s.rss_kb as f64 / 1024.0,
            s.fds,
            s.threads,
            s.tasks.map_or("-".to_string(), |t| t.to_string()),
            load.idle_open.load(Ordering::Relaxed)
        );
    }

    /// Stops; the kept samples and the peak of every reading.
    pub async fn finish(self) -> (Vec<Sample>, Sample) {
        self.stop.send_replace(true);
        let _ = self.task.await;
        let kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        let peak = *self.peak.lock().unwrap_or_else(|e| e.into_inner());
        (kept, peak)
    }
}

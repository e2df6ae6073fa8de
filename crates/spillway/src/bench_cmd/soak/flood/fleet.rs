//! The flood's generator processes: started with their share of connections and a local
//! address each (127.0.0.2, 127.0.0.3, …), their count lines read as they come, and stopped
//! together.
//!
//! Each runs under `prlimit --nofile=H:H` with H this process's hard limit, so that it may open
//! as many descriptors as the machine lets an unprivileged process have.
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::FloodArgs;
use super::worker::parse_line;

/// The flood's totals when it stopped.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub workers: usize,
    pub opened: u64,
    pub closed_by_gateway: u64,
    pub connect_timed_out: u64,
    pub connect_refused: u64,
    pub connect_other_error: u64,
}

impl Totals {
    /// As the generators' lines count: opened, closed, timed out, refused, other.
    pub fn counts(&self) -> [u64; 5] {
        [
            self.opened,
            self.closed_by_gateway,
            self.connect_timed_out,
            self.connect_refused,
            self.connect_other_error,
        ]
    }
}

pub struct Fleet {
    children: Vec<Child>,
    counts: Vec<Arc<Mutex<[u64; 5]>>>,
}

/// The hard `Max open files` of this process.
fn hard_nofile() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Fleet {
    pub fn start(args: &FloodArgs, target: SocketAddr) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe()?;
        let per = args.per_worker.max(1);
        let workers = args.connections.div_ceil(per);
        anyhow::ensure!(
            workers <= 250,
            "--connections / --per-worker: at most 250 workers"
        );
        let hard = hard_nofile().context("reading this process's descriptor limit")?;
        let mut fleet = Fleet {
            children: Vec::new(),
            counts: Vec::new(),
        };
        for k in 0..workers {
            let n = per.min(args.connections - k * per);
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k as u8));
            let mut child = Command::new("prlimit")
                .arg(format!("--nofile={hard}:{hard}"))
                .arg("--")
                .arg(&exe)
                .args(["bench", "flood", "--worker"])
                .args([
                    "--target",
                    &target.to_string(),
                    "--local-ip",
                    &ip.to_string(),
                ])
                .args([
                    "--connections",
                    &n.to_string(),
                    "--per-worker",
                    &n.to_string(),
                ])
                .args(["--concurrency", &args.concurrency.to_string()])
                .args(["--connect-timeout-ms", &args.connect_timeout_ms.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting a flood generator")?;
            let stdout = child.stdout.take().context("a generator's stdout")?;
            let counts = Arc::new(Mutex::new([0u64; 5]));
            let c = counts.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(v) = parse_line(&line) {
                        *c.lock().unwrap_or_else(|e| e.into_inner()) = v;
                    }
                }
            });
            fleet.children.push(child);
            fleet.counts.push(counts);
        }
        Ok(fleet)
    }

    /// Summed over the generators: opened, closed by the gateway, timed out, refused, other.
    pub fn counts(&self) -> [u64; 5] {
        let mut sum = [0u64; 5];
        for c in &self.counts {
            let v = *c.lock().unwrap_or_else(|e| e.into_inner());
            for (s, x) in sum.iter_mut().zip(v) {
                *s += x;
            }
        }
        sum
    }

    /// Tells every generator to close its connections and exit; waits (killing any that takes
    /// over 30 s).
    pub async fn stop(mut self) -> Totals {
        for c in &mut self.children {
            if let Some(mut stdin) = c.stdin.take() {
                let _ = stdin.write_all(b"stop\n");
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for c in &mut self.children {
            while matches!(c.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        // The reader threads have the final lines once the pipes close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let [opened, closed, timeout, refused, other] = self.counts();
        Totals {
            workers: self.children.len(),
            opened,
            closed_by_gateway: closed,
            connect_timed_out: timeout,
            connect_refused: refused,
            connect_other_error: other,
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

//! The client processes of `spillway bench streams`: started with their share of the streams,
//! their count lines read as they come, their results gathered when they exit.
//!
//! Each runs under `prlimit --nofile=H:H` with H this process's hard limit.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use super::StreamsArgs;
use super::worker::{Counts, RESULT_PREFIX, WorkerResult, parse_counts};

/// What one client process said so far.
#[derive(Default)]
struct Heard {
    counts: Counts,
    result: Option<WorkerResult>,
}

pub struct Fleet {
    children: Vec<Child>,
    heard: Vec<Arc<Mutex<Heard>>>,
}

/// The shares of `streams` among processes of at most `per` each.
pub fn shares(streams: usize, per: usize) -> Vec<usize> {
    let per = per.max(1);
    (0..streams.div_ceil(per))
        .map(|k| per.min(streams - k * per))
        .collect()
}

impl Fleet {
    pub fn start(
        args: &StreamsArgs,
        target: SocketAddr,
        hard_nofile: u64,
    ) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe()?;
        let mut fleet = Fleet {
            children: Vec::new(),
            heard: Vec::new(),
        };
        for n in shares(args.streams, args.per_worker) {
            let mut child = Command::new("prlimit")
                .arg(format!("--nofile={hard_nofile}:{hard_nofile}"))
                .arg("--")
                .arg(&exe)
                .args(["bench", "streams", "--worker"])
                .args(["--target", &target.to_string()])
                .args(["--streams", &n.to_string()])
                .args(["--max-tokens", &args.max_tokens.to_string()])
                .args(["--ramp-secs", &args.ramp_secs.to_string()])
                .args(["--connects", &args.connects.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting a stream client process")?;
            let stdout = child.stdout.take().context("a client process's stdout")?;
            let heard = Arc::new(Mutex::new(Heard::default()));
            let h = heard.clone();
            std::thread::spawn(move || listen(stdout, &h));
            fleet.children.push(child);
            fleet.heard.push(heard);
        }
        Ok(fleet)
    }

    /// Summed over the processes: started, opened, first chunk, done, failed, failed before a
    /// first chunk.
    pub fn counts(&self) -> Counts {
        let mut sum = [0u64; 6];
        for h in &self.heard {
            let c = h.lock().unwrap_or_else(|e| e.into_inner()).counts;
            for (s, x) in sum.iter_mut().zip(c) {
                *s += x;
            }
        }
        sum
    }

    /// Whether every process has exited.
    pub fn finished(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (at most `timeout`) for every process to exit, and merges their results.
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<WorkerResult> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.finished() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the stream clients did not finish within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut all = WorkerResult::default();
        for (k, (c, h)) in self.children.iter_mut().zip(&self.heard).enumerate() {
            let status = c.wait()?;
            let r = wait_result(h, Duration::from_secs(5))
                .await
                .with_context(|| {
                    format!("client process {k} exited ({status}) without its result")
                })?;
            all.ok += r.ok;
            all.first_chunk_ms.extend(r.first_chunk_ms);
            for (why, n) in r.failures {
                *all.failures.entry(why).or_default() += n;
            }
            for (region, n) in r.regions {
                *all.regions.entry(region).or_default() += n;
            }
        }
        Ok(all)
    }
}

/// The result line, once the reader thread has it (the pipe may close after the exit).
async fn wait_result(h: &Mutex<Heard>, timeout: Duration) -> Option<WorkerResult> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(r) = h.lock().unwrap_or_else(|e| e.into_inner()).result.take() {
            return Some(r);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listen(stdout: std::process::ChildStdout, heard: &Mutex<Heard>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut h = heard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = parse_counts(&line) {
            h.counts = c;
        } else if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
            h.result = serde_json::from_str(json).ok();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_are_shared_out() {
        assert_eq!(shares(10_000, 10_000), vec![10_000]);
        assert_eq!(shares(10_001, 5_000), vec![5_000, 5_000, 1]);
        assert_eq!(shares(50, 10_000), vec![50]);
        assert!(shares(0, 10).is_empty());
    }
}

//! One flood generator process (`spillway bench flood --worker`): opens its share of idle
//! connections from one local address and holds each until the gateway closes it or it is
//! told to stop (a line `stop` or EOF on stdin). Every 250 ms it prints its counts on stdout:
//! `flood opened=A closed=C timeout=T refused=R other=O`.
//!
//! A process of its own because one process's descriptor limit (here 20,000, hard) is less
//! than the 30,000 connections asked for; a local address of its own because one (source
//! address, destination) pair has at most as many ports as `ip_local_port_range` gives
//! (28,232 by default).
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, watch};

/// What the worker has done so far.
#[derive(Debug, Default)]
struct Counts {
    opened: AtomicU64,
    closed: AtomicU64,
    timeout: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "flood opened={} closed={} timeout={} refused={} other={}",
            g(&self.opened),
            g(&self.closed),
            g(&self.timeout),
            g(&self.refused),
            g(&self.other)
        )
    }
}

/// What a worker is told to do.
pub struct WorkerSpec {
    pub target: SocketAddr,
    pub local_ip: IpAddr,
    pub connections: usize,
    pub concurrency: usize,
    pub connect_timeout: Duration,
}

pub async fn run(spec: WorkerSpec) -> anyhow::Result<()> {
    let limit = super::super::gateway::nofile_limit(std::process::id()).unwrap_or(0);
    anyhow::ensure!(
        limit as usize >= spec.connections + spec.concurrency + 64,
        "this process may open {limit} files, too few for {} connections: raise it (ulimit -n) or lower --per-worker",
        spec.connections
    );
    let counts = Arc::new(Counts::default());
    let (stop, stop_rx) = watch::channel(false);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() != "stop" => continue,
                _ => break,
            }
        }
        stop.send_replace(true);
    });
    let printer = {
        let (c, mut rx) = (counts.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => println!("{}", c.line()),
                    _ = rx.wait_for(|s| *s) => return,
                }
            }
        })
    };
    open_all(&spec, &counts, stop_rx.clone()).await;
    let mut rx = stop_rx;
    let _ = rx.wait_for(|s| *s).await;
    printer.abort();
    // Let the holders see the stop and drop their sockets.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("{}", counts.line());
    Ok(())
}

/// Opens `spec.connections`, at most `spec.concurrency` connects at a time, each held by a
/// task of its own; returns when every connect has ended (or at stop).
async fn open_all(spec: &WorkerSpec, counts: &Arc<Counts>, stop: watch::Receiver<bool>) {
    let gate = Arc::new(Semaphore::new(spec.concurrency));
    for _ in 0..spec.connections {
        if *stop.borrow() {
            return;
        }
        let Ok(permit) = gate.clone().acquire_owned().await else {
            return;
        };
        let (counts, stop) = (counts.clone(), stop.clone());
        let (target, local, timeout) = (spec.target, spec.local_ip, spec.connect_timeout);
        tokio::spawn(async move {
            let connected = tokio::time::timeout(timeout, connect(local, target)).await;
            drop(permit);
            match connected {
                Ok(Ok(s)) => {
                    counts.opened.fetch_add(1, Ordering::Relaxed);
                    hold(s, &counts, stop).await;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(_)) => {
                    counts.other.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counts.timeout.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Every connect has ended when every permit is back.
    let _ = gate.acquire_many(spec.concurrency as u32).await;
}

async fn connect(local: IpAddr, target: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match local {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(target).await
}

/// Holds `s` without sending anything until the gateway closes it (counted) or stop.
async fn hold(mut s: tokio::net::TcpStream, counts: &Counts, mut stop: watch::Receiver<bool>) {
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    counts.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Parses a worker's line into (opened, closed, timeout, refused, other).
pub fn parse_line(line: &str) -> Option<[u64; 5]> {
    let rest = line.strip_prefix("flood ")?;
    let mut out = [0u64; 5];
    for (i, kv) in rest.split_whitespace().enumerate() {
        *out.get_mut(i)? = kv.split_once('=')?.1.parse().ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips() {
        let c = Counts::default();
        c.opened.store(5, Ordering::Relaxed);
        c.other.store(2, Ordering::Relaxed);
        assert_eq!(parse_line(&c.line()), Some([5, 0, 0, 0, 2]));
        assert_eq!(parse_line("spillway: x"), None);
    }
}

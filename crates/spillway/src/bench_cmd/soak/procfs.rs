//! What another process holds, read from `/proc/PID` (Linux): resident memory (`VmRSS`), open
//! file descriptors (the entries of `/proc/PID/fd`) and threads (`Threads`), and which of its
//! descriptors are TCP sockets on which ports, so that a count that has not come back can be
//! explained (client connections, upstream keep-alive, listeners).
//!
//! The process's tokio tasks cannot be seen from outside it: the gateway exports their count
//! on its admin listener (`spillway_runtime_tasks`), which `http::runtime_tasks` reads.
use std::collections::HashMap;

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started (negative: before the load).
    pub t: f64,
    pub rss_kb: u64,
    /// The anonymous part of the RSS (heap, stacks): what the process allocated.
    pub rss_anon_kb: u64,
    /// The file-backed part (the executable's pages as they are first run, shared libraries):
    /// grows once as code paths are first used, and the kernel may drop it under pressure.
    pub rss_file_kb: u64,
    pub fds: u64,
    pub threads: u64,
    /// tokio tasks alive in the gateway (`spillway_runtime_tasks` on its admin listener);
    /// `None` without an admin address or when it did not answer.
    pub tasks: Option<u64>,
}

/// Reads `pid` now; `None` when the process is gone or `/proc` is not readable.
pub fn sample(pid: u32, t: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        t,
        rss_kb: field("VmRSS:")?,
        rss_anon_kb: field("RssAnon:").unwrap_or(0),
        rss_file_kb: field("RssFile:").unwrap_or(0),
        fds,
        threads: field("Threads:")?,
        tasks: None,
    })
}

/// The largest of each figure over `samples` (each figure on its own).
pub fn peak<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Sample {
    samples.into_iter().fold(Sample::default(), |p, s| Sample {
        t: p.t.max(s.t),
        rss_kb: p.rss_kb.max(s.rss_kb),
        rss_anon_kb: p.rss_anon_kb.max(s.rss_anon_kb),
        rss_file_kb: p.rss_file_kb.max(s.rss_file_kb),
        fds: p.fds.max(s.fds),
        threads: p.threads.max(s.threads),
        tasks: p.tasks.max(s.tasks),
    })
}

/// A process's descriptors by what they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FdKinds {
    /// TCP sockets in LISTEN state.
    pub listening: u64,
    /// Connections whose local port is one of the `serving` ports (clients of the process).
    pub clients: u64,
    /// Connections whose remote port is one of the `upstream` ports (the process as a client).
    pub upstream: u64,
    /// Other TCP connections.
    pub other_tcp: u64,
    /// Everything else: files, pipes, epoll, eventfd, non-TCP sockets.
    pub other: u64,
}

/// Sorts `pid`'s descriptors: connections on `serving` ports are its clients, connections to
/// `upstream` ports its upstream connections. `None` when `/proc` is not readable.
pub fn fd_kinds(pid: u32, serving: &[u16], upstream: &[u16]) -> Option<FdKinds> {
    let sockets = tcp_sockets(pid);
    let mut k = FdKinds::default();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        let link = link.to_string_lossy();
        let inode = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok());
        match inode.and_then(|i| sockets.get(&i)) {
            Some(s) if s.listening => k.listening += 1,
            Some(s) if serving.contains(&s.local_port) => k.clients += 1,
            Some(s) if upstream.contains(&s.remote_port) => k.upstream += 1,
            Some(_) => k.other_tcp += 1,
            None => k.other += 1,
        }
    }
    Some(k)
}

struct TcpSocket {
    local_port: u16,
    remote_port: u16,
    listening: bool,
}

/// The TCP sockets of `pid`'s network namespace by inode (`/proc/PID/net/tcp` and `tcp6`).
fn tcp_sockets(pid: u32) -> HashMap<u64, TcpSocket> {
    let mut out = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some((inode, s)) = parse_tcp_line(line) {
                out.insert(inode, s);
            }
        }
    }
    out
}

/// One line of `/proc/net/tcp`: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`,
/// addresses as `HEXIP:HEXPORT`, state `0A` is LISTEN.
fn parse_tcp_line(line: &str) -> Option<(u64, TcpSocket)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
    let socket = TcpSocket {
        local_port: port(f.get(1)?)?,
        remote_port: port(f.get(2)?)?,
        listening: *f.get(3)? == "0A",
    };
    Some((f.get(9)?.parse().ok()?, socket))
}

/// The kernel's `TcpExt` counters `ListenOverflows` and `ListenDrops` (`/proc/net/netstat`,
/// for the whole network namespace): handshakes dropped because a listener's accept queue was
/// full. The client of such a connection may believe it is established; the server never sees
/// it.
pub fn listen_overflows() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let pairs: Vec<(&str, &str)> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| *n == k)?.1.parse().ok();
    Some((get("ListenOverflows")?, get("ListenDrops")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id(), 0.0).expect("/proc/self");
        assert!(s.rss_kb > 0 && s.fds > 0 && s.threads > 0, "{s:?}");
    }

    #[test]
    fn reads_the_listen_counters() {
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn parses_a_tcp_table_line() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        let (inode, s) = parse_tcp_line(line).expect("a line");
        assert_eq!(inode, 123_456);
        assert_eq!((s.local_port, s.remote_port, s.listening), (8080, 0, true));
    }

    #[test]
    fn sorts_this_processes_sockets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (s, _) = l.accept().expect("accept");
        let k = fd_kinds(std::process::id(), &[port], &[]).expect("/proc/self");
        assert!(k.listening >= 1, "{k:?}");
        // The accepted side has the local port; the connecting side has it as its remote port.
        assert!(k.clients >= 1 && k.other_tcp >= 1, "{k:?}");
        drop((c, s));
    }
}

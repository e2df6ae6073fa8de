//! A real `redis-server` per test: started as a child process on a free loopback port (no
//! persistence), killed on drop. A missing binary fails the test with a clear message: CI
//! installs it (`.ci/run`), nothing is skipped. [`RedisCluster`]: three such servers with
//! `--cluster-enabled yes`, joined by `redis-cli --cluster create`.
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// More `redis-server` arguments (kept for restarts).
    extra: Vec<String>,
}

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts `redis-server` on a free port, retrying with another port if that one was taken.
    pub fn start() -> RedisServer {
        RedisServer::start_with(|_| Vec::new())
    }

    /// Like [`RedisServer::start`], with more arguments (given the port).
    pub fn start_with(extra: impl Fn(u16) -> Vec<String>) -> RedisServer {
        for _ in 0..10 {
            let port = free_port();
            let extra = extra(port);
            if let Some(child) = spawn(port, &extra) {
                return RedisServer {
                    port,
                    child: Some(child),
                    extra,
                };
            }
        }
        panic!("redis-server did not come up on any of 10 free ports");
    }

    /// A server that is not running yet, on a port that was free (start it with `restart`).
    pub fn not_started() -> RedisServer {
        RedisServer {
            port: free_port(),
            child: None,
            extra: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait until the port refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start (again) on the same port: empty, as a restarted Redis without persistence is.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = spawn(self.port, &self.extra) {
                self.child = Some(c);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One command over a fresh connection, in RESP; returns the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).expect("write to redis");
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).expect("read from redis");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawn on `port` and wait until it answers PING; `None` if it exited (port taken).
fn spawn(port: u16, extra: &[String]) -> Option<Child> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "redis-server is not installed (not on PATH); these tests need a real one: \
             apt-get install -y redis-server (.ci/run does this)"
        ),
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if ping(port, child.id()) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The server on `port` answers, and it is ours (its process id is `pid`).
fn ping(port: u16, pid: u32) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    if s.write_all(b"INFO server\r\n").is_err() {
        return false;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let Ok(n) = s.read(&mut buf) else {
        return false;
    };
    String::from_utf8_lossy(&buf[..n]).contains(&format!("process_id:{pid}\r\n"))
}

/// A Redis Cluster of three primaries without replicas, each a [`RedisServer`] on a free port,
/// its cluster state in a temporary directory removed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` and waits until every
    /// node reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "spillway-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(|port| {
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.join(format!("nodes-{port}.conf")).display().to_string(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                        "--dir".into(),
                        dir.display().to_string(),
                    ]
                })
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli (installed with redis-server): {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &cluster.nodes {
            while !n.command(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// One seed URL per node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node holding `key` (by asking each whether it owns the key's slot).
    pub fn owner(&self, key: &str) -> &RedisServer {
        &self.nodes[self.owner_ix(key)]
    }

    /// The index in `nodes` of the node holding `key`.
    pub fn owner_ix(&self, key: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| !n.command(&["EXISTS", key]).starts_with("-MOVED"))
            .expect("some node owns every slot")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

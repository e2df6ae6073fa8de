//! A real `redis-server` for a test: a child process on a free loopback port (no persistence),
//! killed on drop. A missing binary fails the test with a clear message: CI installs it
//! (`.ci/run`), nothing is skipped. (The minimal part of the gateway tests' `redis_support`.)
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    child: Child,
}

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts `redis-server` on a free port, retrying with another port if that one was taken.
    pub fn start() -> RedisServer {
        for _ in 0..10 {
            let port = free_port();
            if let Some(child) = spawn(port) {
                return RedisServer { port, child };
            }
        }
        panic!("redis-server did not come up on any of 10 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn on `port` and wait until it answers; `None` if it exited (port taken).
fn spawn(port: u16) -> Option<Child> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
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
        if ours(port, child.id()) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The server on `port` answers, and it is ours (its process id is `pid`).
fn ours(port: u16, pid: u32) -> bool {
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

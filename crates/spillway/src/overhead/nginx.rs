//! nginx for `bench overhead`'s reference comparison: a static mock of the OpenAI API (the
//! upstream of every path) and a plain reverse proxy in front of it, each its own nginx
//! process under a private prefix directory, killed when dropped.
//!
//! nginx cannot report a port it chose, so a free port is found by binding `127.0.0.1:0` and
//! letting it go just before nginx starts; a start that loses the race is retried.
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The mock's whole answer: a chat completion with usage, as an OpenAI-compatible server
/// sends it (no single quote: it sits in a single-quoted nginx string).
pub const MOCK_ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":32,"completion_tokens":8,"total_tokens":40}}"#;

/// A running nginx, stopped (and its prefix removed) on drop.
pub struct Nginx {
    child: Child,
    prefix: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers and then exits; SIGKILL only if it has
    /// not exited within [`STOP_GRACE`]. (A SIGKILL first would leave the workers running,
    /// orphaned, still holding the port and the cores.)
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// How long nginx may take to stop its workers and exit.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// `name` on `PATH`, if there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What an nginx serves.
pub enum Role<'a> {
    /// `return 200` of [`MOCK_ANSWER`] to any request.
    Mock,
    /// `proxy_pass` to this upstream over kept-alive HTTP/1.1 connections.
    Proxy(&'a SocketAddr),
}

/// Start nginx `binary` in `role`, with `worker_processes auto` (one per core, its default
/// advice), and wait until it accepts connections.
pub fn start(binary: &Path, role: Role<'_>, tag: &str) -> anyhow::Result<Nginx> {
    let mut last = None;
    for _ in 0..5 {
        match try_start(binary, &role, tag) {
            Ok(n) => return Ok(n),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("nginx did not start")))
}

fn try_start(binary: &Path, role: &Role<'_>, tag: &str) -> anyhow::Result<Nginx> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let prefix = std::env::temp_dir().join(format!(
        "spillway-bench-nginx-{}-{tag}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(prefix.join("tmp"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config(&prefix, addr, role))?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut nginx = Nginx {
        child,
        prefix,
        addr,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(nginx);
        }
        if let Some(status) = nginx.child.try_wait()? {
            let log = std::fs::read_to_string(nginx.prefix.join("error.log")).unwrap_or_default();
            bail!("nginx exited ({status}): {}", log.trim());
        }
        if Instant::now() > deadline {
            bail!("nginx did not listen on {addr} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(prefix: &Path, addr: SocketAddr, role: &Role<'_>) -> String {
    let p = prefix.display();
    let (upstream, location) = match role {
        Role::Mock => (
            String::new(),
            format!("default_type application/json;\n            return 200 '{MOCK_ANSWER}';"),
        ),
        Role::Proxy(up) => (
            format!("upstream mock {{ server {up}; keepalive 256; keepalive_requests 1000000; }}"),
            "proxy_pass http://mock;\n            proxy_http_version 1.1;\n            \
             proxy_set_header Connection \"\";"
                .to_string(),
        ),
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes auto;\npid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n    access_log off;\n    keepalive_requests 1000000;\n    \
         client_body_temp_path {p}/tmp/body;\n    proxy_temp_path {p}/tmp/proxy;\n    \
         fastcgi_temp_path {p}/tmp/fastcgi;\n    uwsgi_temp_path {p}/tmp/uwsgi;\n    \
         scgi_temp_path {p}/tmp/scgi;\n    {upstream}\n    \
         server {{\n        listen {addr};\n        location / {{\n            {location}\n        }}\n    }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker processes of nginx `master`.
    fn workers(master: u32) -> Vec<u32> {
        let task = format!("/proc/{master}/task/{master}/children");
        std::fs::read_to_string(task)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    #[test]
    fn dropping_nginx_stops_its_workers_too() {
        let Some(binary) = on_path("nginx") else {
            eprintln!("nginx is not installed: not tested here");
            return;
        };
        let nginx = start(&binary, Role::Mock, "drop-test").unwrap();
        let master = nginx.child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut pids = workers(master);
        while pids.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            pids = workers(master);
        }
        assert!(!pids.is_empty(), "nginx started no worker");
        let addr = nginx.addr;
        drop(nginx);
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "worker {pid} outlived its master"
            );
        }
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn the_mock_answer_is_a_chat_completion() {
        let v: serde_json::Value = serde_json::from_str(MOCK_ANSWER).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert!(!MOCK_ANSWER.contains('\''));
    }

    #[test]
    fn the_proxy_config_keeps_upstream_connections_alive() {
        let up = SocketAddr::from(([127, 0, 0, 1], 9));
        let c = config(
            Path::new("/tmp/x"),
            SocketAddr::from(([127, 0, 0, 1], 8)),
            &Role::Proxy(&up),
        );
        assert!(c.contains("server 127.0.0.1:9; keepalive"));
        assert!(c.contains("listen 127.0.0.1:8;"));
        assert!(c.contains("proxy_set_header Connection \"\";"));
    }
}

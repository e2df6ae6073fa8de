//! Helpers shared by the CLI integration tests: run the `spillway` binary, watch its output
//! line by line with a deadline, and make sure no child outlives a failing test.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The gateway tests' real `redis-server` helper, shared rather than copied.
#[path = "../../../spillway-embedded/tests/redis_support/mod.rs"]
pub mod redis;

/// The key of the embedded default's demo tenant.
pub const DEMO_KEY: &str = "spillway-demo-key";
/// Its SHA-256, as configured in the embedded default.
pub const DEMO_KEY_SHA256: &str =
    "4c632e7135929907209e422fd8a878aca2a19f7a3ed1089e7c3e1c53c44bfa69";
pub const US: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];

/// The binary under test.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spillway"));
    // Keep error output free of backtraces and colour codes, whatever the caller's environment.
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("SPILLWAY_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// `crates/spillway-gateway/src/config/default.toml`.
pub fn default_toml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spillway-gateway/src/config/default.toml")
}

/// A file under the system temp dir with a name no other test (or test run) uses; removed on
/// drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A unique path under the temp dir, ending in `tag`, not created (for a file a command
    /// writes); removed on drop if it exists by then.
    pub fn named(tag: &str) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "spillway-test-{}-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        TempFile(std::env::temp_dir().join(name))
    }

    /// A Mooncake-format trace (`tag` ends its name) of 8 conversations of 4 turns, each
    /// turn's prompt one 512-token block longer than the last and sharing the earlier turns'
    /// `hash_ids`: turns 2–4 find their leading blocks cached where an earlier turn went.
    pub fn conversations(tag: &str) -> TempFile {
        let trace = TempFile::named(tag);
        let mut lines = String::new();
        for turn in 0..4u64 {
            for conv in 0..8u64 {
                let t = turn * 2_000 + conv * 150;
                let ids: Vec<String> = (0..=turn + 1)
                    .map(|b| (conv * 100 + b).to_string())
                    .collect();
                lines += &format!(
                    "{{\"timestamp\": {t}, \"input_length\": {}, \"output_length\": 6, \"hash_ids\": [{}]}}\n",
                    512 * (turn + 2),
                    ids.join(", ")
                );
            }
        }
        std::fs::write(&trace.0, lines).expect("write the trace");
        trace
    }

    /// A unique `.toml` file holding `contents`.
    pub fn new(tag: &str, contents: &str) -> TempFile {
        let f = TempFile::named(&format!("{tag}.toml"));
        std::fs::write(&f.0, contents).expect("write temp file");
        f
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Lines a child wrote so far on one stream, filled by a thread that drains the pipe to EOF
/// (so a chatty child never blocks on a full pipe).
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<(Vec<String>, bool)>>);

impl Lines {
    fn pump(&self, stream: impl Read + Send + 'static) {
        let me = self.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        me.0.lock().unwrap_or_else(|e| e.into_inner()).0.push(line);
                    }
                }
            }
            me.0.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        });
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    fn closed(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// The first line matching `pred`, waiting up to `timeout` for it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.snapshot().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if self.closed() || Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running child process, killed (and reaped) on drop unless it already exited, so that a
/// failing assertion never leaves a server behind.
pub struct Proc {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    exited: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn spillway");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout.pump(child.stdout.take().expect("stdout"));
        stderr.pump(child.stderr.take().expect("stderr"));
        Proc {
            child,
            stdout,
            stderr,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Both streams, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Waits for `spillway: listening on http://ADDR as REGION` on stderr; returns ADDR.
    pub fn wait_listening(&self, region: &str, timeout: Duration) -> String {
        let suffix = format!(" as {region}");
        let line = self
            .stderr
            .wait_for(timeout, |l| {
                l.starts_with("spillway: listening on http://") && l.ends_with(&suffix)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no `listening on ... as {region}` line within {timeout:?}\n{}",
                    self.output()
                )
            });
        line.trim_start_matches("spillway: listening on http://")
            .trim_end_matches(&suffix)
            .to_string()
    }

    /// The admin listener's address, from its `admin on http://…` line.
    pub fn wait_admin(&self, timeout: Duration) -> String {
        let prefix = "spillway: admin on http://";
        let line = self
            .stderr
            .wait_for(timeout, |l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `admin on` line within {timeout:?}\n{}", self.output()));
        line.trim_start_matches(prefix)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// SIGHUP, through `kill(1)`.
    pub fn sighup(&self) {
        let st = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -HUP {} failed", self.pid());
    }

    /// SIGTERM, through `kill(1)` (the tests use no unsafe code).
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {} failed", self.pid());
    }

    /// The exit status, waiting up to `timeout`; None if it is still running then. After an
    /// exit, waits (briefly) until both output streams are read to the end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(s);
                let drained = Instant::now() + Duration::from_secs(5);
                while !(self.stdout.closed() && self.stderr.closed()) && Instant::now() < drained {
                    thread::sleep(Duration::from_millis(10));
                }
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to completion (with a deadline) and returns status, stdout, stderr.
pub fn run(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn(bin().args(args));
    let status = p
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("spillway {args:?} still running after {timeout:?}"));
    (status, p.stdout.text(), p.stderr.text())
}

/// A small valid configuration: two US regions and one EU region, one model deployed in each
/// on in-process simulators, a tenant whose key is read from `key_line` (a TOML inline table,
/// e.g. `{ env = "VAR" }`), one listener on 127.0.0.1:0 as us-east-1. `extra` is appended.
pub fn small_config(key_line: &str, extra: &str) -> String {
    let mut t = String::from("[routing]\nmax_attempts = 3\n\n");
    for (r, g) in [
        ("us-east-1", "us"),
        ("us-east-2", "us"),
        ("eu-west-1", "eu"),
    ] {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    t += "[[models]]\nid = \"demo.chat-small-v1:0\"\ndefault_max_tokens = 16\n\n";
    for r in ["us-east-1", "us-east-2", "eu-west-1"] {
        t += &format!(
            "[[deployments]]\nmodel = \"demo.chat-small-v1:0\"\nregion = \"{r}\"\nmax_in_flight = 4\n\
             upstream = {{ kind = \"sim\", concurrency = 4, decode_tokens_per_sec = 1000.0, time_scale = 10.0 }}\n\n"
        );
    }
    t += &format!("[[tenants]]\nname = \"t1\"\napi_keys = [{key_line}]\n\n");
    t += "[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"us-east-1\"\n\n";
    t += "[admin]\nbind = \"127.0.0.1:0\"\n\n";
    t += extra;
    t
}

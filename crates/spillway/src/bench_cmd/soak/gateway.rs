//! The gateway under measurement: a `spillway serve` child process of this executable, so that
//! its memory, descriptors and threads are its own, in front of simulators that run in this
//! process (so that faults can be switched on them, and their sockets are not counted as the
//! gateway's).
//!
//! Its configuration is the embedded default with each deployment's `base_url` pointing at the
//! simulator started here for it (same parameters as the embedded stack would use), plus the
//! `[server]` keys asked for. It listens on `127.0.0.1:0` and its admin listener on
//! `127.0.0.1:0`; the addresses are read from its stderr (`spillway: listening on http://ADDR
//! as REGION`, `spillway: admin on http://ADDR …`). With `nofile`, it runs under
//! `prlimit --nofile=N:N`, which sets the limit and then executes it (same process id).
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use spillway_gateway::Config;
use spillway_gateway::config::embedded::DEFAULT_TOML;
use spillway_sim::SimHandle;

/// Lines of the child's stderr kept for an error message.
const TAIL: usize = 40;
/// How long the child may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One in-process simulator per deployment of the embedded default.
pub struct Sims {
    pub handles: Vec<SimHandle>,
}

impl Sims {
    pub async fn start() -> anyhow::Result<Sims> {
        let cfg = Config::embedded_default()?;
        let mut handles = Vec::new();
        for (d, params) in cfg.embedded_sims() {
            let dep = &cfg.deployments[d.0 as usize];
            let sim_cfg = spillway_embedded::sim_config(params, cfg.region_name(dep.region));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            handles.push(spillway_sim::spawn(sim_cfg, listener).await?);
        }
        Ok(Sims { handles })
    }

    /// The embedded default with each deployment on its simulator here and `server` keys
    /// (`key = value` lines) added to `[server]`.
    pub fn config_text(&self, server: &[String]) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut sims = self.handles.iter();
        for line in DEFAULT_TOML.lines() {
            if let Some(rest) = line.strip_prefix("upstream = { kind = \"sim\",") {
                let sim = sims
                    .next()
                    .context("more embedded deployments than simulators")?;
                out.push_str(&format!(
                    "upstream = {{ kind = \"sim\", base_url = \"{}\",{rest}\n",
                    sim.base_url()
                ));
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line == "[server]" {
                for kv in server {
                    out.push_str(kv);
                    out.push('\n');
                }
            }
        }
        let cfg = Config::parse(&out, "<bench soak>")?;
        anyhow::ensure!(
            cfg.embedded_sims().count() == 0 && sims.next().is_none(),
            "the generated configuration does not put every deployment on a simulator"
        );
        // Deployments are in file order; check each landed on its own region's simulator.
        for (dep, sim) in cfg.deployments.iter().zip(&self.handles) {
            anyhow::ensure!(
                cfg.region_name(dep.region) == sim.region(),
                "deployment order differs from the simulators'"
            );
        }
        Ok(out)
    }

    pub fn shutdown(&self) {
        for s in &self.handles {
            s.shutdown();
        }
    }
}

/// A running `spillway serve` child.
pub struct ServeChild {
    child: Child,
    pub pid: u32,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
    config: PathBuf,
}

/// How to start the child.
pub struct Launch<'a> {
    pub config_text: &'a str,
    /// Run under `prlimit --nofile=N:N`.
    pub nofile: Option<u64>,
}

impl ServeChild {
    pub async fn start(l: &Launch<'_>) -> anyhow::Result<ServeChild> {
        let config = std::env::temp_dir().join(format!(
            "spillway-soak-{}-{}.toml",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::write(&config, l.config_text)
            .with_context(|| format!("writing {}", config.display()))?;
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut cmd = match l.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .env("SPILLWAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting `spillway serve`")?;
        let pid = child.id();
        let stderr = child.stderr.take().context("the child's stderr")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let keep = tail.clone();
        std::thread::spawn(move || read_stderr(stderr, &keep, &tx));
        let mut me = ServeChild {
            child,
            pid,
            api: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            tail,
            config,
        };
        match tokio::time::timeout(START_TIMEOUT, addresses(rx)).await {
            Ok(Some((api, admin))) => {
                (me.api, me.admin) = (api, admin);
                Ok(me)
            }
            _ => anyhow::bail!(
                "`spillway serve` did not print its addresses; its stderr:\n{}",
                me.stderr_tail()
            ),
        }
    }

    /// The last lines the child wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT (stop accepting, let in-flight requests finish), then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Forwards each stderr line to `tx` and keeps the last [`TAIL`] in `tail`, until EOF.
fn read_stderr(
    stderr: std::process::ChildStderr,
    tail: &Mutex<VecDeque<String>>,
    tx: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = tx.send(line.clone());
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// The API and admin addresses from the child's start-up lines.
async fn addresses(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Option<(SocketAddr, SocketAddr)> {
    let (mut api, mut admin) = (None, None);
    while let Some(line) = rx.recv().await {
        if let Some(rest) = line.strip_prefix("spillway: listening on http://") {
            api = rest.split_whitespace().next()?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("spillway: admin on http://") {
            admin = rest.split_whitespace().next()?.parse().ok();
        }
        if let (Some(a), Some(b)) = (api, admin) {
            return Some((a, b));
        }
    }
    None
}

/// `Max open files` (soft) of `pid`, from `/proc/PID/limits`.
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `GET path` on `admin` until it answers 200, up to `timeout`.
pub async fn wait_ready(admin: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(200) = super::http::get_status(admin, path, Duration::from_secs(2)).await {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{admin}{path} did not answer 200 within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_generated_configuration_puts_every_deployment_on_a_simulator() {
        let sims = Sims::start().await.expect("simulators");
        let text = sims
            .config_text(&["header_read_timeout_ms = 1234".to_string()])
            .expect("valid");
        let cfg = Config::parse(&text, "<test>").expect("valid");
        assert_eq!(cfg.edge.header_read, Duration::from_millis(1234));
        assert_eq!(cfg.deployments.len(), sims.handles.len());
        sims.shutdown();
    }

    #[test]
    fn reads_the_descriptor_limit_of_this_process() {
        assert!(nofile_limit(std::process::id()).is_some_and(|n| n > 0));
    }
}

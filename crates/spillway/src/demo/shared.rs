//! `spillway demo --state redis://…`: three gateway instances sharing one Redis.
//!
//! * `shared-quota`: a tenant whose cross-region quota is [`QuotaPlan::LIMIT`] requests per
//!   minute sends 1.5 times what that quota allows over the window, from us-east-1, spread over
//!   the three instances. A token bucket that starts full admits at most
//!   `limit × (1 + w / 60 s)` over a window `w`; `quota_overshoot` is what the simulators
//!   actually served (distinct request ids served completely) beyond that, as a fraction of
//!   the limit (negative: fewer). The documented bound adds one lease chunk per instance (1.5%
//!   of this limit) for leases taken before the window: here the buckets start fresh, so the
//!   figure should be at most 0.
//! * `redis-outage`: the same load, with Redis paused by `CLIENT PAUSE <ms> ALL` (sent on a
//!   connection of its own, so it works on a Redis the demo did not start) from a third of the
//!   run for a third of it. `redis_outage_failed` counts the requests that failed (not the ones
//!   throttled by the quota); it is left out when Redis refused the pause.
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::scenario::{Fault, Load, Outcome, PauseReport, Scenario};
use super::{DECODE_TPS, MODEL, PREFILL_TPS, PROMPT_TOKENS};

/// Gateway instances sharing the Redis.
pub const INSTANCES: usize = 3;
/// The quota tenant's key (accepted on loopback listeners only, like the demo key).
const QUOTA_KEY: &str = "spillway-demo-quota-key";

/// Where the shared state is, and how to reach it for the pause.
#[derive(Debug, Clone)]
pub struct Redis {
    pub url: String,
    host: String,
    port: u16,
    auth: Option<(Option<String>, String)>,
    /// Key prefix of this run (a scenario appends its name).
    pub prefix: String,
}

impl Redis {
    /// `redis://[[user]:password@]host[:port][/db]` (or `valkey://`).
    pub fn parse(url: &str) -> anyhow::Result<Redis> {
        let rest = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("valkey://"))
            .with_context(|| format!("--state: expected redis://HOST:PORT, got {url:?}"))?;
        let rest = rest.split('/').next().unwrap_or_default();
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => {
                let auth = match a.split_once(':') {
                    Some((u, p)) => (Some(u.to_string()).filter(|u| !u.is_empty()), p.into()),
                    None => (None, a.to_string()),
                };
                (Some(auth), h)
            }
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .with_context(|| format!("--state: bad port in {url:?}"))?,
            ),
            None => (hostport, 6379),
        };
        anyhow::ensure!(!host.is_empty(), "--state: no host in {url:?}");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Redis {
            url: url.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            auth,
            prefix: format!("spillway-demo-{}-{stamp}", std::process::id()),
        })
    }

    /// The URL without its password.
    pub fn display(&self) -> String {
        format!("redis://{}:{}", self.host, self.port)
    }

    /// Make Redis stop answering every client for `ms` milliseconds.
    pub async fn pause_all(&self, ms: u64) -> Result<(), String> {
        let io = async {
            let mut s = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
            if let Some((user, pass)) = &self.auth {
                let mut args = vec!["AUTH"];
                args.extend(user.as_deref());
                args.push(pass);
                s.write_all(&resp(&args)).await?;
                let reply = read_reply(&mut s).await?;
                if !reply.starts_with("+OK") {
                    return Ok(format!("AUTH answered {}", reply.trim_end()));
                }
            }
            s.write_all(&resp(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]))
                .await?;
            read_reply(&mut s).await
        };
        match tokio::time::timeout(Duration::from_secs(2), io).await {
            Ok(Ok(r)) if r.starts_with("+OK") => Ok(()),
            Ok(Ok(r)) => Err(format!("Redis answered {}", r.trim_end())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 2 s".into()),
        }
    }
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out += &format!("${}\r\n{a}\r\n", a.len());
    }
    out.into_bytes()
}

async fn read_reply(s: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The shared-quota scenarios' tenant, quota and load.
#[derive(Debug, Clone)]
pub struct QuotaPlan {
    /// Requests per second offered (from us-east-1).
    pub rate: f64,
}

impl QuotaPlan {
    /// The tenant's cross-region quota, requests per minute (twice its in-region quota). With
    /// the default `lease_fraction` (0.005) a lease chunk is one request.
    pub const LIMIT: u64 = 200;
    /// Output tokens per request: short, so the simulators serve whatever the quota admits.
    const MAX_TOKENS: u64 = 4;

    pub fn new(seconds: u64) -> QuotaPlan {
        let window = Duration::from_secs(seconds.max(1));
        // 1.5 times what the quota admits over the window.
        let rate = 1.5 * Self::allowed(window) / window.as_secs_f64();
        QuotaPlan { rate }
    }

    /// What one token bucket that starts full admits over `w`.
    pub fn allowed(w: Duration) -> f64 {
        Self::LIMIT as f64 * (1.0 + w.as_secs_f64() / 60.0)
    }

    pub fn scenario(&self, fault: Fault) -> Scenario {
        Scenario {
            model: format!("us.{MODEL}"),
            key: QUOTA_KEY,
            load: Load::Single { rate: self.rate },
            max_tokens: Self::MAX_TOKENS,
            fault,
        }
    }

    pub fn tenant_toml(&self) -> String {
        let hash: String = spillway_gateway::config::sha256(QUOTA_KEY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "[[tenants]]\nname = \"quota-demo\"\napi_keys = [{{ sha256 = \"{hash}\" }}]\n\
             cross_region_multiplier = 2.0\n\n\
             [[tenants.quotas]]\nmodel = \"{MODEL}\"\nrpm = {}\n\n",
            Self::LIMIT / 2
        )
    }

    /// Seconds one request takes on a simulator (for the progress line).
    pub fn service_secs() -> f64 {
        PROMPT_TOKENS as f64 / PREFILL_TPS + Self::MAX_TOKENS as f64 / DECODE_TPS
    }
}

/// The figures of the two scenarios.
#[derive(Debug, Default)]
pub struct Findings {
    /// Served by the simulators, offered, window.
    quota: Option<(u64, u64, Duration)>,
    /// Failed requests and what Redis did.
    outage: Option<(u64, PauseReport)>,
}

impl Findings {
    pub fn note(&mut self, name: &str, out: &Outcome, quota: Option<&QuotaPlan>) {
        if quota.is_none() {
            return;
        }
        match name {
            "shared-quota" => {
                self.quota = Some((out.served_by_sims, out.summary.offered, out.window));
            }
            "redis-outage" => {
                if let Some(p) = &out.pause {
                    self.outage = Some((out.summary.failed, p.clone()));
                }
            }
            _ => {}
        }
    }

    fn overshoot(&self) -> Option<f64> {
        self.quota.map(|(served, _, w)| {
            let limit = QuotaPlan::LIMIT as f64;
            ((served as f64 - QuotaPlan::allowed(w)) / limit * 10_000.0).round() / 10_000.0
        })
    }

    pub fn print(&self, redis: &Redis, q: &QuotaPlan) {
        if let (Some((served, offered, w)), Some(o)) = (self.quota, self.overshoot()) {
            println!(
                "\nshared quota: {} instances on {}, a cross-region quota of {}/min, {offered} requests offered in {} s \
                 ({:.1}/s, {:.2} s each): at most {:.1} admissible, the simulators served {served}: overshoot {:+.2}% of the limit.",
                INSTANCES,
                redis.display(),
                QuotaPlan::LIMIT,
                w.as_secs(),
                q.rate,
                QuotaPlan::service_secs(),
                QuotaPlan::allowed(w),
                o * 100.0
            );
        }
        if let Some((failed, p)) = &self.outage {
            match &p.paused {
                Ok(()) => println!(
                    "redis outage: Redis paused for a third of the run: {failed} requests failed; instances reported degraded: {}; all up again after: {}.",
                    yes(p.degraded_seen),
                    yes(p.recovered)
                ),
                Err(e) => println!("redis outage: Redis could not be paused ({e}); no figure."),
            }
        }
    }

    pub fn add_to(&self, obj: &mut Map<String, Value>, q: &QuotaPlan) {
        if let (Some((served, offered, w)), Some(o)) = (self.quota, self.overshoot()) {
            obj.insert("quota_overshoot".into(), json!(o));
            obj.insert(
                "quota".into(),
                json!({
                    "instances": INSTANCES,
                    "limit_per_minute": QuotaPlan::LIMIT,
                    "window_s": w.as_secs_f64(),
                    "offered": offered,
                    "rate_rps": (q.rate * 100.0).round() / 100.0,
                    "allowed": (QuotaPlan::allowed(w) * 10.0).round() / 10.0,
                    "served_by_sims": served,
                }),
            );
        }
        if let Some((failed, p)) = &self.outage
            && p.paused.is_ok()
        {
            obj.insert("redis_outage_failed".into(), json!(failed));
            obj.insert(
                "redis_outage".into(),
                json!({ "degraded_seen": p.degraded_seen, "recovered": p.recovered }),
            );
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_auth() {
        let r = Redis::parse("redis://127.0.0.1:6390").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.auth.is_none()),
            ("127.0.0.1", 6390, true)
        );
        let r = Redis::parse("redis://:pw@localhost/2").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("localhost", 6379));
        assert_eq!(r.auth, Some((None, "pw".to_string())));
        let r = Redis::parse("redis://u:pw@h:1").unwrap();
        assert_eq!(r.auth, Some((Some("u".to_string()), "pw".to_string())));
        assert!(Redis::parse("http://h:1").is_err());
        assert!(Redis::parse("redis://h:x").is_err());
    }

    #[test]
    fn the_load_exceeds_what_the_quota_admits() {
        for s in [5, 15, 60] {
            let q = QuotaPlan::new(s);
            let offered = q.rate * s as f64;
            assert!(
                offered >= 1.4 * QuotaPlan::allowed(Duration::from_secs(s)),
                "{s} s"
            );
        }
    }
}

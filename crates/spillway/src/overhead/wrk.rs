//! wrk, the closed-loop HTTP load generator, run as a child process: a Lua script makes its
//! requests POSTs of the bench's body with the tenant's key, and its report is parsed for the
//! rate, the latency percentiles and the failures.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;
use spillway_bench::overhead::Bytes;

/// One wrk run against one URL.
pub struct Run {
    pub binary: PathBuf,
    pub url: String,
    pub body: Bytes,
    pub api_key: String,
    pub connections: u32,
    pub threads: u32,
    pub seconds: f64,
}

/// What wrk reported.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct WrkFigures {
    /// `Requests/sec`.
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx answers plus socket errors (connect, read, write, timeout).
    pub errors: u64,
}

pub fn run(r: &Run) -> anyhow::Result<WrkFigures> {
    let body = std::str::from_utf8(&r.body).context("the request body is not UTF-8")?;
    if body.contains("]==]") || r.api_key.contains('"') {
        bail!("the request body cannot be quoted in wrk's Lua script");
    }
    let script = std::env::temp_dir().join(format!(
        "spillway-bench-wrk-{}-{}.lua",
        std::process::id(),
        r.connections
    ));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
            r.api_key
        ),
    )?;
    let out = Command::new(&r.binary)
        .arg(format!("-c{}", r.connections))
        .arg(format!("-t{}", r.threads))
        .arg(format!("-d{}s", r.seconds.ceil().max(1.0)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(&r.url)
        .output()
        .with_context(|| format!("running {}", r.binary.display()));
    let _ = std::fs::remove_file(&script);
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// The figures of wrk's `--latency` report.
pub fn parse(text: &str) -> anyhow::Result<WrkFigures> {
    let mut f = WrkFigures::default();
    let mut seen_rate = false;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => {
                f.rps = v.parse()?;
                seen_rate = true;
            }
            (Some("50%"), Some(v)) => f.p50_ms = millis(v)?,
            (Some("99%"), Some(v)) => f.p99_ms = millis(v)?,
            _ => {}
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            f.errors += n.trim().parse::<u64>()?;
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    f.errors += n.parse::<u64>()?;
                }
            }
        }
    }
    if !seen_rate {
        bail!("no Requests/sec line");
    }
    Ok(f)
}

/// `250.00us`, `1.20ms`, `2.00s`, `1.5m` in milliseconds.
fn millis(v: &str) -> anyhow::Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .context("a duration without a unit")?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        other => bail!("unknown unit {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:1/v1/chat/completions
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.31us  301.12us  12.01ms   91.02%
    Req/Sec    26.51k     1.52k   29.70k    70.00%
  Latency Distribution
     50%  571.00us
     75%  690.00us
     90%  820.00us
     99%    1.71ms
  527543 requests in 10.00s, 215.31MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  52742.43
Transfer/sec:     21.53MB
";

    #[test]
    fn a_report_is_read() {
        let f = parse(REPORT).unwrap();
        assert_eq!(f.rps, 52742.43);
        assert!((f.p50_ms - 0.571).abs() < 1e-9);
        assert!((f.p99_ms - 1.71).abs() < 1e-9);
        assert_eq!(f.errors, 7);
    }

    #[test]
    fn a_report_without_a_rate_is_an_error() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
        assert!(millis("12.0xs").is_err());
        assert_eq!(millis("2.00s").unwrap(), 2000.0);
    }
}

//! `examples/multi-region-redis/`: its three configurations pass `spillway check-config` and
//! agree on everything but their listener; and three `spillway serve` processes built from
//! them, sharing a real `redis-server`, over three `spillway sim` processes, hold a tenant's
//! cross-region quota within the documented bound (about 10 s each):
//!
//! * one process per region, as `run.sh` runs them: each source region's quota holds, and every
//!   request stays in the geography;
//! * three processes serving us-east-1 (replicas behind a load balancer, as an operator scales
//!   one region): quotas are per source region, so that is when one quota is spent by several
//!   instances at once, and the bound is about Redis.
//!
//! The simulators' own records (`GET /admin/served`) say what was served, and where.
mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use common::redis::RedisServer;
use common::{Proc, TempFile, bin};
use serde_json::Value;

const REGIONS: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];
const KEY: &str = "acme-e2e-key";
const MODEL: &str = "example.chat-v1:0";

fn example(region: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/multi-region-redis")
        .join(format!("{region}.toml"))
}

fn read(p: &PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_example_configs_are_valid_and_agree() {
    let mut bodies = Vec::new();
    for r in REGIONS {
        let path = example(r);
        let mut p = Proc::spawn(
            bin()
                .env("REDIS_URL", "redis://127.0.0.1:6379")
                .env("SPILLWAY_ACME_KEY", KEY)
                .arg("check-config")
                .arg(&path),
        );
        let status = p
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("check-config still running\n{}", p.output()));
        assert!(status.success(), "{}: {}", path.display(), p.output());
        let out = p.stdout.text();
        assert!(out.contains(": OK"), "{out}");
        assert!(out.contains(&format!("us.{MODEL}")), "{out}");
        assert!(out.contains("1 listeners"), "{out}");
        let text = read(&path);
        assert!(text.contains(&format!("region = \"{r}\"")), "{text}");
        assert!(text.contains("url_env = \"REDIS_URL\"") && text.contains("instances = 3"));
        // Everything from [state] to the listener must be the same in all three files.
        let start = text.find("\n[state]").expect("[state]");
        let end = text.find("[[listeners]]").expect("[[listeners]]");
        bodies.push(text[start..end].to_string());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the configs differ"
    );
}

/// `spillway sim` on a free port; returns the process and its base URL.
fn sim(region: &str) -> (Proc, String) {
    let p = Proc::spawn(bin().args([
        "sim",
        "--port",
        "0",
        "--region",
        region,
        "--decode-tps",
        "1000",
    ]));
    let prefix = format!("spillway-sim {region} listening on ");
    let line = p
        .stdout
        .wait_for(Duration::from_secs(20), |l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("sim {region} did not start\n{}", p.output()));
    let url = line.trim_start_matches(&prefix).to_string();
    (p, url)
}

/// `region`'s example, pointed at these simulators, listening on a free port, with a
/// cross-region quota of `2 × rpm` per minute per source region and a key prefix of its own.
fn config(region: &str, sims: &[String], rpm: u64, prefix: &str) -> String {
    let port = 8081 + REGIONS.iter().position(|r| *r == region).expect("region");
    let mut t = read(&example(region))
        .replace(
            &format!("bind = \"127.0.0.1:{port}\""),
            "bind = \"127.0.0.1:0\"",
        )
        .replace(
            &format!("bind = \"127.0.0.1:{}\"", port + 1010),
            "bind = \"127.0.0.1:0\"",
        )
        .replace(
            "key_prefix = \"spillway-example\"",
            &format!("key_prefix = {prefix:?}"),
        )
        .replace("rpm = 300", &format!("rpm = {rpm}"));
    for (i, url) in sims.iter().enumerate() {
        t = t.replace(
            &format!("http://127.0.0.1:910{}/v1", i + 1),
            &format!("{url}/v1"),
        );
    }
    assert!(!t.contains(":910") && t.contains("127.0.0.1:0"), "{t}");
    t
}

/// `spillway serve --config` for `toml`, sharing `redis`; returns it and its base URL.
fn serve(redis: &RedisServer, toml: &str, region: &str) -> (Proc, String, TempFile) {
    let file = TempFile::new("multi-region", toml);
    let p = Proc::spawn(
        bin()
            .env("REDIS_URL", redis.url())
            .env("SPILLWAY_ACME_KEY", KEY)
            .env("SPILLWAY_LOG", "warn")
            .args(["serve", "--config", file.s()]),
    );
    let addr = p.wait_listening(region, Duration::from_secs(20));
    (p, format!("http://{addr}"), file)
}

/// One request's outcome: id, source, status (0: no answer), `x-spillway-region`.
struct Sent {
    id: String,
    source: &'static str,
    status: u16,
    region: Option<String>,
}

/// Open loop: `n` `us.` requests per source in `window`, evenly spaced; source `s` goes to the
/// gateways `to[s]` in turn.
fn drive(
    rt: &tokio::runtime::Runtime,
    to: &[(&'static str, Vec<String>)],
    n: usize,
    window: Duration,
) -> Vec<Sent> {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for (source, urls) in to {
            for i in 0..n {
                let client = client.clone();
                let url = format!("{}/v1/chat/completions", urls[i % urls.len()]);
                let at = start + window.mul_f64(i as f64 / n as f64);
                let (source, id) = (*source, format!("e2e-{source}-{i}"));
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let body = serde_json::json!({
                        "model": format!("us.{MODEL}"),
                        "messages": [{"role": "user", "content": "hello"}],
                        "max_tokens": 4,
                    });
                    let r = client
                        .post(url)
                        .bearer_auth(KEY)
                        .header("x-request-id", &id)
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let (status, region) = match r {
                        Ok(r) => {
                            let region = r
                                .headers()
                                .get("x-spillway-region")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            (status, region)
                        }
                        Err(_) => (0, None),
                    };
                    Sent {
                        id,
                        source,
                        status,
                        region,
                    }
                }));
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("request task"));
        }
        out
    })
}

/// Request ids each simulator served completely, checking that every record is one of ours,
/// in the geography, and where the gateway's header said.
fn served(rt: &tokio::runtime::Runtime, sims: &[String], sent: &[Sent]) -> HashSet<String> {
    let records: Vec<Value> = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for url in sims {
            let base = url.trim_end_matches("/v1");
            let r = http
                .get(format!("{base}/admin/served"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{base}/admin/served: {e}"));
            out.push(r.json().await.expect("served is JSON"));
        }
        out
    });
    let mut ok = HashSet::new();
    for (region, v) in REGIONS.iter().zip(&records) {
        for rec in v["served"].as_array().expect("served array") {
            let id = rec["request_id"].as_str().unwrap_or_default();
            let s = sent
                .iter()
                .find(|s| s.id == id)
                .unwrap_or_else(|| panic!("{region} saw a request id of no one: {rec}"));
            assert_eq!(rec["region"].as_str(), Some(*region), "{rec}");
            if rec["outcome"] == "ok" {
                assert_eq!(s.region.as_deref(), Some(*region), "{id}: header vs record");
                ok.insert(id.to_string());
            }
        }
    }
    ok
}

/// Per source: offered, ok, throttled, failed, served by the simulators; asserts the bound.
fn check(source: &str, sent: &[Sent], ok_ids: &HashSet<String>, limit: f64, window: Duration) {
    let mine: Vec<&Sent> = sent.iter().filter(|s| s.source == source).collect();
    let ok = mine.iter().filter(|s| s.status == 200).count();
    let throttled = mine.iter().filter(|s| s.status == 429).count();
    let failed: Vec<(&str, u16)> = mine
        .iter()
        .filter(|s| s.status != 200 && s.status != 429)
        .map(|s| (s.id.as_str(), s.status))
        .collect();
    let served = mine.iter().filter(|s| ok_ids.contains(&s.id)).count();
    let allowed = limit * (1.0 + window.as_secs_f64() / 60.0);
    let overshoot = (served as f64 - allowed) / limit;
    eprintln!(
        "source {source}: cross-region limit {limit}/min, {} requests in {window:?}: {ok} ok, {throttled} throttled, \
         {} failed; simulators served {served} (at most {allowed:.1} admissible): overshoot {:+.2}% of the limit",
        mine.len(),
        failed.len(),
        overshoot * 100.0
    );
    assert!(failed.is_empty(), "{source}: failed requests: {failed:?}");
    assert_eq!(
        served, ok,
        "{source}: every 200 was served by a simulator, once"
    );
    assert!(
        overshoot <= 0.02,
        "{source}: overshoot {overshoot} > 2% of the limit"
    );
    assert!(
        served as f64 >= 0.8 * allowed,
        "{source}: the quota under-admitted: {served} of {allowed:.1}"
    );
    assert!(throttled > 0, "{source}: the load never exceeded the quota");
}

#[test]
fn one_instance_per_region_holds_each_sources_quota_and_the_geography() {
    let redis = RedisServer::start();
    let sims: Vec<(Proc, String)> = REGIONS.iter().map(|r| sim(r)).collect();
    let urls: Vec<String> = sims.iter().map(|(_, u)| u.clone()).collect();
    // Cross-region limit 100/min per source region.
    const LIMIT: f64 = 100.0;
    let gateways: Vec<_> = REGIONS
        .iter()
        .map(|r| serve(&redis, &config(r, &urls, 50, "spillway-e2e-regions"), r))
        .collect();
    let window = Duration::from_secs(5);
    let n = (1.5 * LIMIT * (1.0 + window.as_secs_f64() / 60.0)) as usize;
    let to: Vec<(&'static str, Vec<String>)> = REGIONS
        .iter()
        .zip(&gateways)
        .map(|(r, g)| (*r, vec![g.1.clone()]))
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sent = drive(&rt, &to, n, window);
    let ok_ids = served(&rt, &urls, &sent);
    for r in REGIONS {
        check(r, &sent, &ok_ids, LIMIT, window);
    }
    drop(gateways);
    drop(sims);
}

#[test]
fn three_instances_hold_a_cross_region_quota_globally() {
    let redis = RedisServer::start();
    let sims: Vec<(Proc, String)> = REGIONS.iter().map(|r| sim(r)).collect();
    let urls: Vec<String> = sims.iter().map(|(_, u)| u.clone()).collect();
    // Cross-region limit 200/min: a lease chunk is 1 request (1.5% of the limit for 3).
    const LIMIT: f64 = 200.0;
    let toml = config("us-east-1", &urls, 100, "spillway-e2e");
    let gateways: Vec<_> = (0..3).map(|_| serve(&redis, &toml, "us-east-1")).collect();
    // 1.5 times what one bucket that starts full admits over the window, spread in turn over
    // the three instances, open loop.
    let window = Duration::from_secs(5);
    let n = (1.5 * LIMIT * (1.0 + window.as_secs_f64() / 60.0)) as usize;
    let to = vec![("us-east-1", gateways.iter().map(|g| g.1.clone()).collect())];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sent = drive(&rt, &to, n, window);
    let ok_ids = served(&rt, &urls, &sent);
    check("us-east-1", &sent, &ok_ids, LIMIT, window);
    drop(gateways);
    drop(sims);
}

//! `spillway demo --json`: the first three scenarios and the acceptance figures of cross-region
//! inference (about 25 s); `cross-region-midstream`: streams that break in the source are
//! continued elsewhere, whole and in the set (about 10 s); and `--state redis://…`: three
//! instances sharing a real Redis hold a tenant's cross-region quota and fail nothing while Redis
//! is paused (about 15 s).
mod common;

use std::time::{Duration, Instant};

use common::{Proc, bin};
use serde_json::Value;

const KEYS: [&str; 11] = [
    "name",
    "offered",
    "served",
    "throttled",
    "failed",
    "goodput_rps",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "locality",
    "spilled",
    "residency_violations",
];

fn n(s: &Value, key: &str) -> f64 {
    s[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {s}"))
}

#[test]
fn demo_json_shows_spill_over_without_residency_violations_or_failures() {
    let started = Instant::now();
    let mut demo = Proc::spawn(bin().args([
        "demo",
        "--json",
        "--seconds",
        "6",
        "--scenarios",
        "in-region,cross-region,cross-region-outage",
    ]));
    let status = demo
        .wait_exit(Duration::from_secs(180))
        .unwrap_or_else(|| panic!("demo still running after 180 s\n{}", demo.output()));
    let elapsed = started.elapsed();
    assert!(status.success(), "exit {status}\n{}", demo.output());
    let lines = demo.stdout.snapshot();
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output\n{}", demo.output()));
    let v: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}\n{}", demo.output()));
    let scenarios = v["scenarios"].as_array().expect("scenarios array");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["in-region", "cross-region", "cross-region-outage"],
        "{v}"
    );
    for s in scenarios {
        let obj = s.as_object().expect("scenario object");
        for k in KEYS {
            assert!(obj.contains_key(k), "{k} missing from {s}");
        }
        assert!(
            n(s, "served") + n(s, "throttled") + n(s, "failed") <= n(s, "offered"),
            "{s}"
        );
        assert!(n(s, "offered") > 0.0, "{s}");
    }
    // Print the figures so a failing or borderline run can be reported as it was.
    eprintln!("demo took {elapsed:?}\n{}", demo.stdout.text());
    let (inr, cross, outage) = (&scenarios[0], &scenarios[1], &scenarios[2]);

    // The burst is about twice us-east-1's capacity: in-region throttles about half of it.
    assert!(
        n(inr, "throttled") > 0.0,
        "in-region throttled nothing: {inr}"
    );
    assert_eq!(n(inr, "locality"), 1.0, "in-region left us-east-1: {inr}");
    assert_eq!(n(inr, "spilled"), 0.0, "{inr}");
    // Through the profile the same burst is served about twice over.
    assert!(
        n(cross, "served") >= 1.8 * n(inr, "served"),
        "cross-region served {} vs in-region {}: less than 1.8x",
        n(cross, "served"),
        n(inr, "served")
    );
    assert!(n(cross, "spilled") > 0.0, "{cross}");
    for s in scenarios {
        assert_eq!(n(s, "residency_violations"), 0.0, "{s}");
    }
    assert_eq!(
        n(outage, "failed"),
        0.0,
        "a region outage cost requests: {outage}"
    );
}

#[test]
fn demo_midstream_continues_broken_streams_whole_and_in_the_set() {
    let mut demo = Proc::spawn(bin().args([
        "demo",
        "--json",
        "--seconds",
        "6",
        "--scenarios",
        "cross-region-midstream",
    ]));
    let status = demo
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("demo still running after 120 s\n{}", demo.output()));
    assert!(status.success(), "exit {status}\n{}", demo.output());
    eprintln!("{}", demo.stdout.text());
    let v = last_json(&demo);
    let scenarios = v["scenarios"].as_array().expect("scenarios array");
    assert_eq!(scenarios.len(), 1, "{v}");
    let s = &scenarios[0];
    assert_eq!(s["name"], "cross-region-midstream", "{s}");
    for k in KEYS
        .iter()
        .chain(&["midstream_failovers", "text_mismatches"])
    {
        assert!(s.get(k).is_some(), "{k} missing from {s}");
    }
    assert!(n(s, "offered") > 0.0 && n(s, "served") > 0.0, "{s}");
    // Streams broke in us-east-1 and were continued (the simulators' records say so) ...
    let failovers = n(s, "midstream_failovers");
    assert!(failovers > 0.0, "no stream was continued: {s}");
    let kinds: f64 = s["midstream_kinds"]
        .as_object()
        .expect("midstream_kinds")
        .values()
        .filter_map(Value::as_f64)
        .sum();
    assert_eq!(kinds, failovers, "{s}");
    // ... and none failed, left the set, or has a text other than the unbroken answer.
    assert_eq!(n(s, "failed"), 0.0, "{s}");
    assert_eq!(n(s, "residency_violations"), 0.0, "{s}");
    assert_eq!(n(s, "text_mismatches"), 0.0, "{s}");
    let text = demo.stdout.text();
    assert!(text.contains("were continued elsewhere"), "{text}");
}

/// The last non-empty line of stdout, as JSON.
fn last_json(p: &Proc) -> Value {
    let lines = p.stdout.snapshot();
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output\n{}", p.output()));
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}\n{}", p.output()))
}

#[test]
fn demo_with_redis_state_holds_the_shared_quota_and_survives_a_redis_pause() {
    let redis = common::redis::RedisServer::start();
    let url = redis.url();
    let mut demo = Proc::spawn(bin().args([
        "demo",
        "--json",
        "--seconds",
        "5",
        "--state",
        &url,
        "--scenarios",
        "shared-quota,redis-outage",
    ]));
    let status = demo
        .wait_exit(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("demo still running after 90 s\n{}", demo.output()));
    assert!(status.success(), "exit {status}\n{}", demo.output());
    eprintln!("{}", demo.stdout.text());
    let v = last_json(&demo);
    let names: Vec<&str> = v["scenarios"]
        .as_array()
        .expect("scenarios array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["shared-quota", "redis-outage"], "{v}");
    // The load really exceeded the quota: 1.5x what it admits over the window.
    let q = &v["quota"];
    assert!(n(q, "offered") > 1.3 * n(q, "allowed"), "{q}");
    assert!(n(q, "served_by_sims") > 0.5 * n(q, "allowed"), "{q}");
    let overshoot = n(&v, "quota_overshoot");
    assert!(
        overshoot <= 0.02,
        "overshoot {overshoot} > 2% of the limit: {v}"
    );
    assert_eq!(n(&v, "redis_outage_failed"), 0.0, "{v}");
    assert_eq!(v["redis_outage"]["degraded_seen"], Value::Bool(true), "{v}");
    assert_eq!(v["redis_outage"]["recovered"], Value::Bool(true), "{v}");
    for s in v["scenarios"].as_array().expect("scenarios") {
        assert_eq!(n(s, "residency_violations"), 0.0, "{s}");
        assert_eq!(n(s, "failed"), 0.0, "{s}");
    }
    let text = demo.stdout.text();
    assert!(
        text.contains("overshoot") && text.contains("redis outage"),
        "{text}"
    );
}

#[test]
fn the_shared_state_scenarios_need_state() {
    let (status, _, stderr) = common::run(
        &["demo", "--scenarios", "shared-quota"],
        Duration::from_secs(30),
    );
    assert!(!status.success());
    assert!(stderr.contains("need --state"), "{stderr}");
}

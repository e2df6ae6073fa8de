//! `spillway bench overhead`, run as the binary a user would run, with small settings: the
//! JSON report's shape, no failed request on either path, and the figures consistent with
//! each other.
mod common;

use std::time::Duration;

use common::{TempFile, run};
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

const KEYS: [&str; 8] = [
    "rps",
    "direct_p50_ms",
    "direct_p99_ms",
    "gateway_p50_ms",
    "gateway_p99_ms",
    "added_p50_ms",
    "added_p99_ms",
    "max_rps",
];

fn n(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn small_run_reports_both_cases_side_by_side_with_no_errors() {
    let out = TempFile::named("overhead.json");
    let (status, stdout, stderr) = run(
        &[
            "bench",
            "overhead",
            "--rps",
            "200",
            "--seconds",
            "2",
            "--warmup",
            "0.5",
            "--ramp-seconds",
            "1",
            "--ramp-max-rps",
            "400",
            "--ramp-bisect",
            "1",
            "--reference",
            "none",
            "--json",
            out.s(),
        ],
        T,
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("added p99"), "no table:\n{stdout}");
    let text = std::fs::read_to_string(&out.0).expect("the JSON report was written");
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    let cases = report["cases"].as_array().expect("cases is an array");
    let names: Vec<&str> = cases.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["non-streaming", "streaming"], "{report}");
    for c in cases {
        for key in KEYS {
            assert!(n(c, key).is_finite(), "{key} in {c}");
        }
        assert_eq!(n(c, "rps"), 200.0);
        assert_eq!(n(c, "errors"), 0.0, "a request failed: {c}");
        for path in ["direct", "gateway"] {
            let s = &c[path];
            assert_eq!(n(s, "requests"), 400.0, "{path} sent 200/s for 2 s: {s}");
            assert_eq!(n(s, "errors"), 0.0, "{path}: {s}");
            assert!(
                n(s, "p50_ms") > 0.0 && n(s, "p50_ms") <= n(s, "p99_ms"),
                "{s}"
            );
            assert_eq!(n(c, &format!("{path}_p99_ms")), round3(n(s, "p99_ms")));
        }
        for (added, gw, direct) in [
            ("added_p50_ms", "gateway_p50_ms", "direct_p50_ms"),
            ("added_p99_ms", "gateway_p99_ms", "direct_p99_ms"),
        ] {
            let want = n(c, gw) - n(c, direct);
            assert!((n(c, added) - want).abs() < 0.002, "{added} in {c}");
        }
        // The ramp starts at --rps and never goes past its ceiling; max_rps is a rate that
        // passed (or 0 when none did); no step saw a failed request.
        let ramp = c["ramp"].as_array().expect("ramp is an array");
        assert!(!ramp.is_empty(), "{c}");
        assert_eq!(n(&ramp[0], "rps"), 200.0);
        let max = n(c, "max_rps");
        assert!(
            max == 0.0
                || ramp
                    .iter()
                    .any(|s| n(s, "rps") == max && s["passed"] == Value::Bool(true)),
            "{c}"
        );
        for s in ramp {
            assert!(n(s, "rps") <= 400.0, "{s}");
            assert_eq!(n(s, "errors"), 0.0, "{s}");
        }
    }
}

#[test]
fn nonsense_settings_are_refused_clearly() {
    let (status, _, stderr) = run(&["bench", "overhead", "--rps", "0"], T);
    assert!(!status.success());
    assert!(
        stderr.contains("--rps must be a positive number"),
        "{stderr}"
    );
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[test]
fn with_state_the_redis_gateway_runs_side_by_side_with_the_memory_one() {
    let redis = common::redis::RedisServer::start();
    let out = TempFile::named("overhead-redis.json");
    let url = redis.url();
    let (status, stdout, stderr) = run(
        &[
            "bench",
            "overhead",
            "--rps",
            "100",
            "--seconds",
            "1",
            "--warmup",
            "0.2",
            "--cases",
            "non-streaming",
            "--state",
            &url,
            "--reference",
            "none",
            "--json",
            out.s(),
        ],
        T,
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Redis state"), "no Redis table:\n{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out.0).expect("report written"))
            .expect("the report is JSON");
    assert_eq!(n(&report["settings"], "quota_rpm"), 12_000.0, "{report}");
    let c = &report["cases"][0];
    assert_eq!(n(c, "errors"), 0.0, "{c}");
    assert!(c["ramp"].as_array().is_some_and(Vec::is_empty), "{c}");
    let r = &c["redis"];
    assert_eq!(n(&r["gateway"], "requests"), 100.0, "{r}");
    assert_eq!(n(&r["gateway"], "errors"), 0.0, "{r}");
    let want = n(r, "gateway_p99_ms") - n(c, "gateway_p99_ms");
    assert!((n(r, "added_p99_ms") - want).abs() < 0.002, "{r}");
}

#[test]
fn state_that_does_not_answer_is_refused() {
    let port = common::redis::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let (status, _, stderr) = run(&["bench", "overhead", "--state", &url], T);
    assert!(!status.success());
    assert!(stderr.contains("does not answer"), "{stderr}");
}

/// nginx and wrk, when the machine has them (Debian: `nginx-light wrk`); the test says so and
/// passes without them, as the command itself skips the comparison.
fn reference_tools() -> bool {
    let found = |name: &str| {
        std::process::Command::new("sh")
            .args([
                "-c",
                &format!("command -v {name} || test -x /usr/sbin/{name}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    found("nginx") && found("wrk")
}

#[test]
fn reference_puts_spillway_beside_nginx_and_the_redis_gateway_beside_memory() {
    if !reference_tools() {
        eprintln!("nginx or wrk is not installed: the reference comparison is not tested here");
        return;
    }
    let redis = common::redis::RedisServer::start();
    let out = TempFile::named("overhead-reference.json");
    let url = redis.url();
    let (status, stdout, stderr) = run(
        &[
            "bench",
            "overhead",
            "--reference-only",
            "--reference",
            "nginx",
            "--rps",
            "100",
            "--seconds",
            "1",
            "--warmup",
            "0.2",
            "--wrk-seconds",
            "1",
            "--state",
            &url,
            "--json",
            out.s(),
        ],
        T,
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("spillway vs nginx: max rps"), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&out.0).expect("report written"))
            .expect("the report is JSON");
    assert!(
        report["cases"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    let r = &report["reference"];
    let paths = r["paths"].as_array().expect("paths");
    let names: Vec<&str> = paths.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names,
        ["direct", "nginx", "hyper", "spillway", "spillway-redis"],
        "{r}"
    );
    for p in paths {
        assert_eq!(n(&p["open_loop"], "requests"), 100.0, "{p}");
        assert_eq!(n(p, "errors"), 0.0, "{p}");
        assert_eq!(n(&p["wrk"], "errors"), 0.0, "{p}");
        assert!(n(&p["wrk"], "rps") > 0.0, "{p}");
    }
    let rps = |i: usize| n(&paths[i]["wrk"], "rps");
    let close = |key: &str, ratio: f64| (n(r, key) - ratio).abs() < 0.002;
    assert!(close("max_rps_vs_nginx", rps(3) / rps(1)), "{r}");
    assert!(close("hyper_vs_nginx", rps(2) / rps(1)), "{r}");
    assert!(close("max_rps_vs_hyper", rps(3) / rps(2)), "{r}");
    let redis_ratio = rps(4) / rps(3);
    assert!(
        (n(&r["redis"], "max_rps_vs_memory") - redis_ratio).abs() < 0.002,
        "{r}"
    );
    assert_eq!(n(&r["redis"], "quota_rpm"), 6_000_000.0, "{r}");
}

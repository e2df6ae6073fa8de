//! `spillway bench --self-contained`, run as the binary a user would run: the JSON report's
//! shape and invariants, the HTML page, a JSONL trace, and a malformed trace refused clearly.
mod common;

use std::time::Duration;

use common::{TempFile, run};
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

const KEYS: [&str; 14] = [
    "name",
    "offered",
    "served",
    "throttled",
    "failed",
    "goodput_rps",
    "goodput_vs_oracle",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "e2e_p99_ms",
    "locality",
    "spilled",
    "residency_violations",
];

fn n(p: &Value, key: &str) -> f64 {
    p[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {p}"))
}

/// Runs the bench with `args` plus `--json`; returns the report and stdout.
fn bench(args: &[&str], json: &TempFile) -> (Value, String) {
    let mut all = vec!["bench", "--self-contained", "--json", json.s()];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = run(&all, T);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let text = std::fs::read_to_string(&json.0).expect("the JSON report was written");
    let v: Value = serde_json::from_str(&text).expect("the JSON report parses");
    (v, stdout)
}

fn check_invariants(v: &Value, policies: &[&str]) {
    let list = v["policies"].as_array().expect("policies is an array");
    let names: Vec<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, policies, "{v}");
    assert!(n(&v["oracle"], "goodput_rps") > 0.0, "{}", v["oracle"]);
    for p in list {
        let obj = p.as_object().expect("a policy is an object");
        for k in KEYS {
            assert!(obj.contains_key(k), "{k} missing from {p}");
        }
        assert!(n(p, "offered") > 0.0, "{p}");
        assert_eq!(
            n(p, "served") + n(p, "throttled") + n(p, "failed"),
            n(p, "offered"),
            "{p}"
        );
        assert_eq!(n(p, "residency_violations"), 0.0, "{p}");
        assert!(n(p, "served") > 0.0, "nothing served: {p}");
        assert!((0.0..=1.0).contains(&n(p, "locality")), "{p}");
        assert!(
            (n(p, "locality") + n(p, "spilled") - 1.0).abs() < 1e-3,
            "{p}"
        );
        // The eu regions are another geography: never used.
        for r in ["eu-west-1", "eu-central-1"] {
            assert!(p["served_by_region"].get(r).is_none(), "{r} served: {p}");
        }
    }
    if let Some(inr) = list.iter().find(|p| p["name"] == "in-region") {
        assert_eq!(n(inr, "locality"), 1.0, "{inr}");
    }
}

#[test]
fn poisson_run_reports_every_policy_and_draws_the_charts() {
    let (json, html) = (
        TempFile::named("poisson.json"),
        TempFile::named("poisson.html"),
    );
    let (v, stdout) = bench(
        &[
            "--poisson",
            "20",
            "--limit",
            "150",
            "--time-scale",
            "10",
            "--html",
            html.s(),
        ],
        &json,
    );
    eprintln!("{stdout}");
    check_invariants(
        &v,
        &["in-region", "round-robin", "least-loaded", "spillway"],
    );
    for p in v["policies"].as_array().expect("policies") {
        assert_eq!(n(p, "offered"), 150.0, "{p}");
    }
    assert!(
        stdout.contains("policy") && stdout.contains("oracle"),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&html.0).expect("the HTML report was written");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("<svg") && page.contains("</svg>"));
    assert!(page.contains("spillway") && page.contains("round-robin"));
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn jsonl_trace_replays_across_regions() {
    let trace = TempFile::named("trace.jsonl");
    let mut lines = String::new();
    for i in 0..40u64 {
        // A burst in the first second, then a trickle.
        let t = if i < 24 {
            i * 40
        } else {
            1000 + (i - 24) * 250
        };
        lines += &format!(
            "{{\"timestamp\": {t}, \"input_length\": {}, \"output_length\": {}}}\n",
            100 + 10 * i,
            4 + i % 8
        );
    }
    std::fs::write(&trace.0, lines).expect("write the trace");
    let json = TempFile::named("trace.json");
    let (v, _) = bench(
        &[
            "--trace",
            trace.s(),
            "--time-scale",
            "4",
            "--policies",
            "in-region,spillway",
        ],
        &json,
    );
    check_invariants(&v, &["in-region", "spillway"]);
    // 40 requests per source region.
    assert_eq!(n(&v["policies"][0], "offered"), 120.0);
    assert!(
        v["setup"]["arrivals"]
            .as_str()
            .is_some_and(|a| a.contains("trace")),
        "{}",
        v["setup"]
    );
}

#[test]
fn malformed_trace_is_refused_with_its_line() {
    let trace = TempFile::named("bad.csv");
    std::fs::write(
        &trace.0,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,10,2\n2023-11-16 18:17:04,ten,2\n",
    )
    .expect("write the trace");
    let (status, stdout, stderr) = run(&["bench", "--self-contained", "--trace", trace.s()], T);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("{}:3: ContextTokens \"ten\"", trace.s())),
        "{stderr}"
    );
    let (status, _, stderr) = run(&["bench", "--poisson", "5"], T);
    assert!(!status.success());
    assert!(stderr.contains("--self-contained"), "{stderr}");
}

//! `spillway bench streams`, small: fifty streams of two seconds through a real `spillway serve`
//! child all succeed, in the us regions, and the report's figures are sane (memory per stream is
//! only reported: fifty streams say nothing about the bar).
mod common;

use std::time::Duration;

use common::{TempFile, US, run};
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

fn n(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn fifty_short_streams_succeed_and_the_report_has_its_figures() {
    let out = TempFile::named("streams.json");
    let (status, stdout, stderr) = run(
        &[
            "bench",
            "streams",
            "--streams",
            "50",
            "--stream-secs",
            "2",
            "--ramp-secs",
            "0.5",
            "--warmup",
            "4",
            "--settle-secs",
            "1",
            "--gateway-nofile",
            "1024",
            "--json",
            out.s(),
        ],
        T,
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "RSS MiB",
        "open fds",
        "tokio tasks",
        "KiB",
        "issue 16's bars",
    ] {
        assert!(stdout.contains(row), "no {row} in the table:\n{stdout}");
    }
    let text = std::fs::read_to_string(&out.0).expect("the JSON report was written");
    let r: Value = serde_json::from_str(&text).expect("the report is JSON");

    // Every stream ended with [DONE], served in a us region.
    assert_eq!(n(&r, "ok"), 50.0, "{}\n{stdout}", r["failures"]);
    assert_eq!(n(&r, "failed"), 0.0, "{}", r["failures"]);
    assert_eq!(n(&r, "residency_violations"), 0.0);
    let regions = r["regions"].as_object().expect("regions");
    assert!(
        regions.keys().all(|k| US.contains(&k.as_str())),
        "{regions:?}"
    );
    let served: f64 = regions.values().filter_map(Value::as_f64).sum();
    assert_eq!(served, 50.0, "{regions:?}");

    // The figures: read at start, held, peak and after.
    for when in ["start", "peak", "after"] {
        for key in ["rss_kb", "fds", "threads", "tasks"] {
            assert!(n(&r[when], key) > 0.0, "{when}.{key} in {}", r[when]);
        }
    }
    let held = &r["held"];
    let in_flight = n(held, "streams_in_flight");
    assert!(in_flight > 0.0 && in_flight <= 50.0, "{held}");
    // Each stream held takes a client connection (and an upstream one) in the gateway.
    assert!(
        n(&held["sample"], "fds") >= n(&r["start"], "fds") + in_flight,
        "{held}"
    );
    assert!(n(&r["peak"], "rss_kb") >= n(&held["sample"], "rss_kb"));
    assert!(
        n(&r, "kib_per_stream").is_finite(),
        "{}",
        r["kib_per_stream"]
    );
    let q = &r["first_chunk_ms"];
    assert_eq!(n(q, "n"), 50.0, "{q}");
    assert!(n(q, "p50") > 0.0 && n(q, "p50") <= n(q, "p99"), "{q}");
    assert!(r["bars"]["per_stream_met"].is_boolean());
    assert!(r["bars"]["after_within_20pct_met"].is_boolean());
    assert_eq!(n(&r["gateway"], "nofile_limit"), 1024.0);
    assert!(!r["timeline"].as_array().expect("timeline").is_empty());
}

//! `spillway bench soak`, short: the report's shape, and the gateway's open descriptors back
//! within 10% of their start once the load is over (RSS is only reported: what the allocator
//! keeps is not a leak the test could tell apart).
//!
//! The settle may last up to about two minutes: the gateway keeps idle upstream connections in
//! its HTTP client's pool for 60 s, closed on a timer of that period, and the descriptors are
//! back only when they are gone.
mod common;

use std::time::Duration;

use common::{TempFile, run};
use serde_json::Value;

const T: Duration = Duration::from_secs(300);

fn n(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn check_figures(r: &Value) {
    for when in ["before", "peak", "after"] {
        for key in ["rss_kb", "fds", "threads"] {
            assert!(n(&r[when], key) > 0.0, "{when}.{key} in {}", r[when]);
            assert!(
                n(&r["peak"], key) >= n(&r[when], key),
                "peak {key} below {when}"
            );
        }
    }
    let samples = r["samples"].as_array().expect("samples");
    assert!(samples.len() >= 3, "a sample a second: {samples:?}");
    // The gateway started here has an admin listener: its tokio tasks are read.
    assert!(r["tasks_note"].is_null(), "{}", r["tasks_note"]);
    for when in ["before", "peak", "after"] {
        assert!(n(&r[when], "tasks") > 0.0, "{when}.tasks in {}", r[when]);
    }
    assert!(
        n(&r["peak"], "tasks") > n(&r["before"], "tasks"),
        "the load ran tasks"
    );
    for key in ["rss", "fds", "threads", "tasks"] {
        assert!(n(&r["change_pct"], key).is_finite());
        assert!(r["within_10pct"][key].is_boolean());
    }
}

fn check_requests(r: &Value) {
    let req = &r["requests"];
    let mut ok = 0.0;
    let mut failed = 0.0;
    for kind in [
        "chat",
        "chat-stream",
        "converse",
        "converse-stream",
        "disconnect",
        "slow-reader",
        "idle",
    ] {
        let c = &req[kind];
        for key in ["ok", "cut", "throttled", "failed"] {
            assert!(n(c, key) >= 0.0, "{kind}.{key}: {c}");
        }
        ok += n(c, "ok");
        failed += n(c, "failed");
    }
    for kind in [
        "chat",
        "chat-stream",
        "converse",
        "converse-stream",
        "disconnect",
    ] {
        assert!(
            n(&req[kind], "ok") > 0.0,
            "no {kind} request succeeded: {req}"
        );
    }
    assert!(ok > 10.0 * failed, "ok {ok}, failed {failed}: {req}");
    // Idle connections are closed by the gateway at its header-read timeout (2 s here).
    let idle = &req["idle"];
    assert!(n(idle, "cut") >= 8.0, "{idle}");
    assert!(n(idle, "cut_after_min_secs") >= 1.5, "{idle}");
    assert!(n(idle, "cut_after_max_secs") < 5.0, "{idle}");
    assert!(
        !r["fault_turns"].as_array().expect("fault turns").is_empty(),
        "no fault was switched on"
    );
}

#[test]
fn a_short_soak_reports_its_figures_and_the_descriptors_come_back() {
    let out = TempFile::named("soak.json");
    let (status, stdout, stderr) = run(
        &[
            "bench",
            "soak",
            "--duration",
            "5s",
            "--sample-secs",
            "1",
            "--header-read-timeout-ms",
            "2000",
            "--settle-secs",
            "180",
            "--json",
            out.s(),
        ],
        T,
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "RSS MiB",
        "open fds",
        "threads",
        "tokio tasks",
        "slow-reader",
        "idle",
    ] {
        assert!(stdout.contains(row), "no {row} in the table:\n{stdout}");
    }
    let text = std::fs::read_to_string(&out.0).expect("the JSON report was written");
    let r: Value = serde_json::from_str(&text).expect("the report is JSON");
    assert_eq!(r["gateway"]["started_here"], true, "{}", r["gateway"]);
    assert_eq!(n(&r, "duration_secs"), 5.0);
    check_figures(&r);
    check_requests(&r);
    // The descriptors: back within 10% of their start before the settle's deadline.
    let (before, after) = (n(&r["before"], "fds"), n(&r["after"], "fds"));
    assert!(
        after <= before * 1.1,
        "fds {before} before, {after} after: {}\n{stdout}",
        r["fds_after"]
    );
    assert_eq!(r["within_10pct"]["fds"], true);
    assert_eq!(r["within_10pct"]["tasks"], true, "tasks: {}", r["after"]);
    assert_eq!(r["settle"]["reached"], true, "{}", r["settle"]);
    assert_eq!(n(&r["settle"], "idle_still_open"), 0.0);
}

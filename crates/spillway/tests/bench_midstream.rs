//! `spillway bench midstream`, briefly: forty streams in two seconds per run, for each kind of
//! break. With failover on no stream is lost and the broken ones are continued whole; with it
//! off the same schedule loses streams; none leaves the `us` set (about 30 s).
mod common;

use std::time::Duration;

use common::{TempFile, run};
use serde_json::Value;

fn n(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn failover_on_loses_no_stream_where_off_loses_some() {
    let out = TempFile::named("midstream.json");
    let (status, stdout, stderr) = run(
        &[
            "bench",
            "midstream",
            "--streams",
            "40",
            "--seconds",
            "2",
            "--json",
            out.s(),
        ],
        Duration::from_secs(180),
    );
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{stdout}");
    for col in ["lost", "continued", "gap p50", "gap p99", "token p50"] {
        assert!(stdout.contains(col), "no {col} in the table:\n{stdout}");
    }
    let text = std::fs::read_to_string(&out.0).expect("the JSON report was written");
    let r: Value = serde_json::from_str(&text).expect("the report is JSON");
    let runs = r["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 6, "three kinds, on and off: {r}");
    for kind in ["reset", "error-event", "stall"] {
        let row = |failover: bool| {
            runs.iter()
                .find(|x| x["kind"] == kind && x["failover"] == failover)
                .unwrap_or_else(|| panic!("no {kind} run with failover {failover}: {r}"))
        };
        let (on, off) = (row(true), row(false));
        for x in [on, off] {
            assert_eq!(n(x, "sent"), 40.0, "{x}");
            assert!(n(x, "broken") > 0.0, "the fault broke nothing: {x}");
            assert_eq!(n(x, "residency_violations"), 0.0, "{x}");
            assert_eq!(n(x, "text_mismatches"), 0.0, "{x}");
        }
        assert_eq!(n(on, "lost"), 0.0, "{on}");
        assert!(n(off, "lost") > 0.0, "{off}");
        assert_eq!(n(on, "continued"), n(on, "broken"), "{on}");
        assert_eq!(n(off, "continued"), 0.0, "{off}");
        // The client saw a gap at the break: at least the new leg's time to first token.
        assert!(
            n(on, "resume_gap_p50_ms") > n(on, "token_gap_p50_ms"),
            "{on}"
        );
    }
}

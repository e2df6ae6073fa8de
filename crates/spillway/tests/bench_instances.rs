//! `spillway bench --self-contained --state redis://… --instances N`: each policy served by
//! several gateway instances sharing a real `redis-server`, as a user would run it.
mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{TempFile, run};
use serde_json::Value;

const T: Duration = Duration::from_secs(180);

fn n(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn three_instances_share_one_redis_and_keep_residency() {
    let redis = RedisServer::start();
    let trace = TempFile::conversations("instances.jsonl");
    let json = TempFile::named("instances.json");
    let url = redis.url();
    let args = [
        "bench",
        "--self-contained",
        "--json",
        json.s(),
        "--trace",
        trace.s(),
        "--time-scale",
        "4",
        "--prefix-cache-blocks",
        "64",
        "--policies",
        "spillway,spillway-cache",
        "--state",
        &url,
        "--instances",
        "3",
    ];
    let (status, stdout, stderr) = run(&args, T);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&json.0).expect("the JSON report"))
            .expect("the JSON report parses");
    for p in v["policies"].as_array().expect("policies") {
        assert_eq!(n(p, "residency_violations"), 0.0, "{p}");
        assert_eq!(n(p, "failed"), 0.0, "{p}");
        assert_eq!(n(p, "served"), n(p, "offered"), "{p}");
        assert!(n(&p["prefix"], "hit_blocks") > 0.0, "{p}");
    }
    let notes = v["notes"].to_string();
    assert!(notes.contains("3 gateway instance(s)"), "{notes}");
    // Each policy's run had keys of its own; the instances wrote where their prompts went (the
    // shared prefix estimate) and spent the tenant's quota, each under its own instance id
    // (the quota's operation keys end in `:op:<instance id>-<n>`): three instances served.
    for policy in ["spillway", "spillway-cache"] {
        let keys = redis.command(&["KEYS", &format!("spillway-bench:*:{policy}:*")]);
        assert!(keys.contains(":prefix"), "{policy}: {keys}");
        let mut ids: Vec<&str> = keys
            .lines()
            .filter_map(|k| k.split(":op:").nth(1))
            .filter_map(|op| op.rsplit_once('-').map(|(id, _)| id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{policy}: {keys}");
    }
}

#[test]
fn several_instances_need_a_state_to_share() {
    let trace = TempFile::conversations("instances.jsonl");
    let (status, _, stderr) = run(
        &[
            "bench",
            "--self-contained",
            "--trace",
            trace.s(),
            "--instances",
            "3",
        ],
        T,
    );
    assert!(!status.success());
    assert!(stderr.contains("--instances 3 needs --state"), "{stderr}");
    // And a state is for the self-contained topology.
    let (status, _, stderr) = run(
        &[
            "bench",
            "--target",
            "us-east-1=http://127.0.0.1:9",
            "--state",
            "redis://127.0.0.1:9",
        ],
        T,
    );
    assert!(!status.success());
    assert!(stderr.contains("--self-contained"), "{stderr}");
}

//! `spillway bench --self-contained`, run as the binary a user would run: the JSON report's
//! shape and invariants, the HTML page, a JSONL trace, and a malformed trace refused clearly.
mod common;

use std::time::Duration;

use common::{Proc, TempFile, run};
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

/// Runs `spillway ARGS`, which must fail with `message` on stderr.
fn refused(args: &[&str], message: &str) {
    let (status, _, stderr) = run(args, T);
    assert!(!status.success(), "{args:?} succeeded");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

fn check_invariants(v: &Value, policies: &[&str]) {
    let list = v["policies"].as_array().expect("policies is an array");
    let names: Vec<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, policies, "{v}");
    let oracle = &v["oracle"];
    assert!(n(oracle, "goodput_rps") > 0.0, "{oracle}");
    // The oracle bounds every policy, and a feasible schedule reaches at most the bound.
    assert!(
        n(oracle, "schedule_served") <= n(oracle, "served") + 1e-6
            && n(oracle, "served") <= n(oracle, "offered") + 1e-6,
        "{oracle}"
    );
    for p in list {
        assert!(n(p, "goodput_vs_oracle") <= 1.005, "above the bound: {p}");
    }
    let share = n(oracle, "in_region_served") / n(oracle, "served");
    assert!(
        (n(oracle, "local_share") - share).abs() < 1e-9 && share > 0.0 && share <= 1.0,
        "{oracle}"
    );
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
    // The same arrivals, `policies` and `extra` options.
    let replay = |policies: &str, extra: &[&str], json: &TempFile| {
        let mut args = vec![
            "--trace",
            trace.s(),
            "--time-scale",
            "4",
            "--policies",
            policies,
        ];
        args.extend_from_slice(extra);
        bench(&args, json)
    };
    let setup_says = |v: &Value, key: &str, needle: &str| {
        assert!(
            v["setup"][key].as_str().is_some_and(|a| a.contains(needle)),
            "{}",
            v["setup"]
        );
    };
    let json = TempFile::named("trace.json");
    let (v, _) = replay("in-region,spillway", &[], &json);
    check_invariants(&v, &["in-region", "spillway"]);
    // 40 requests per source region.
    assert_eq!(n(&v["policies"][0], "offered"), 120.0);
    setup_says(&v, "arrivals", "trace");
    // Sized from the arrivals: a region alone would refuse at most 10 % of its source's.
    let slots = n(&v["setup"], "concurrency");
    setup_says(&v, "concurrency_from", "refuses at most 10%");
    // Letting a region alone refuse half its burst takes fewer slots.
    let loose = TempFile::named("trace-loose.json");
    let (v, _) = replay("spillway", &["--overflow", "50"], &loose);
    setup_says(&v, "concurrency_from", "refuses at most 50%");
    check_invariants(&v, &["spillway"]);
    assert!(n(&v["setup"], "concurrency") < slots, "{}", v["setup"]);
    for bad in ["--overflow=100", "--overflow=-1", "--overflow=NaN"] {
        refused(
            &["bench", "--self-contained", "--trace", trace.s(), bad],
            "--overflow must be a percentage",
        );
    }
    refused(
        &[
            "bench",
            "--self-contained",
            "--trace",
            trace.s(),
            "--overflow",
            "5",
            "--concurrency",
            "4",
        ],
        "cannot be used with",
    );
}

/// Conversations of a few turns whose prompts grow by a block a turn (Mooncake-style
/// `hash_ids`): with prefix caches, every policy reports its hit rate, the cache-aware ones
/// route inside the profile like the others, and the oracle (counting cached prefill) and the
/// prefill floor still bound them.
#[test]
fn prefix_caches_are_reported_per_policy() {
    let trace = TempFile::conversations("hashed.jsonl");
    let json = TempFile::named("hashed.json");
    let policies = ["least-loaded", "spillway", "spillway-cache"];
    let (v, stdout) = bench(
        &[
            "--trace",
            trace.s(),
            "--time-scale",
            "4",
            "--prefix-cache-blocks",
            "64",
            "--policies",
            &policies.join(","),
        ],
        &json,
    );
    check_invariants(&v, &policies);
    for p in v["policies"].as_array().expect("policies") {
        let f = &p["prefix"];
        // Turns 2–4 of each conversation find earlier turns' blocks somewhere.
        assert!(
            n(f, "hit_blocks") > 0.0 && n(f, "prefill_tokens") > 0.0,
            "{p}"
        );
        // No policy prefills less than the floor of the requests it served, and the floor is
        // more than the conversations' distinct blocks alone would be at zero.
        let floor = n(f, "floor_tokens");
        assert!(floor > 0.0 && floor <= n(f, "prefill_tokens"), "{p}");
    }
    assert!(stdout.contains("its floor of"), "{stdout}");
    assert!(!stdout.contains("error:"), "{stdout}");
    for name in policies {
        assert!(
            stdout.contains(&format!("prefix cache: {name} ")),
            "{stdout}"
        );
    }
    // Without caches, no prefix figures.
    let plain = TempFile::named("unhashed.json");
    let (v, stdout) = bench(
        &[
            "--trace",
            trace.s(),
            "--time-scale",
            "4",
            "--policies",
            "spillway",
        ],
        &plain,
    );
    assert!(v["policies"][0].get("prefix").is_none(), "{v}");
    assert!(!stdout.contains("prefix cache:"), "{stdout}");
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

/// A gateway configuration over the us regions and two eu regions, model `bench.chat-v1:0`:
/// `upstream(i, region)` gives each deployment's upstream, `listeners` the source regions.
fn gateway_config(upstream: impl Fn(usize, &str) -> String, listeners: &[&str]) -> String {
    let regions = [
        ("us-east-1", "us"),
        ("us-east-2", "us"),
        ("us-west-2", "us"),
        ("eu-west-1", "eu"),
        ("eu-central-1", "eu"),
    ];
    let mut t = String::from("[routing]\nmax_attempts = 3\n\n");
    for (r, g) in regions {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    t += "[[models]]\nid = \"bench.chat-v1:0\"\n\n";
    for (i, (r, _)) in regions.iter().enumerate() {
        t += &format!(
            "[[deployments]]\nmodel = \"bench.chat-v1:0\"\nregion = \"{r}\"\nmax_in_flight = 4\nupstream = {}\n\n",
            upstream(i, r)
        );
    }
    t += &format!(
        "[[tenants]]\nname = \"t1\"\napi_keys = [{{ sha256 = \"{}\" }}]\n\n",
        common::DEMO_KEY_SHA256
    );
    for r in listeners {
        t += &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"{r}\"\n\n");
    }
    t += "[admin]\nbind = \"127.0.0.1:0\"\n\n";
    t
}

/// Small, fast arrivals: 20 req/s per source for 3 s of trace time, replayed at ×10.
const SMALL: [&str; 10] = [
    "--poisson",
    "20",
    "--duration",
    "3",
    "--time-scale",
    "10",
    "--input-tokens",
    "100",
    "--output-tokens",
    "8",
];

fn regions_served(p: &Value) -> Vec<String> {
    p["served_by_region"]
        .as_object()
        .expect("served_by_region is an object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn target_mode_drives_a_running_gateway_per_source_region() {
    let cfg = TempFile::new(
        "target",
        &gateway_config(
            |_, _| "{ kind = \"sim\", concurrency = 4, queue_limit = 4, time_scale = 10.0 }".into(),
            &["us-east-1", "us-east-2"],
        ),
    );
    let gw = Proc::spawn(common::bin().args(["serve", "--config", cfg.s()]));
    let a = gw.wait_listening("us-east-1", T);
    let b = gw.wait_listening("us-east-2", T);
    let (ta, tb) = (
        format!("us-east-1=http://{a}"),
        format!("us-east-2=http://{b}/v1"),
    );
    let json = TempFile::named("target.json");
    let mut args = vec![
        "bench",
        "--target",
        &ta,
        "--target",
        &tb,
        "--model",
        "us.bench.chat-v1:0",
        "--api-key",
        common::DEMO_KEY,
        "--concurrency",
        "4",
        "--json",
        json.s(),
    ];
    args.extend_from_slice(&SMALL);
    let (status, stdout, stderr) = run(&args, T);
    assert!(status.success(), "{stdout}\n{stderr}\n{}", gw.output());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json.0).expect("json written"))
        .expect("json parses");
    let p = &v["policies"][0];
    assert_eq!(v["policies"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(p["name"], "target");
    for k in KEYS {
        assert!(p.get(k).is_some(), "{k} missing from {p}");
    }
    assert_eq!(
        n(p, "served") + n(p, "throttled") + n(p, "failed"),
        n(p, "offered")
    );
    assert!(n(p, "served") > 0.0 && n(p, "offered") > 40.0, "{p}");
    assert_eq!(n(p, "residency_violations"), 0.0, "{p}");
    assert!(n(&v["oracle"], "goodput_rps") > 0.0, "{v}");
    assert!(n(p, "goodput_vs_oracle") > 0.0, "{p}");
    let served = regions_served(p);
    assert!(
        served.iter().all(|r| r.starts_with("us-")),
        "served outside the us: {p}"
    );
    assert_eq!(
        v["setup"]["sources"],
        serde_json::json!(["us-east-1", "us-east-2"])
    );
    assert!(stdout.contains("target"), "{stdout}");

    // No capacity: the oracle is skipped, and said so; the key comes from the environment.
    let json2 = TempFile::named("target2.json");
    let mut args = vec![
        "bench",
        "--target",
        &ta,
        "--model",
        "us.bench.chat-v1:0",
        "--allowed-regions",
        "us-east-1,us-east-2,us-west-2",
        "--json",
        json2.s(),
    ];
    args.extend_from_slice(&SMALL);
    let mut p2 = Proc::spawn(
        common::bin()
            .args(&args)
            .env("SPILLWAY_API_KEY", common::DEMO_KEY),
    );
    let st = p2.wait_exit(T).expect("bench exits");
    assert!(st.success(), "{}", p2.output());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json2.0).expect("json written"))
        .expect("json parses");
    assert!(v["oracle"].is_null(), "{v}");
    assert!(
        v["notes"].to_string().contains("oracle skipped"),
        "{}",
        v["notes"]
    );
    assert_eq!(n(&v["policies"][0], "residency_violations"), 0.0);
    assert!(p2.stdout.text().contains("skipped"), "{}", p2.output());
}

#[test]
fn target_mode_refuses_missing_model_and_key() {
    refused(
        &["bench", "--target", "us-east-1", "--poisson", "1"],
        "expected REGION=URL",
    );
    refused(
        &[
            "bench",
            "--target",
            "us-east-1=http://127.0.0.1:9",
            "--poisson",
            "1",
        ],
        "--model",
    );
    let mut p = Proc::spawn(
        common::bin()
            .args([
                "bench",
                "--target",
                "us-east-1=http://127.0.0.1:9",
                "--model",
                "m",
                "--poisson",
                "1",
            ])
            .env_remove("SPILLWAY_API_KEY"),
    );
    assert!(!p.wait_exit(T).expect("exits").success());
    assert!(
        p.stderr.text().contains("SPILLWAY_API_KEY"),
        "{}",
        p.output()
    );
    refused(
        &[
            "bench",
            "--target",
            "us-east-1=http://127.0.0.1:9",
            "--self-contained",
            "--poisson",
            "1",
        ],
        "cannot be used with",
    );
    refused(
        &["bench", "--peer", "http://127.0.0.1:9"],
        "--peer needs --peer-model",
    );
}

/// `n` consecutive free loopback ports (checked by binding them; released before use).
fn free_ports(n: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 104_729) % 40_000) as u16;
        let held: Vec<_> = (0..n)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

#[test]
fn peer_mode_attributes_a_second_gateway_from_the_simulators_records() {
    // Five simulator ports and the peer's own.
    let base = free_ports(6);
    let peer_port = base + 5;
    let cfg = TempFile::new(
        "peer",
        &gateway_config(
            |i, _| {
                format!(
                    "{{ kind = \"openai\", base_url = \"http://127.0.0.1:{}/v1\" }}",
                    base + i as u16
                )
            },
            &["us-east-1"],
        ),
    );
    let json = TempFile::named("peer.json");
    let html = TempFile::named("peer.html");
    let (peer_url, base_s) = (format!("http://127.0.0.1:{peer_port}"), base.to_string());
    let mut args = vec![
        "bench",
        "--self-contained",
        "--policies",
        "spillway",
        "--peer",
        &peer_url,
        "--peer-model",
        "us.bench.chat-v1:0",
        "--peer-name",
        "spillway-peer",
        "--sim-base-port",
        &base_s,
        "--api-key",
        common::DEMO_KEY,
        "--peer-timeout",
        "60",
        "--concurrency",
        "4",
        "--json",
        json.s(),
        "--html",
        html.s(),
    ];
    args.extend_from_slice(&SMALL);
    let mut bench = Proc::spawn(common::bin().args(&args));
    // The bench prints the simulators' ports, then waits for the peer: start it now.
    let line = format!("http://127.0.0.1:{base}/v1");
    bench
        .stderr
        .wait_for(T, |l| l.contains("us-east-1") && l.contains(&line))
        .unwrap_or_else(|| panic!("no us-east-1 simulator line\n{}", bench.output()));
    bench
        .stderr
        .wait_for(T, |l| {
            l.contains("waiting for an OpenAI-compatible gateway")
        })
        .unwrap_or_else(|| panic!("no waiting line\n{}", bench.output()));
    let listen = format!("127.0.0.1:{peer_port}");
    let peer = Proc::spawn(common::bin().args(["serve", "--config", cfg.s(), "--listen", &listen]));
    peer.wait_listening("us-east-1", T);
    let st = bench.wait_exit(T).expect("bench exits");
    assert!(st.success(), "{}\n{}", bench.output(), peer.output());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json.0).expect("json written"))
        .expect("json parses");
    check_invariants(&v, &["spillway", "spillway-peer"]);
    let p = &v["policies"][1];
    // Every served request was found in a simulator's record, in the us.
    let served = regions_served(p);
    assert!(
        !served.is_empty() && served.iter().all(|r| r.starts_with("us-")),
        "{p}"
    );
    let total: f64 = p["served_by_region"]
        .as_object()
        .map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum());
    assert_eq!(total, n(p, "served"), "{p}");
    assert_eq!(v["notes"], serde_json::json!([]), "{v}");
    let page = std::fs::read_to_string(&html.0).expect("html written");
    assert!(page.contains("spillway-peer"));
}

//! `spillway check-config` and `spillway sim`, run as the binary a user would run.
mod common;

use std::time::{Duration, Instant};

use common::{DEMO_KEY_SHA256, Proc, TempFile, bin, default_toml, run, small_config};

const T: Duration = Duration::from_secs(30);

fn sha_key() -> String {
    // Any 64-hex-digit hash that is not the demo key's.
    format!("{{ sha256 = \"{}\" }}", "ab".repeat(32))
}

/// `check-config` on a file that must be refused: non-zero exit, and stderr names the file,
/// then each of `expected` (the key and what was expected).
fn refused(tag: &str, toml: &str, expected: &[&str]) -> String {
    let f = TempFile::new(tag, toml);
    let path = f.path().to_str().expect("utf-8 temp path").to_string();
    let (status, stdout, stderr) = run(&["check-config", &path], T);
    assert!(
        !status.success(),
        "{tag}: check-config accepted the file\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains(": OK"),
        "{tag}: stdout claims OK: {stdout}"
    );
    assert!(
        stderr.contains(&path),
        "{tag}: stderr does not name the file {path}:\n{stderr}"
    );
    for e in expected {
        assert!(stderr.contains(e), "{tag}: stderr lacks {e:?}:\n{stderr}");
    }
    assert!(
        !stderr.contains("panicked"),
        "{tag}: the binary panicked:\n{stderr}"
    );
    stderr
}

#[test]
fn check_config_accepts_the_embedded_default_and_prints_profiles() {
    let started = Instant::now();
    let path = default_toml();
    let (status, stdout, stderr) = run(&["check-config", path.to_str().expect("path")], T);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(stdout.contains(": OK"), "{stdout}");
    assert!(
        stdout.contains("6 regions, 3 models, 18 deployments, 1 tenants, 1 listeners"),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == "us.demo.chat-small-v1:0")
        .unwrap_or_else(|| panic!("no us.demo.chat-small-v1:0 profile:\n{stdout}"));
    // The profile's lines, up to the next profile id (which is indented less).
    let body: Vec<&str> = lines[header + 1..]
        .iter()
        .take_while(|l| l.starts_with("    "))
        .copied()
        .collect();
    let norm = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let body: Vec<String> = body.iter().map(|l| norm(l)).collect();
    assert_eq!(
        body,
        [
            "us-east-1 -> us-east-1, us-east-2, us-west-2",
            "us-east-2 -> us-east-2, us-east-1, us-west-2",
            "us-west-2 -> us-west-2, us-east-2, us-east-1",
        ],
        "{stdout}"
    );
    // No `us.` profile reaches an eu- region, from any source.
    let mut in_us = false;
    let mut us_lines = 0;
    for l in &lines {
        if l.starts_with("  ") && !l.starts_with("    ") {
            in_us = l.trim().starts_with("us.");
        } else if in_us && l.starts_with("    ") {
            us_lines += 1;
            assert!(!l.contains("eu-"), "us. profile line leaves the US: {l}");
        }
    }
    assert_eq!(
        us_lines, 9,
        "three us. profiles (two chat, one embedding) of three sources:\n{stdout}"
    );
    // And the global profile does reach Europe (the check above is not vacuous).
    assert!(stdout.contains("global.demo.chat-small-v1:0"), "{stdout}");
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn check_config_accepts_the_small_test_config() {
    let f = TempFile::new("ok", &small_config(&sha_key(), ""));
    let (status, stdout, stderr) = run(&["check-config", f.path().to_str().expect("path")], T);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(stdout.contains("us.demo.chat-small-v1:0"), "{stdout}");
}

#[test]
fn check_config_refuses_an_unknown_top_level_key() {
    let toml = format!("bogus = 1\n{}", small_config(&sha_key(), ""));
    refused(
        "unknown-key",
        &toml,
        &["unknown field `bogus`", "`listeners`"],
    );
}

#[test]
fn check_config_refuses_a_deployment_in_an_unknown_region() {
    let toml = small_config(&sha_key(), "").replacen(
        "region = \"us-east-1\"\nmax_in_flight",
        "region = \"mars-1\"\nmax_in_flight",
        1,
    );
    refused(
        "unknown-region",
        &toml,
        &[
            "key `deployments[0].region`",
            "unknown region \"mars-1\"",
            "us-east-1",
        ],
    );
}

#[test]
fn check_config_refuses_a_profile_that_leaves_its_geography() {
    let extra = "[[profiles]]\nid = \"us.demo.chat-small-v1:0\"\n\
                 sources = { \"us-east-1\" = [\"us-east-1\", \"eu-west-1\"] }\n";
    refused(
        "geo",
        &small_config(&sha_key(), extra),
        &[
            "key `profiles[0].sources.\"us-east-1\"[1]`",
            "\"eu-west-1\"",
            "geography",
        ],
    );
}

#[test]
fn check_config_refuses_a_key_hash_that_is_not_64_hex_digits() {
    for (tag, bad) in [("short", "abc123"), ("not-hex", &*"zz".repeat(32))] {
        refused(
            tag,
            &small_config(&format!("{{ sha256 = \"{bad}\" }}"), ""),
            &["key `tenants[0].api_keys[0].sha256`", "64 hex digits"],
        );
    }
}

#[test]
fn check_config_refuses_the_demo_key_on_a_public_listener() {
    let toml = small_config(&format!("{{ sha256 = \"{DEMO_KEY_SHA256}\" }}"), "")
        .replace("bind = \"127.0.0.1:0\"", "bind = \"0.0.0.0:0\"");
    refused(
        "demo-public",
        &toml,
        &["key `listeners[0].bind`", "demo key", "loopback"],
    );
}

#[test]
fn check_config_refuses_source_waits_out_of_range() {
    let with = |opts: &str| {
        small_config(&sha_key(), "").replacen(
            "[routing]\nmax_attempts = 3\n",
            &format!("[routing]\nmax_attempts = 3\n{opts}"),
            1,
        )
    };
    for bad in ["1.5", "-0.1", "nan"] {
        refused(
            "wait",
            &with(&format!("source_wait = {bad}\n")),
            &["key `routing.source_wait`", "0 to 1"],
        );
    }
    for bad in ["0", "-1.5", "nan"] {
        refused(
            "wait-ttft",
            &with(&format!("source_wait = 0.2\nsource_wait_ttft = {bad}\n")),
            &["key `routing.source_wait_ttft`", "positive multiple"],
        );
    }
    for bad in ["-1", "1.5", "\"one\""] {
        refused(
            "reserve",
            &with(&format!("spill_reserve = {bad}\n")),
            &["spill_reserve"],
        );
    }
    for bad in ["1.5", "-0.01", "nan"] {
        refused(
            "tail budget",
            &with(&format!("tail_budget = {bad}\n")),
            &["key `routing.tail_budget`", "0 to 1"],
        );
    }
}

#[test]
fn check_config_refuses_a_toml_syntax_error() {
    let toml = format!(
        "{}\n[[regions]\nname = \"x\"\n",
        small_config(&sha_key(), "")
    );
    refused("syntax", &toml, &["TOML parse error", "line"]);
}

#[test]
fn check_config_refuses_a_missing_file() {
    let path = std::env::temp_dir().join(format!(
        "spillway-test-{}-does-not-exist.toml",
        std::process::id()
    ));
    let p = path.to_str().expect("path");
    let (status, stdout, stderr) = run(&["check-config", p], T);
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(p) && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn sim_serves_one_request_and_records_it() {
    let started = Instant::now();
    let sim = Proc::spawn(bin().args([
        "sim",
        "--port",
        "0",
        "--region",
        "r1",
        "--time-scale",
        "100",
        "--text-seed",
        "42",
    ]));
    let line = sim
        .stdout
        .wait_for(T, |l| l.starts_with("spillway-sim r1 listening on http://"))
        .unwrap_or_else(|| panic!("no listening line\n{}", sim.output()));
    let base = line
        .trim_start_matches("spillway-sim r1 listening on ")
        .to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let messages = serde_json::json!([{"role": "user", "content": "hello"}]);
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .header("x-request-id", "cli-test-1")
            .json(&serde_json::json!({
                "model": "demo.chat-small-v1:0",
                "messages": messages,
                "max_tokens": 4
            }))
            .send()
            .await
            .expect("chat request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-sim-region"], "r1");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["usage"]["completion_tokens"], 4);
        // --text-seed: the words are the model's answer to this prompt.
        let fingerprint = spillway_sim::prompt_fingerprint(&messages);
        assert_eq!(
            body["choices"][0]["message"]["content"],
            spillway_sim::seeded_text(42, fingerprint, 0, 4)
        );

        let served: serde_json::Value = http
            .get(format!("{base}/admin/served"))
            .send()
            .await
            .expect("served")
            .json()
            .await
            .expect("json");
        assert_eq!(served["region"], "r1");
        let recs = served["served"].as_array().expect("served array");
        assert_eq!(recs.len(), 1, "{served}");
        assert_eq!(recs[0]["region"], "r1");
        assert_eq!(recs[0]["request_id"], "cli-test-1");
        assert_eq!(recs[0]["outcome"], "ok");
        assert_eq!(recs[0]["model"], "demo.chat-small-v1:0");
    });
    drop(sim); // killed by the guard
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn check_config_names_a_read_error_once() {
    let path = std::env::temp_dir().join(format!(
        "spillway-test-{}-missing-once.toml",
        std::process::id()
    ));
    let (status, _, stderr) = run(&["check-config", path.to_str().expect("path")], T);
    assert!(!status.success());
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

/// The commented example in `examples/` is a valid configuration (with the environment
/// variables it names set), and its profiles stay inside their geographies.
#[test]
fn the_example_configuration_is_valid() {
    let example =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/spillway.toml");
    let out = bin()
        .args(["check-config", example.to_str().expect("utf-8 path")])
        .env("PROVIDER_API_KEY", "p")
        .env("EU_GPU_KEY", "e")
        .env("SEARCH_TEAM_KEY", "s")
        .env("SEARCH_TEAM_AWS_SECRET", "a")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEUPSTREAM1")
        .env("AWS_SECRET_ACCESS_KEY", "u")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("us.meta.llama3-1-8b-instruct-v1:0"),
        "{stdout}"
    );
    let mut profile = "";
    for line in stdout.lines() {
        if line.starts_with("  ") && !line.starts_with("    ") {
            profile = line.trim();
        } else if line.starts_with("    ") && profile.starts_with("us.") {
            assert!(
                !line.contains("eu-"),
                "{profile} leaves its geography: {line}"
            );
        }
    }
}

/// Three different mistakes (an unknown key, a wrong type, a region that does not exist):
/// `check-config` and `serve -c` print all three, each with file, line and key, exit non-zero,
/// and show no backtrace even with RUST_BACKTRACE=1.
#[test]
fn three_mistakes_print_three_errors_and_no_backtrace() {
    let toml = small_config(&sha_key(), "")
        .replacen(
            "geography = \"us\"\n",
            "geography = \"us\"\ntypo_field = 1\n",
            1,
        )
        .replacen("max_in_flight = 4", "max_in_flight = \"four\"", 1)
        .replacen(
            "region = \"us-east-1\"\n\n[admin]",
            "region = \"mars-1\"\n\n[admin]",
            1,
        );
    let f = TempFile::new("three", &toml);
    for args in [vec!["check-config", f.s()], vec!["serve", "-c", f.s()]] {
        let mut p = Proc::spawn(
            bin()
                .args(&args)
                .env("RUST_BACKTRACE", "1")
                .env("RUST_LIB_BACKTRACE", "1"),
        );
        let status = p.wait_exit(T).expect("exits");
        let stderr = p.stderr.text();
        assert!(!status.success(), "{args:?} accepted it:\n{stderr}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
        assert!(stderr.contains("3 errors:"), "{stderr}");
        let listed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  - ")).collect();
        assert_eq!(listed.len(), 3, "{stderr}");
        for (key, why) in [
            ("regions[0].typo_field", "unknown field `typo_field`"),
            (
                "deployments[0].max_in_flight",
                "invalid type: string \"four\"",
            ),
            ("listeners[0].region", "unknown region \"mars-1\""),
        ] {
            let line = listed
                .iter()
                .find(|l| l.contains(&format!("key `{key}`")))
                .unwrap_or_else(|| panic!("no error for {key}:\n{stderr}"));
            assert!(
                line.contains(&format!("{}:", f.s())) && line.contains(why),
                "{line}"
            );
        }
    }
}

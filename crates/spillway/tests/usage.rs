//! `spillway usage report` on a real gateway's audit file: two tenants, a source region too
//! small for a burst (so some requests spill to us-east-2), one refused request; the report
//! grouped by tenant and by serving region must match what the clients were answered.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Proc, TempFile, US, bin};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const MODEL: &str = "demo.chat-small-v1:0";
const PROFILE: &str = "us.demo.chat-small-v1:0";
/// us-east-1's price per million tokens (the source's: what every request is billed at).
const PRICE_IN: f64 = 3.0;
const PRICE_OUT: f64 = 15.0;

/// us-east-1 serves one request at a time (slowly); us-east-2 has room; us-east-2's price is
/// far higher, so a cost at the serving region's price would show.
fn config(audit: &str) -> String {
    let mut t = String::from("[routing]\nmax_attempts = 3\nsource_wait = 0.0\n\n");
    for (r, g) in [
        ("us-east-1", "us"),
        ("us-east-2", "us"),
        ("eu-west-1", "eu"),
    ] {
        t += &format!("[[regions]]\nname = \"{r}\"\ngeography = \"{g}\"\n\n");
    }
    t += &format!("[[models]]\nid = \"{MODEL}\"\ndefault_max_tokens = 16\n\n");
    for (r, slots, tps) in [
        ("us-east-1", 1, 20.0),
        ("us-east-2", 8, 1000.0),
        ("eu-west-1", 8, 1000.0),
    ] {
        t += &format!(
            "[[deployments]]\nmodel = \"{MODEL}\"\nregion = \"{r}\"\nmax_in_flight = {slots}\n\
             upstream = {{ kind = \"sim\", concurrency = {slots}, decode_tokens_per_sec = {tps} }}\n\n"
        );
    }
    for (r, i, o) in [
        ("us-east-1", PRICE_IN, PRICE_OUT),
        ("us-east-2", 100.0, 500.0),
    ] {
        t += &format!(
            "[[prices]]\nmodel = \"{MODEL}\"\nregion = \"{r}\"\ninput_per_mtok = {i}\noutput_per_mtok = {o}\n\n"
        );
    }
    for name in ["alpha", "beta"] {
        let var = format!("USAGE_TEST_KEY_{}", name.to_uppercase());
        t += &format!("[[tenants]]\nname = \"{name}\"\napi_keys = [{{ env = \"{var}\" }}]\n\n");
    }
    t += "[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = \"us-east-1\"\n\n";
    t += "[admin]\nbind = \"127.0.0.1:0\"\n\n";
    t += &format!("[audit]\nsink = {audit:?}\n");
    t
}

/// Group value → (requests, served, input tokens, output tokens, cost).
type Figures = BTreeMap<String, (u64, u64, u64, u64, f64)>;

/// What one client was answered.
#[derive(Debug, Clone)]
struct Answer {
    tenant: &'static str,
    /// `x-spillway-region` of a 200; None when refused.
    served_in: Option<String>,
    input: u64,
    output: u64,
}

async fn chat(http: &reqwest::Client, base: &str, tenant: &'static str, model: &str) -> Answer {
    let key = format!("key-{tenant}");
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let served_in = resp
        .headers()
        .get("x-spillway-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = resp.json().await.expect("json body");
    if status != 200 {
        return Answer {
            tenant,
            served_in: None,
            input: 0,
            output: 0,
        };
    }
    let served_in = served_in.expect("a 200 names its serving region");
    assert!(
        US.contains(&served_in.as_str()),
        "{PROFILE} served in {served_in}"
    );
    Answer {
        tenant,
        served_in: Some(served_in),
        input: body["usage"]["prompt_tokens"]
            .as_u64()
            .expect("prompt_tokens"),
        output: body["usage"]["completion_tokens"]
            .as_u64()
            .expect("completion_tokens"),
    }
}

/// Lines in the audit file, waiting until there are `n`.
fn wait_audit_lines(path: &std::path::Path, n: usize) {
    let deadline = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let have = text.lines().filter(|l| !l.trim().is_empty()).count();
        if have >= n {
            assert_eq!(have, n, "more audit lines than requests:\n{text}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} audit lines after {T:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `usage report --format json` grouped by `group_by`: group value → (requests, served,
/// input, output, cost).
fn report(audit: &str, group_by: &str) -> (Figures, Value) {
    let (st, out, err) = common::run(
        &[
            "usage",
            "report",
            audit,
            "--group-by",
            group_by,
            "--format",
            "json",
        ],
        T,
    );
    assert!(st.success(), "usage report failed: {err}");
    assert!(err.is_empty(), "no malformed lines expected: {err}");
    let v: Value = serde_json::from_str(&out).expect("json report");
    let groups = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            let n = |k: &str| g[k].as_u64().expect(k);
            let key = g["key"][group_by].as_str().expect("key").to_string();
            let cost = g["cost"].as_f64().expect("cost");
            (
                key,
                (
                    n("requests"),
                    n("served"),
                    n("inputTokens"),
                    n("outputTokens"),
                    cost,
                ),
            )
        })
        .collect();
    (groups, v)
}

/// What the answers add up to per `key`: (requests, served, input, output, cost at us-east-1's
/// price).
fn expected(answers: &[Answer], key: impl Fn(&Answer) -> String) -> Figures {
    let mut m = Figures::new();
    for a in answers {
        let e = m.entry(key(a)).or_default();
        e.0 += 1;
        e.1 += u64::from(a.served_in.is_some());
        e.2 += a.input;
        e.3 += a.output;
        e.4 += (a.input as f64 * PRICE_IN + a.output as f64 * PRICE_OUT) / 1e6;
    }
    m
}

fn assert_same(got: &Figures, want: &Figures) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "groups"
    );
    for (k, w) in want {
        let g = got[k];
        assert_eq!((g.0, g.1, g.2, g.3), (w.0, w.1, w.2, w.3), "group {k}");
        assert!(
            (g.4 - w.4).abs() < 1e-9,
            "group {k}: cost {} != {}",
            g.4,
            w.4
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_of_a_real_run_matches_what_each_tenant_was_served_and_where() {
    let audit = TempFile::named("audit.jsonl");
    let cfg = TempFile::new("usage", &config(audit.s()));
    let server = Proc::spawn(
        bin()
            .args(["serve", "-c", cfg.s()])
            .env("USAGE_TEST_KEY_ALPHA", "key-alpha")
            .env("USAGE_TEST_KEY_BETA", "key-beta"),
    );
    let base = format!("http://{}", server.wait_listening("us-east-1", T));
    let http = reqwest::Client::new();

    // alpha: a burst of 8 at once on a source with one slot: most spill to us-east-2.
    let burst = (0..8).map(|_| chat(&http, &base, "alpha", PROFILE));
    let mut answers: Vec<Answer> = futures_util::future::join_all(burst).await;
    // beta: three one at a time (room in the source), and one refused (unknown model).
    for _ in 0..3 {
        answers.push(chat(&http, &base, "beta", PROFILE).await);
    }
    answers.push(chat(&http, &base, "beta", "demo.no-such-model:0").await);

    let spilled = answers
        .iter()
        .filter(|a| a.served_in.as_deref().is_some_and(|r| r != "us-east-1"))
        .count();
    assert!(spilled > 0, "no request spilled: {answers:?}");
    assert!(
        answers.iter().filter(|a| a.served_in.is_some()).count() >= 10,
        "{answers:?}"
    );
    assert!(
        answers.last().is_some_and(|a| a.served_in.is_none()),
        "{answers:?}"
    );
    wait_audit_lines(audit.path(), answers.len());

    let (by_tenant, whole) = report(audit.s(), "tenant");
    assert_same(&by_tenant, &expected(&answers, |a| a.tenant.to_string()));
    let all = expected(&answers, |_| String::new())[""];
    assert_eq!(whole["total"]["requests"], all.0);
    assert_eq!(whole["total"]["served"], all.1);
    assert!((whole["total"]["cost"].as_f64().expect("cost") - all.4).abs() < 1e-9);

    let (by_region, _) = report(audit.s(), "serving-region");
    let want = expected(&answers, |a| {
        a.served_in.clone().unwrap_or_else(|| "-".into())
    });
    assert_same(&by_region, &want);
    for region in by_region.keys() {
        assert!(
            US.contains(&region.as_str()) || region == "-",
            "served in {region}"
        );
    }
    eprintln!("by tenant {by_tenant:?}\nby serving region {by_region:?}");

    // The same figures as a table, from stdin.
    let text = std::fs::read_to_string(audit.path()).expect("audit");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "usage",
            "report",
            "-",
            "--group-by",
            "tenant,serving-region",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let total = table.lines().last().expect("a total row");
    assert!(total.starts_with("TOTAL"), "{table}");
    assert!(total.contains(&format!(" {} ", all.0)), "{table}");
    assert!(
        table.contains("alpha") && table.contains("us-east-2"),
        "{table}"
    );
}

#[test]
fn malformed_lines_are_reported_with_their_numbers_and_the_rest_counted() {
    let good = r#"{"timestamp":"2025-03-01T10:00:00Z","tenant":"a","sourceRegion":"us-east-1","inputTokens":3,"outputTokens":2,"outcome":"ok","cost":{"currency":"USD","input":0.1,"output":0.2,"total":0.3}}"#;
    let text = format!("{good}\nnot json\n\n{good}\n{{\"timestamp\":1}}\n");
    let f = TempFile::named("audit.jsonl");
    std::fs::write(f.path(), text).expect("write");
    let (st, out, err) = common::run(
        &[
            "usage",
            "report",
            f.s(),
            "--format",
            "csv",
            "--from",
            "2025-03-01",
            "--to",
            "2025-03-01",
        ],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(err.contains("skipped 2 malformed line(s)"), "{err}");
    assert!(
        err.contains(&format!("{}:2: not an audit record", f.s())),
        "{err}"
    );
    assert!(err.contains(&format!("{}:5:", f.s())), "{err}");
    assert_eq!(out.lines().nth(1), Some("a,2,2,6,4,0.600000"), "{out}");
    // Outside the window: nothing counted.
    let (st, out, _) = common::run(
        &[
            "usage",
            "report",
            f.s(),
            "--format",
            "csv",
            "--from",
            "2025-03-02",
        ],
        T,
    );
    assert!(st.success());
    assert_eq!(out.lines().last(), Some("TOTAL,0,0,0,0,0.000000"), "{out}");
}

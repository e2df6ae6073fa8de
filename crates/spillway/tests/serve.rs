//! `spillway serve`: the embedded default and a configuration file, over real sockets, and the
//! graceful shutdown on SIGTERM.
mod common;

use std::time::{Duration, Instant};

use common::{DEMO_KEY, Proc, TempFile, US, bin, small_config};
use futures_util::StreamExt;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn chat_body(model: &str, stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", resp.headers()))
        .to_str()
        .expect("ascii header")
}

/// A chat completion that must succeed; checks the routing headers and returns the body text.
async fn chat_ok(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    model: &str,
    stream: bool,
    allowed: &[&str],
) -> String {
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(model, stream, 5))
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let served = header(&resp, "x-spillway-region").to_string();
    let source = header(&resp, "x-spillway-source-region").to_string();
    let ctype = header(&resp, "content-type").to_string();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "{model} stream={stream}: {text}");
    assert!(
        allowed.contains(&served.as_str()),
        "{model} served in {served}, expected one of {allowed:?}"
    );
    assert_eq!(source, "us-east-1");
    if stream {
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        assert!(text.contains("chat.completion.chunk"), "{text}");
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    } else {
        let v: Value = serde_json::from_str(&text).expect("json body");
        assert_eq!(v["object"], "chat.completion", "{text}");
        assert_eq!(v["usage"]["completion_tokens"], 5, "{text}");
        assert!(v["choices"][0]["message"]["content"].is_string(), "{text}");
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_embedded_default_routes_lists_models_and_exports_metrics() {
    let started = Instant::now();
    let server =
        Proc::spawn(bin().args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]));
    let addr = server.wait_listening("us-east-1", T);
    let base = format!("http://{addr}");
    eprintln!("listening after {:?}", started.elapsed());
    let http = reqwest::Client::new();

    for stream in [false, true] {
        chat_ok(
            &http,
            &base,
            DEMO_KEY,
            "us.demo.chat-small-v1:0",
            stream,
            &US,
        )
        .await;
        // A plain model id is served in the source region only.
        chat_ok(
            &http,
            &base,
            DEMO_KEY,
            "demo.chat-small-v1:0",
            stream,
            &["us-east-1"],
        )
        .await;
    }

    let resp = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(DEMO_KEY)
        .send()
        .await
        .expect("models");
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.expect("json");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for want in [
        "us.demo.chat-small-v1:0",
        "global.demo.chat-small-v1:0",
        "demo.chat-small-v1:0",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    assert!(
        !ids.iter().any(|id| id.starts_with("eu.")),
        "an eu. profile is listed on a us-east-1 endpoint: {ids:?}"
    );

    let resp = http
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .expect("models");
    assert_eq!(resp.status(), 401, "models without a key");

    let admin = server.wait_admin(T);
    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("spillway_requests_total"), "{metrics}");
    // The profile and the canonical model are separate labels; the model is never the raw id.
    assert!(
        metrics.contains("profile=\"us.demo.chat-small-v1:0\",model=\"demo.chat-small-v1:0\""),
        "{metrics}"
    );
    assert!(!metrics.contains("model=\"us."), "{metrics}");
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_drains_a_stream_on_sigterm_and_exits_zero() {
    let started = Instant::now();
    let mut server =
        Proc::spawn(bin().args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]));
    let addr = server.wait_listening("us-east-1", T);
    let admin = server.wait_admin(T);
    let http = reqwest::Client::new();
    // 800 tokens at 100 tokens/s: about eight seconds of stream, past the 5 s drain delay.
    let resp = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .json(&chat_body("us.demo.chat-small-v1:0", true, 800))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let first = tokio::time::timeout(T, body.next())
        .await
        .expect("first chunk in time")
        .expect("a first chunk")
        .expect("first chunk ok");
    text.push_str(&String::from_utf8_lossy(&first));
    assert!(!text.contains("[DONE]"), "stream ended before the signal");

    server.sigterm();
    let signalled = Instant::now();
    server
        .stderr
        .wait_for(Duration::from_secs(10), |l| {
            l.starts_with("spillway: draining")
        })
        .unwrap_or_else(|| panic!("no `draining` line\n{}", server.output()));
    // Load balancers are told at once.
    let ready = http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .expect("readyz answers while draining");
    assert_eq!(ready.status(), 503, "readyz while draining");

    // After the drain delay (5 s by default), new connections are refused while the stream
    // finishes.
    let refused = loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Err(e) => break e,
            Ok(_) if signalled.elapsed() < Duration::from_secs(12) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(_) => panic!("still accepting connections 12 s after SIGTERM"),
        }
    };
    // A SYN that races the listener's close is answered with a reset
    // instead of a refusal; both mean the connection was not accepted.
    assert!(
        matches!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
        ),
        "unexpected connect error {refused:?}"
    );

    let rest = async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        }
    };
    tokio::time::timeout(T, rest)
        .await
        .unwrap_or_else(|_| panic!("stream did not finish\n{}", server.output()));
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the in-flight stream was cut off: ...{}",
        &text[text.len().saturating_sub(400)..]
    );
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    let tokens = text.matches("\"content\":\" ").count();
    assert_eq!(tokens, 800, "content chunks in the drained stream");

    let status = server
        .wait_exit(T)
        .unwrap_or_else(|| panic!("still running 30 s after SIGTERM\n{}", server.output()));
    assert!(status.success(), "exit {status}\n{}", server.output());
    eprintln!(
        "took {:?} (exit {:?} after the signal)",
        started.elapsed(),
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_config_file_with_an_env_key() {
    let started = Instant::now();
    let f = TempFile::new(
        "serve",
        &small_config("{ env = \"SPILLWAY_TEST_KEY\" }", ""),
    );
    let key = format!("sk-test-{}", std::process::id());
    let server = Proc::spawn(
        bin()
            .args(["serve", "--config", f.path().to_str().expect("path")])
            .env("SPILLWAY_TEST_KEY", &key),
    );
    let addr = server.wait_listening("us-east-1", T);
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let us = ["us-east-1", "us-east-2"];
    chat_ok(&http, &base, &key, "us.demo.chat-small-v1:0", false, &us).await;
    chat_ok(&http, &base, &key, "us.demo.chat-small-v1:0", true, &us).await;
    chat_ok(
        &http,
        &base,
        &key,
        "demo.chat-small-v1:0",
        false,
        &["us-east-1"],
    )
    .await;

    for bad in ["wrong-key", DEMO_KEY] {
        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(bad)
            .json(&chat_body("us.demo.chat-small-v1:0", false, 5))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 401, "key {bad:?}");
        let v: Value = resp.json().await.expect("json error body");
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(
            !v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&key)
        );
    }
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn serve_refuses_a_config_whose_env_key_is_unset() {
    let f = TempFile::new(
        "nokey",
        &small_config("{ env = \"SPILLWAY_TEST_KEY_UNSET\" }", ""),
    );
    let mut server = Proc::spawn(
        bin()
            .args(["serve", "--config", f.path().to_str().expect("path")])
            .env_remove("SPILLWAY_TEST_KEY_UNSET"),
    );
    let status = server.wait_exit(T).expect("exits");
    assert!(!status.success());
    let err = server.stderr.text();
    assert!(
        err.contains("key `tenants[0].api_keys[0].env`") && err.contains("SPILLWAY_TEST_KEY_UNSET"),
        "{err}"
    );
}

#[test]
fn serve_refuses_the_demo_key_on_a_public_address() {
    let mut server =
        Proc::spawn(bin().args(["serve", "--listen", "0.0.0.0:0", "--admin", "127.0.0.1:0"]));
    let status = server.wait_exit(T).unwrap_or_else(|| {
        panic!(
            "the embedded default is serving on 0.0.0.0\n{}",
            server.output()
        )
    });
    assert!(!status.success());
    let err = server.stderr.text();
    assert!(
        err.contains("key `listeners`") && err.contains("loopback"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_models_accepts_the_same_authorization_as_chat() {
    let server =
        Proc::spawn(bin().args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]));
    let base = format!("http://{}", server.wait_listening("us-east-1", T));
    let http = reqwest::Client::new();
    let auth = format!("bearer {DEMO_KEY}");
    let chat = http
        .post(format!("{base}/v1/chat/completions"))
        .header("authorization", &auth)
        .json(&chat_body("us.demo.chat-small-v1:0", false, 2))
        .send()
        .await
        .expect("chat");
    let models = http
        .get(format!("{base}/v1/models"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("models");
    assert_eq!(
        (chat.status().as_u16(), models.status().as_u16()),
        (200, 200),
        "chat and models disagree on `{auth}`"
    );
}

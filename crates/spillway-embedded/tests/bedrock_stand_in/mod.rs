//! A stand-in for a regional Bedrock runtime (us-east-1), for `bedrock_upstream.rs`: it verifies
//! SigV4 on every request with `spillway_gateway::sigv4::verify` (service `bedrock`, a secret
//! only it and the test environment know), answers Converse and ConverseStream (event-stream
//! frames written with `spillway_proto::bedrock`, delivered in odd-sized pieces), refuses what it
//! cannot verify with 403 and a body that must never reach a client, and records what it got.
//!
//! The gateway reads upstream credentials from environment variables, and tests may not set
//! variables in their own process (`unsafe` is forbidden): [`in_child`] re-runs a test, alone, in
//! a child process of the test binary with the variables set.
#![allow(dead_code)]
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use spillway_proto::bedrock::{
    ConverseMetrics, ConverseStreamEvent, TokenUsage, encode_event, encode_exception,
};

use crate::bedrock_common::{ACCOUNT, AK, SECRET};
use crate::common::{Harness, KEY, M, Spec, Tenant, Upstream};

pub const UP_AK: &str = "AKIAUPSTREAM00000001";
pub const UP_SECRET: &str = "upstream/Secret+Key0";
pub const AK_ENV: &str = "SPILLWAY_TEST_BEDROCK_UPSTREAM_AK";
pub const SK_ENV: &str = "SPILLWAY_TEST_BEDROCK_UPSTREAM_SK";
pub const CHILD_ENV: &str = "SPILLWAY_TEST_BEDROCK_UPSTREAM_CHILD";
/// In every refusal of the stand-in; must never reach a client.
pub const MARKER: &str = "stand-in-refusal-7f3a";
pub const ANSWER: &str = "Hello from Bedrock";
/// A request asking for more output tokens than this is refused by the stand-in (400).
pub const STAND_IN_MAX_TOKENS: u64 = 1000;

/// True in the child (run the test); in the parent, runs `test` in a child process with the
/// upstream credentials (`secret` as the secret) in its environment, asserts it passed, and
/// returns false.
pub fn in_child(test: &str, secret: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(AK_ENV, UP_AK)
        .env(SK_ENV, secret)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {test} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "child {test} did not run the test:\n{stdout}"
    );
    false
}

pub fn block_on(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f);
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub request_id: Option<String>,
    pub verified: Result<String, String>,
    pub body: Value,
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// Starts the stand-in; returns its base URL and its log.
pub async fn stand_in(break_stream: bool) -> (String, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move { answer(&seen, break_stream, &method, &uri, &headers, &body) }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), log)
}

pub fn answer(
    log: &Log,
    break_stream: bool,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let verified = spillway_gateway::sigv4::verify(
        method,
        uri,
        headers,
        body,
        SystemTime::now(),
        "us-east-1",
        "bedrock",
        |id| (id == UP_AK).then(|| UP_SECRET.to_string()),
    );
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    log.lock().expect("lock").push(Seen {
        path: uri.path().to_string(),
        request_id: headers
            .get("x-spillway-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        verified: verified
            .as_ref()
            .map(|v| v.access_key_id.clone())
            .map_err(|e| e.to_string()),
        body: parsed.clone(),
    });
    let error = |status: StatusCode, kind: &str, msg: String| {
        (
            status,
            [
                ("content-type", "application/json"),
                ("x-amzn-ErrorType", kind),
            ],
            json!({ "message": msg }).to_string(),
        )
            .into_response()
    };
    if let Err(e) = verified {
        return error(
            StatusCode::FORBIDDEN,
            e.error_type(),
            format!("{MARKER}: {e}"),
        );
    }
    if parsed["inferenceConfig"]["maxTokens"]
        .as_u64()
        .is_some_and(|n| n > STAND_IN_MAX_TOKENS)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!("{MARKER}: maxTokens is too large"),
        );
    }
    let usage = TokenUsage {
        input_tokens: 7,
        output_tokens: 4,
        total_tokens: 11,
        ..TokenUsage::default()
    };
    if uri.path().ends_with("/converse") {
        let resp = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": ANSWER}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 7, "outputTokens": 4, "totalTokens": 11},
            "metrics": {"latencyMs": 5},
        });
        return ([("content-type", "application/json")], resp.to_string()).into_response();
    }
    if uri.path().ends_with("/converse-stream") {
        let delta = |t: &str| ConverseStreamEvent::ContentBlockDelta {
            content_block_index: 0,
            delta: json!({ "text": t }),
        };
        let mut events = vec![
            ConverseStreamEvent::MessageStart {
                role: "assistant".into(),
            },
            delta("Hello"),
            delta(" from"),
            delta(" Bedrock"),
        ];
        let mut bytes: Vec<u8> = events
            .drain(..)
            .flat_map(|e| encode_event(e.event_type(), e.payload().to_string().as_bytes()))
            .collect();
        if break_stream {
            bytes.extend_from_slice(&encode_exception(
                "modelStreamErrorException",
                &format!("{MARKER}: the model failed"),
            ));
        } else {
            for e in [
                ConverseStreamEvent::ContentBlockStop {
                    content_block_index: 0,
                },
                ConverseStreamEvent::MessageStop {
                    stop_reason: "end_turn".into(),
                },
                ConverseStreamEvent::Metadata {
                    usage,
                    metrics: ConverseMetrics { latency_ms: 5 },
                },
            ] {
                bytes.extend_from_slice(&encode_event(
                    e.event_type(),
                    e.payload().to_string().as_bytes(),
                ));
            }
        }
        // Odd-sized pieces: frames split across reads, and several frames in one read.
        let pieces: Vec<Result<Bytes, std::convert::Infallible>> = bytes
            .chunks(37)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = axum::body::Body::from_stream(futures_util::stream::iter(pieces));
        return (
            [("content-type", "application/vnd.amazon.eventstream")],
            body,
        )
            .into_response();
    }
    error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("{MARKER}: no route"),
    )
}

/// `Spec::standard()` with us-east-1's `M` on the stand-in at `url`, and a SigV4 pair for the
/// tenant (to call the gateway with the AWS SDK too).
pub async fn start(url: &str) -> Harness {
    let mut s = Spec::standard();
    s.tenants = vec![
        Tenant::new("acme", KEY)
            .access_key(AK, SECRET)
            .account(ACCOUNT),
    ];
    s.dep(M, "us-east-1").upstream = Upstream::Bedrock {
        base_url: url.to_string(),
        access_key_id_env: AK_ENV.to_string(),
        secret_access_key_env: SK_ENV.to_string(),
    };
    Harness::start(s).await
}

/// Every request the stand-in saw was sent by this test, for a destination set that includes
/// us-east-1 (checked by the caller's registration), and was for `M`.
pub fn assert_stand_in_residency(h: &Harness, log: &Log, sent: &[String]) {
    for s in log.lock().expect("lock").iter() {
        let id = s
            .request_id
            .as_deref()
            .unwrap_or_else(|| panic!("no request id: {s:?}"));
        assert!(
            sent.iter().any(|x| x == id),
            "the stand-in saw a request nobody sent here: {s:?}"
        );
        let model = s.path.split('/').nth(2).expect("model segment");
        let model = percent_encoding::percent_decode_str(model)
            .decode_utf8()
            .expect("utf-8");
        assert_eq!(model, M, "{s:?}");
    }
    h.assert_residency();
}

//! HTTP/2 and TLS on the API listeners (issue 17, item 1), over real loopback connections:
//!
//! | client | sees | test |
//! | --- | --- | --- |
//! | HTTP/2 with prior knowledge (h2c) on a plain listener | chat completions, streamed and not, answered over HTTP/2; the stream arrives event by event | `h2c_chat_streamed_and_not` |
//! | SigV4-signed Converse over h2c (no `Host` header: the host is `:authority`) | 200 | `h2c_converse_signed_over_authority` |
//! | HTTPS, ALPN `h2` | chat streamed and not, Converse with SigV4, over HTTP/2 | `tls_h2_chat_and_converse` |
//! | HTTPS, HTTP/1.1 only | chat over HTTP/1.1 | `tls_http1_client_still_works` |
//! | plain HTTP sent to the TLS port; a handshake that stalls | closed, at once / at the header-read timeout; other clients unaffected | `plain_http_and_a_stalled_handshake_on_a_tls_port_cost_only_their_connection` |
//! | an HTTP/2 connection left idle | closed at the header-read timeout | `an_idle_h2_connection_is_closed_at_the_header_read_timeout` |
//! | shutdown with an HTTP/2 stream in flight on a connection that served a request before | `GOAWAY`; the stream ends normally, shutdown is clean and prompt | `shutdown_lets_an_h2_stream_in_flight_finish` |
//!
//! Every test that routes checks residency from the simulators' own records.
mod bedrock_common;
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bedrock_common::{AK, Auth, RawReq, SECRET, Signer, tag};
use common::*;
use reqwest::Version;
use spillway_gateway::Config;
use spillway_gateway::config::ListenerTls;
use spillway_gateway::tls::{LocalCa, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fresh directory with a local CA's files: (directory, CA certificate PEM).
fn certificates(name: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("spillway-h2tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = LocalCa::generate(&["localhost".into(), "127.0.0.1".into()]).expect("certificates");
    std::fs::write(dir.join("cert.pem"), &ca.chain_pem).expect("write cert");
    std::fs::write(dir.join("key.pem"), &ca.key_pem).expect("write key");
    (dir, ca.ca_pem)
}

/// Puts TLS with the files in `dir` on every listener.
fn with_tls(dir: PathBuf) -> impl FnOnce(&mut Config) {
    move |cfg: &mut Config| {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let server = server_config(&cert, &key).expect("the generated pair loads");
        for l in &mut cfg.listeners {
            l.tls = Some(ListenerTls {
                cert: cert.clone(),
                key: key.clone(),
                server: Arc::clone(&server),
            });
        }
    }
}

/// A client that trusts only `ca`.
fn tls_client(ca: &str, http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA");
    let b = reqwest::Client::builder().tls_certs_only([ca]);
    let b = if http1_only { b.http1_only() } else { b };
    b.build().expect("client")
}

async fn h2c_gateway(server: &str) -> Harness {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let prefix = format!("[server]\n{server}\n\n");
    Harness::start_custom(bedrock_common::spec(), &prefix, |_| {}, "http", client).await
}

async fn tls_gateway(name: &str, server: &str, http1_only: bool) -> Harness {
    let (dir, ca) = certificates(name);
    let prefix = format!("[server]\n{server}\n\n");
    let client = tls_client(&ca, http1_only);
    Harness::start_custom(
        bedrock_common::spec(),
        &prefix,
        with_tls(dir),
        "https",
        client,
    )
    .await
}

/// One chat completion, checked for the protocol version and where it was served.
async fn chat_over(h: &Harness, version: Version) {
    let bytes = serde_json::to_vec(&body(M, 4)).expect("json");
    let (_, resp) = h.post("us-east-1", Some(KEY), bytes, Some(M)).await;
    assert_eq!(resp.version(), version);
    assert_eq!(resp.status(), 200);
    let region = resp.headers()["x-spillway-region"].to_str().expect("ascii");
    assert!(US.contains(&region), "served in {region}");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
}

/// A streamed chat completion over `version`, read to its end.
async fn stream_over(h: &Harness, version: Version) {
    let (_, resp) = h.stream("us-east-1", stream_body(M, 6)).await;
    assert_eq!(resp.version(), version);
    assert_eq!(resp.status(), 200);
    let mut sse = Sse::new(resp);
    let events = sse.rest().await;
    assert!(!sse.broken, "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert!(!content_of(&events).is_empty(), "{events:?}");
}

/// The stream of a request held by a slow simulator reaches the client event by event: the
/// first event arrives while the rest is still being generated (nothing is buffered to the end).
async fn first_event_before_the_end(h: &Harness) {
    let mut held = h.hold("us-east-1", M, "us-east-1").await;
    let next = tokio::time::timeout(DEADLINE, held.next()).await;
    assert!(next.is_ok_and(|e| e.is_some()), "a second event arrives");
    drop(held);
}

/// A SigV4-signed Converse (the signer signs `host` from the URL; an HTTP/2 client sends it as
/// `:authority`), checked for the version and region.
async fn converse_over(h: &Harness, version: Version) {
    let id = tag(h, "us-east-1", KEY, M);
    let signer = Signer::new(AK, SECRET, "us-east-1");
    let raw = RawReq::converse(&format!("us.{M}"), 3, Auth::None);
    let url = h.url("us-east-1", &raw.path);
    let headers = [("content-type", "application/json"), ("x-request-id", &id)];
    let mut req = h.client.post(&url).body(raw.body.clone());
    for (n, v) in signer.headers("POST", &url, &headers, &raw.body) {
        req = req.header(n, v);
    }
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let resp = req.send().await.expect("the gateway answers");
    assert_eq!(resp.version(), version);
    let status = resp.status();
    let region = resp.headers().get("x-spillway-region").cloned();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    let region = region.and_then(|r| r.to_str().ok().map(str::to_owned));
    assert!(US.contains(&region.as_deref().unwrap_or("")), "{region:?}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["usage"]["outputTokens"], 3, "{v}");
}

#[tokio::test]
async fn h2c_chat_streamed_and_not() {
    let h = h2c_gateway("").await;
    chat_over(&h, Version::HTTP_2).await;
    stream_over(&h, Version::HTTP_2).await;
    first_event_before_the_end(&h).await;
    // The two finished requests at least (the held one is recorded when the simulator ends it).
    assert!(h.assert_residency() >= 2);
}

#[tokio::test]
async fn h2c_converse_signed_over_authority() {
    let h = h2c_gateway("").await;
    converse_over(&h, Version::HTTP_2).await;
    assert_eq!(h.assert_residency(), 1);
}

#[tokio::test]
async fn tls_h2_chat_and_converse() {
    let h = tls_gateway("h2", "", false).await;
    chat_over(&h, Version::HTTP_2).await;
    stream_over(&h, Version::HTTP_2).await;
    first_event_before_the_end(&h).await;
    converse_over(&h, Version::HTTP_2).await;
    assert!(h.assert_residency() >= 3);
}

#[tokio::test]
async fn tls_http1_client_still_works() {
    let h = tls_gateway("h1", "", true).await;
    chat_over(&h, Version::HTTP_11).await;
    stream_over(&h, Version::HTTP_11).await;
    converse_over(&h, Version::HTTP_11).await;
    assert!(h.assert_residency() >= 3);
}

/// Waits until the peer closes `s` (EOF or reset): how long that took, and what it sent.
async fn until_closed(s: &mut TcpStream) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Err(_) => panic!("still open after {DEADLINE:?}"),
            Ok(Ok(0) | Err(_)) => return (t.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn plain_http_and_a_stalled_handshake_on_a_tls_port_cost_only_their_connection() {
    let timeout = Duration::from_millis(400);
    let server = format!("header_read_timeout_ms = {}", timeout.as_millis());
    let h = tls_gateway("bad", &server, false).await;
    let addr = h.addr("us-east-1");

    // Plain HTTP to the TLS port: refused by the handshake, closed at once.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (took, got) = until_closed(&mut plain).await;
    assert!(took < timeout, "closed after {took:?}");
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200"),
        "no HTTP answer in clear"
    );

    // A handshake that starts and stalls (the first bytes of a ClientHello): cut at the
    // header-read timeout.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    let (took, _) = until_closed(&mut stalled).await;
    assert!(
        took >= timeout - Duration::from_millis(50),
        "closed after {took:?}"
    );

    // Meanwhile and after, real clients are served.
    chat_over(&h, Version::HTTP_2).await;
    assert_eq!(h.assert_residency(), 1);
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_at_the_header_read_timeout() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let timeout = Duration::from_millis(400);
    let h = h2c_gateway(&format!("header_read_timeout_ms = {}", timeout.as_millis())).await;
    let tcp = TcpStream::connect(h.addr("us-east-1"))
        .await
        .expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://{}/v1/no-such-path", h.addr("us-east-1")))
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("answered");
    assert_eq!(resp.status(), 404, "answered over HTTP/2 in OpenAI's shape");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("\"error\""),
        "{body:?}"
    );
    let idle = Instant::now();
    let ended = tokio::time::timeout(DEADLINE, conn).await;
    let took = idle.elapsed();
    assert!(
        ended.is_ok(),
        "the idle connection is still open after {DEADLINE:?}"
    );
    assert!(
        took >= timeout - Duration::from_millis(50),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn shutdown_lets_an_h2_stream_in_flight_finish() {
    let mut h = h2c_gateway("").await;
    // The client multiplexes: the stream below shares the connection of this finished request.
    chat_over(&h, Version::HTTP_2).await;
    let mut sse = h.hold_n("us-east-1", M, "us-east-1", 6).await;
    let stack = h.take_gateway();
    let t = Instant::now();
    let shutdown = tokio::spawn(stack.shutdown(Duration::from_secs(30)));
    let rest = sse.rest().await;
    assert!(!sse.broken, "the stream was cut: {rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
    let clean = shutdown.await.expect("shutdown task");
    assert!(clean, "shutdown reported requests cut off");
    assert!(t.elapsed() < DEADLINE, "shutdown took {:?}", t.elapsed());
    assert!(h.assert_residency() >= 2);
}

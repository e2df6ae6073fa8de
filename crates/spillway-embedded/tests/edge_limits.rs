//! The edge against hostile and broken clients (issue 15): each test a real gateway on
//! 127.0.0.1:0 and a raw TCP client doing what a bad client does, checking what it gets back
//! and that the gateway keeps serving everyone else.
//!
//! | client | sees | test |
//! | --- | --- | --- |
//! | 10 GiB `Content-Length` + `Expect: 100-continue` | 413 in the API's shape, no `100 Continue` | `a_huge_announced_body_gets_413_without_100_continue` |
//! | `Expect` other than `100-continue` | 417 | `an_unknown_expectation_gets_417` |
//! | a header a byte at a time | connection closed at the header-read timeout | `a_slowloris_head_is_cut_at_the_header_read_timeout` |
//! | connects and sends nothing | closed at the header-read timeout | `an_idle_connection_is_closed_at_the_header_read_timeout` |
//! | a body that stops arriving | 408 at the body-read timeout | `a_stalled_body_gets_408` |
//! | more connections than the cap | the connection idle the longest is closed to make room | `at_the_cap_the_connection_idle_longest_makes_room` |
//! | more connections than the cap, all busy | closed at once; the busy ones keep working | `when_every_connection_is_busy_new_ones_close_and_old_ones_work` |
//! | unknown path / wrong method / long URI / many headers | 404 / 405 / 414 / 431 with a body in the API's shape | `errors_come_in_the_callers_shape` |
//! | `/metrics` on the API listener | 404; served on the admin listener | `operations_routes_are_on_the_admin_listener_only` |
//! | a half-sent head at shutdown | does not hold the grace period | `a_half_sent_head_does_not_hold_shutdown` |
mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with the given `[server]` lines.
async fn gateway(server: &str) -> Harness {
    Harness::start_with(Spec::standard(), &format!("[server]\n{server}\n\n")).await
}

/// Everything the server sends until it closes the connection (or `DEADLINE`).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The response head and body of one request on a fresh connection (`Connection: close`).
async fn raw(h: &Harness, request: &str) -> String {
    let mut s = TcpStream::connect(h.addr("us-east-1"))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    read_to_close(&mut s).await
}

/// Waits until the peer closes `s` (EOF or reset); how long that took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Err(_) => panic!("still open after {DEADLINE:?}"),
            Ok(Ok(0) | Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_huge_announced_body_gets_413_without_100_continue() {
    let h = gateway("").await;
    for (path, shape) in [
        ("/v1/chat/completions", "\"error\""),
        (
            "/model/us.demo.chat-small-v1:0/converse",
            "ValidationException",
        ),
    ] {
        let resp = raw(
            &h,
            &format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: 10737418240\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 413"), "{path}: {resp}");
        assert!(!resp.contains("100 Continue"), "{path}: {resp}");
        assert!(resp.contains(shape), "{path}: {resp}");
    }
}

#[tokio::test]
async fn an_unknown_expectation_gets_417() {
    let h = gateway("").await;
    let resp = raw(
        &h,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\
         expect: something-else\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 417"), "{resp}");
    assert!(resp.contains("expectation_failed"), "{resp}");
}

#[tokio::test]
async fn a_slowloris_head_is_cut_at_the_header_read_timeout() {
    let h = gateway("header_read_timeout_ms = 400").await;
    let mut s = TcpStream::connect(h.addr("us-east-1"))
        .await
        .expect("connect");
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let t = Instant::now();
    // One byte every 50 ms: the head would take seconds; the server must cut it first.
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        if t.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = t.elapsed() + closed_after(&mut s).await;
    assert!(waited >= Duration::from_millis(400), "cut after {waited:?}");
    assert!(waited < Duration::from_secs(3), "cut only after {waited:?}");
    // Everyone else is served.
    let ok = h.chat("us-east-1", body(&format!("us.{M}"), 5)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    h.assert_residency();
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_header_read_timeout() {
    let h = gateway("header_read_timeout_ms = 300").await;
    let mut s = TcpStream::connect(h.addr("us-east-1"))
        .await
        .expect("connect");
    let waited = closed_after(&mut s).await;
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_stalled_body_gets_408() {
    let h = gateway("body_read_timeout_ms = 300").await;
    let mut s = TcpStream::connect(h.addr("us-east-1"))
        .await
        .expect("connect");
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          authorization: Bearer sk-test-acme\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"model\":",
    )
    .await
    .expect("write");
    let resp = read_to_close(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("request_timeout"), "{resp}");
}

/// Sends a request on `s` and reads its (short, `Content-Length`) answer; the connection stays
/// open.
async fn request_on(s: &mut TcpStream) -> String {
    s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits until the gateway counts `n` open connections on the first listener.
async fn open_connections(h: &Harness, n: i64) {
    let open = &h.gw().hub().conns[0].open;
    for _ in 0..10_000 {
        if open.get() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} connections open, waited for {n}", open.get());
}

#[tokio::test]
async fn at_the_cap_the_connection_idle_longest_makes_room() {
    let h = gateway("max_connections = 3").await;
    let addr = h.addr("us-east-1");
    // a: served once; b and c: connected, nothing sent (a flood's connections).
    let mut a = TcpStream::connect(addr).await.expect("connect");
    assert!(request_on(&mut a).await.starts_with("HTTP/1.1 401"));
    let mut b = TcpStream::connect(addr).await.expect("connect");
    let mut c = TcpStream::connect(addr).await.expect("connect");
    open_connections(&h, 3).await;
    // a serves again: now b is the connection idle the longest.
    assert!(request_on(&mut a).await.starts_with("HTTP/1.1 401"));
    // A new client is served at once, not after the header-read timeout...
    let r = raw(
        &h,
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r:?}");
    // ...because b was closed to make room, and only b.
    assert!(closed_after(&mut b).await < DEADLINE);
    assert!(
        request_on(&mut c).await.starts_with("HTTP/1.1 401"),
        "c, idle for less long than b, still serves"
    );
    assert!(request_on(&mut a).await.starts_with("HTTP/1.1 401"));
    let conns = &h.gw().hub().conns[0];
    assert_eq!((conns.evicted.get(), conns.refused.get()), (1, 0));
    let metrics = h
        .client
        .get(format!("http://{}/metrics", h.gw().admin_addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("spillway_connections_evicted_total{"),
        "{metrics}"
    );
}

#[tokio::test]
async fn when_every_connection_is_busy_new_ones_close_and_old_ones_work() {
    let h = gateway("max_connections = 2").await;
    // Two streams in flight hold both slots.
    let mut first = h.hold("us-east-1", M, "us-east-1").await;
    let second = h.hold("us-east-1", M, "us-east-1").await;
    open_connections(&h, 2).await;
    // A third connection is accepted and closed at once, with no answer.
    let r = raw(
        &h,
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r, "", "served beyond the cap");
    let conns = &h.gw().hub().conns[0];
    assert_eq!((conns.refused.get(), conns.evicted.get()), (1, 0));
    // The streams in flight were not touched.
    assert!(first.next().await.is_some_and(|e| e.contains("chunk")));
    drop(second);
    // A slot is free again once the dropped stream's connection closes.
    let mut again = String::new();
    for _ in 0..1000 {
        again = raw(
            &h,
            "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if !again.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(again.starts_with("HTTP/1.1 401"), "{again:?}");
    h.assert_residency();
}

#[tokio::test]
async fn errors_come_in_the_callers_shape() {
    let h = gateway("max_uri_bytes = 1024\nmax_headers = 40").await;
    let close = "host: x\r\nconnection: close\r\n";
    // Bedrock's control plane (an operation Spillway does not serve): 404 with Bedrock's
    // error type.
    let r = raw(&h, &format!("GET /custom-models HTTP/1.1\r\n{close}\r\n")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("x-amzn-errortype: unknownoperationexception"),
        "{r}"
    );
    // OpenAI: 404 and 405 with `{"error": …}`; the echoed path is shortened.
    let long = "a".repeat(600);
    let r = raw(&h, &format!("GET /v1/{long} HTTP/1.1\r\n{close}\r\n")).await;
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("\"error\""),
        "{r}"
    );
    assert!(
        !r.contains(&"a".repeat(200)),
        "the path is echoed whole: {r}"
    );
    let r = raw(
        &h,
        &format!("GET /v1/chat/completions HTTP/1.1\r\n{close}\r\n"),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 405") && r.contains("method_not_allowed"),
        "{r}"
    );
    assert!(r.to_ascii_lowercase().contains("allow: post"), "{r}");
    // 414 and 431 with bodies.
    let r = raw(
        &h,
        &format!(
            "GET /v1/models?q={} HTTP/1.1\r\n{close}\r\n",
            "b".repeat(2000)
        ),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 414") && r.contains("uri_too_long"),
        "{r}"
    );
    let many: String = (0..50).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = raw(
        &h,
        &format!("GET /model/x/converse HTTP/1.1\r\n{many}{close}\r\n"),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 431") && r.contains("ValidationException"),
        "{r}"
    );
}

#[tokio::test]
async fn operations_routes_are_on_the_admin_listener_only() {
    let h = gateway("").await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let api = h
            .client
            .get(h.url("us-east-1", path))
            .send()
            .await
            .expect("api");
        assert_eq!(api.status(), 404, "{path} on the API listener");
        let admin = h
            .client
            .get(format!("http://{}{path}", h.gw().admin_addr()))
            .send()
            .await
            .expect("admin");
        assert_eq!(admin.status(), 200, "{path} on the admin listener");
    }
}

#[tokio::test]
async fn a_half_sent_head_does_not_hold_shutdown() {
    let mut h = gateway("").await;
    let mut s = TcpStream::connect(h.addr("us-east-1"))
        .await
        .expect("connect");
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-le")
        .await
        .expect("write");
    // Let the server start reading that head.
    tokio::task::yield_now().await;
    let stack = h.take_gateway();
    let grace = Duration::from_secs(30);
    let t = Instant::now();
    let clean = stack.shutdown(grace).await;
    assert!(clean, "shutdown reported requests cut off");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
}

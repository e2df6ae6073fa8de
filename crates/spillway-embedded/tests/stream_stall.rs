//! Streaming clients that stop reading: cut at `[server] stream_stall_timeout_ms`, the
//! deployment released at once, and billed (usage, audit, quota) for every token the upstream
//! generated, also when such a client finally disconnects.
//!
//! The client is a raw socket that reads the response head and then nothing. Its receive buffer
//! and its MSS are small so that the kernel buffers between the gateway and it fill with a few
//! thousand tokens (Linux sizes the gateway's send buffer from the MSS; on loopback, with a
//! 64 KiB MSS, it would hold megabytes). The simulator decodes 10,000 tokens/s, so the whole
//! answer was generated well before the deadline: what it generated is its record's count.
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use spillway_core::RegionIx;
use spillway_gateway::config::{ModelIx, TenantIx};
use spillway_gateway::state::quota_book::QuotaKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STALL: Duration = Duration::from_millis(1000);
/// Output tokens of the stalled answer: generated in 0.5 s, far more than the buffers on the way
/// to the client hold.
const TOKENS: u64 = 5000;
/// The tenant's in-region token quota.
const TPM: u64 = 60_000;

fn audit_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "spillway-audit-{name}-{}-{:?}.jsonl",
        std::process::id(),
        Instant::now()
    ))
}

/// The audit record of request `id`, waiting (bounded) for the writer.
async fn audit_record(path: &Path, id: &str) -> Value {
    let mut found = None;
    eventually("the audit record is written", || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["requestId"] == id);
        found.is_some()
    })
    .await;
    found.unwrap_or_default()
}

async fn start(stall: Option<Duration>, audit: &Path) -> Harness {
    let mut spec = Spec::standard();
    spec.audit = Some(audit.display().to_string());
    spec.tenants[0] = Tenant::new("acme", KEY).quota(M, None, Some(TPM));
    let server = stall
        .map(|d| format!("[server]\nstream_stall_timeout_ms = {}\n", d.as_millis()))
        .unwrap_or_default();
    Harness::start_with(spec, &server).await
}

/// Sends a streamed request for `TOKENS` tokens of `M` to us-east-1 as request `id` and reads
/// the response head, and nothing after it.
async fn stalled_client(h: &Harness, id: &str) -> TcpStream {
    h.register(id, "us-east-1", KEY, M);
    let raw =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    raw.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    raw.set_tcp_mss(1024).expect("TCP_MAXSEG");
    raw.set_nonblocking(true).expect("non-blocking");
    let socket = tokio::net::TcpSocket::from_std_stream(raw.into());
    let mut s = socket.connect(h.addr("us-east-1")).await.expect("connect");
    let body = serde_json::to_vec(&stream_body(M, TOKENS)).expect("json");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: spillway\r\nauthorization: Bearer {KEY}\r\n\
         x-request-id: {id}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&body).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("a response head")
            .expect("read");
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

fn in_flight(h: &Harness) -> u32 {
    let st = h.gw().state();
    let d = st
        .cfg
        .deployment(ModelIx(0), RegionIx(0))
        .expect("M in us-east-1");
    let now = st.now();
    st.router().router.view(d, now).in_flight
}

/// The simulator's record of request `id` once it has one: what it generated.
async fn generated(h: &Harness, id: &str) -> (String, u64) {
    eventually("the simulator records the request", || {
        !h.records_for(id).is_empty()
    })
    .await;
    let rec = &h.records_for(id)[0];
    (rec.outcome.clone(), rec.completion_tokens)
}

/// The tenant's in-region quota for `M` in us-east-1 holds `used` tokens (give or take what
/// refilled since): all but those can be reserved, and those cannot be reserved on top.
async fn assert_quota_holds(h: &Harness, used: u64) {
    let key = QuotaKey {
        tenant: TenantIx(0),
        model: ModelIx(0),
        source: RegionIx(0),
        cross_region: false,
    };
    let st = h.gw().state();
    let rest = st.reserve(key, TPM - used).await;
    assert!(
        matches!(rest, Ok(Some(_))),
        "the unused reservation came back"
    );
    // One token a millisecond refills: far less than `used` during this check.
    let more = st.reserve(key, used).await;
    assert!(more.is_err(), "the used tokens stay charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_cut_at_the_deadline_released_and_billed_for_every_token() {
    let audit = audit_path("stall");
    let h = start(Some(STALL), &audit).await;
    let client = stalled_client(&h, "stalled-1").await;
    let head_at = Instant::now();
    assert_eq!(in_flight(&h), 1, "the stream holds its deployment");

    eventually("the deployment is released", || in_flight(&h) == 0).await;
    let held = head_at.elapsed();
    assert!(
        held >= STALL.mul_f64(0.9) && held < STALL + Duration::from_secs(2),
        "released {held:?} after the head; the deadline is {STALL:?}"
    );
    let (outcome, tokens) = generated(&h, "stalled-1").await;
    assert_eq!((outcome.as_str(), tokens), ("ok", TOKENS), "all generated");
    let rec = audit_record(&audit, "stalled-1").await;
    assert_eq!(rec["outcome"], "stalled", "{rec}");
    assert_eq!(
        rec["outputTokens"], TOKENS,
        "billed what was generated: {rec}"
    );
    assert_eq!(rec["inputTokens"], prompt(), "{rec}");
    assert_quota_holds(&h, prompt() + TOKENS).await;
    drop(client);
    h.assert_residency();
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_and_then_leaves_is_billed_for_every_token() {
    let audit = audit_path("gone");
    // The default deadline (30 s): the client leaves long before it.
    let h = start(None, &audit).await;
    let client = stalled_client(&h, "gone-1").await;
    // The whole answer is generated while the client reads nothing; most of it never left
    // the buffers on the way.
    let (outcome, tokens) = generated(&h, "gone-1").await;
    assert_eq!((outcome.as_str(), tokens), ("ok", TOKENS));
    assert_eq!(in_flight(&h), 1, "the stream still holds its deployment");
    drop(client);
    eventually("the deployment is released", || in_flight(&h) == 0).await;
    let rec = audit_record(&audit, "gone-1").await;
    assert_eq!(rec["outcome"], "cancelled", "{rec}");
    assert_eq!(
        rec["outputTokens"], TOKENS,
        "billed what was generated: {rec}"
    );
    assert_quota_holds(&h, prompt() + TOKENS).await;
    h.assert_residency();
    let _ = std::fs::remove_file(&audit);
}

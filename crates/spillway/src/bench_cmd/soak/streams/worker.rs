//! One client process of `spillway bench streams` (`--worker`, started by the command): opens
//! its share of streamed chat completions, each on a connection of its own, ramped over
//! `--ramp-secs` with at most `--connects` connects in flight (until the connection is up), and
//! reads each as it arrives until `data: [DONE]`.
//!
//! The bound is on the connects, not on the wait for the response head: the gateway sends the
//! head with the first token (until then it may still fail the request over to another
//! region), one decode interval later (0.5 s at the defaults), so a bound held to the head
//! would cap the ramp at `connects` per decode interval (512 streams/s with 256).
//!
//! Every 250 ms it prints its counts on stdout (`streams started=… opened=… first=… done=…
//! failed=… nofirst=…`); when every stream has ended, one line `streams-result {JSON}` with
//! each stream's first-chunk latency, the failures by reason and the serving regions.
//!
//! A process of its own because the streams' sockets and the simulators' (in the command's
//! process) would together need twice the descriptors one process may have.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use spillway_proto::sse::{DONE as SSE_DONE, SseDecoder};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::http::io_reason;
use super::{API_KEY, PROFILE, REGIONS};

/// Connecting and sending the request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request to the response head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence on a stream before it counts as failed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a worker is told to do.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub target: SocketAddr,
    pub streams: usize,
    pub max_tokens: u64,
    pub ramp: Duration,
    pub connects: usize,
}

/// The counts a worker prints, in order: started, opened (200 and a head), first chunk, done
/// (`[DONE]`), failed, failed before a first chunk.
pub type Counts = [u64; 6];

#[derive(Debug, Default)]
struct Live([AtomicU64; 6]);

const STARTED: usize = 0;
const OPENED: usize = 1;
const FIRST: usize = 2;
const DONE: usize = 3;
const FAILED: usize = 4;
const NO_FIRST: usize = 5;

impl Live {
    fn add(&self, which: usize) {
        self.0[which].fetch_add(1, Ordering::Relaxed);
    }

    fn line(&self) -> String {
        let g = |i: usize| self.0[i].load(Ordering::Relaxed);
        format!(
            "streams started={} opened={} first={} done={} failed={} nofirst={}",
            g(STARTED),
            g(OPENED),
            g(FIRST),
            g(DONE),
            g(FAILED),
            g(NO_FIRST)
        )
    }
}

/// Whether every one of `streams` has had its first chunk or failed without one.
pub fn all_first(c: &Counts, streams: usize) -> bool {
    c[FIRST] + c[NO_FIRST] >= streams as u64
}

/// Streams with a first chunk that have not ended (done, or failed after it).
pub fn in_flight(c: &Counts) -> u64 {
    let failed_after_first = c[FAILED].saturating_sub(c[NO_FIRST]);
    c[FIRST].saturating_sub(c[DONE] + failed_after_first)
}

/// Parses a count line.
pub fn parse_counts(line: &str) -> Option<Counts> {
    let rest = line.strip_prefix("streams ")?;
    let mut out = [0u64; 6];
    let mut n = 0;
    for (i, kv) in rest.split_whitespace().enumerate() {
        *out.get_mut(i)? = kv.split_once('=')?.1.parse().ok()?;
        n += 1;
    }
    (n == out.len()).then_some(out)
}

/// What a worker's streams came to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub ok: u64,
    /// Each stream's time from its connect to its first `data:` event, in ms.
    pub first_chunk_ms: Vec<f64>,
    pub failures: BTreeMap<String, u64>,
    /// Serving region (`x-spillway-region`) of every stream that got a 200.
    pub regions: BTreeMap<String, u64>,
}

pub const RESULT_PREFIX: &str = "streams-result ";

pub async fn run(spec: WorkerSpec) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    anyhow::ensure!(
        limit >= spec.streams as u64 + 64,
        "this process may open {limit} files, too few for {} streams",
        spec.streams
    );
    let live = Arc::new(Live::default());
    let printer = {
        let live = live.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                println!("{}", live.line());
            }
        })
    };
    let result = open_all(&spec, &live).await;
    printer.abort();
    println!("{}", live.line());
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Opens every stream at its time in the ramp, at most `connects` connects in flight, and
/// waits for all of them to end.
async fn open_all(spec: &WorkerSpec, live: &Arc<Live>) -> WorkerResult {
    let gate = Arc::new(Semaphore::new(spec.connects.max(1)));
    let request = request_body(spec.max_tokens);
    let t0 = Instant::now();
    let mut running = JoinSet::new();
    for i in 0..spec.streams {
        tokio::time::sleep_until(t0 + spec.ramp.mul_f64(i as f64 / spec.streams as f64)).await;
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let (live, request, target) = (live.clone(), request.clone(), spec.target);
        running.spawn(async move { one(target, request, permit, &live).await });
    }
    let mut out = WorkerResult::default();
    while let Some(done) = running.join_next().await {
        let (first_ms, outcome) = done.unwrap_or((None, Err("client task panicked".into())));
        out.first_chunk_ms.extend(first_ms);
        match outcome {
            Ok(region) => {
                out.ok += 1;
                *out.regions.entry(region).or_default() += 1;
            }
            Err(why) => *out.failures.entry(why).or_default() += 1,
        }
    }
    out
}

fn request_body(max_tokens: u64) -> Bytes {
    let body = serde_json::json!({
        "model": PROFILE,
        "messages": [{"role": "user", "content": "tell me about spillways"}],
        "max_tokens": max_tokens,
        "stream": true,
    });
    Bytes::from(body.to_string())
}

/// One stream: its first-chunk latency if it had one, and the serving region or why it failed.
async fn one(
    target: SocketAddr,
    request: Bytes,
    permit: OwnedSemaphorePermit,
    live: &Live,
) -> (Option<f64>, Result<String, String>) {
    live.add(STARTED);
    let started = Instant::now();
    let resp = match open(target, request, permit).await {
        Ok(resp) => resp,
        Err(why) => return failed(live, None, why),
    };
    let served = resp.headers().get("x-spillway-region");
    let region = match served.map(|v| v.to_str().unwrap_or("(not text)")) {
        Some(r) if REGIONS.contains(&r) => r.to_string(),
        Some(r) => return failed(live, None, format!("served in {r}, outside the us regions")),
        None => return failed(live, None, "no x-spillway-region header".into()),
    };
    live.add(OPENED);
    let mut first = None;
    let read = read_events(resp.into_body(), || {
        first = Some(started.elapsed().as_secs_f64() * 1000.0);
        live.add(FIRST);
    })
    .await;
    match read {
        Ok(()) => {
            live.add(DONE);
            (first, Ok(region))
        }
        Err(why) => failed(live, first, why),
    }
}

fn failed(live: &Live, first: Option<f64>, why: String) -> (Option<f64>, Result<String, String>) {
    live.add(FAILED);
    if first.is_none() {
        live.add(NO_FIRST);
    }
    (first, Err(why))
}

/// Connects (the permit is held until the connection is up), sends, and waits for the head; a
/// status other than 200 is a failure, named with the error's `code` or `type` when the body
/// gives one. Each stream has a connection of its own, driven by a task of its own.
async fn open(
    target: SocketAddr,
    body: Bytes,
    permit: OwnedSemaphorePermit,
) -> Result<Response<Incoming>, String> {
    let connect = async {
        let tcp = TcpStream::connect(target)
            .await
            .map_err(|e| io_reason(&e))?;
        let _ = tcp.set_nodelay(true);
        hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())
    };
    let (mut sender, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| "connect: timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(conn);
    drop(permit);
    let req = Request::post("/v1/chat/completions")
        .header(hyper::header::HOST, target.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {API_KEY}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(HEAD_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "no response head within 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(resp);
    }
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
    let body = match body {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    Err(match error_code(&body) {
        Some(code) => format!("status {status} ({code})"),
        None => format!("status {status}"),
    })
}

/// The error's `code` (or `type`) from an OpenAI-shaped error body.
fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code").filter(|c| !c.is_null()).or(e.get("type"))?;
    Some(match code.as_str() {
        Some(s) => s.to_string(),
        None => code.to_string(),
    })
}

/// Reads the body to its end, calling `on_first` at the first event with data; it must have
/// carried `data: [DONE]`.
async fn read_events(mut body: Incoming, mut on_first: impl FnMut()) -> Result<(), String> {
    let mut events = SseDecoder::new();
    let mut seen_data = false;
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
            Err(_) => return Err("no bytes for 60 s".into()),
            Ok(None) => return Err("ended before [DONE]".into()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for event in events.feed(data) {
            if !seen_data && !event.data.is_empty() {
                seen_data = true;
                on_first();
            }
            if event.data == SSE_DONE {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_line_round_trips() {
        let live = Live::default();
        live.add(STARTED);
        live.add(STARTED);
        live.add(FAILED);
        live.add(NO_FIRST);
        assert_eq!(parse_counts(&live.line()), Some([2, 0, 0, 0, 1, 1]));
        assert_eq!(parse_counts("streams started=1"), None);
        // 10 started, 8 opened, 7 with a first chunk (2 of them done, 1 failed since), 3 failed
        // before a first chunk.
        let c = [10, 8, 7, 2, 4, 3];
        assert_eq!(in_flight(&c), 4);
        assert!(all_first(&c, 10) && !all_first(&c, 11));
        assert_eq!(parse_counts("spillway: warn"), None);
    }

    #[test]
    fn an_error_body_names_its_code() {
        let b = br#"{"error":{"message":"m","type":"rate_limit_error","code":"throttled"}}"#;
        assert_eq!(error_code(b).as_deref(), Some("throttled"));
        let b = br#"{"error":{"message":"m","type":"server_error","code":null}}"#;
        assert_eq!(error_code(b).as_deref(), Some("server_error"));
        assert_eq!(error_code(b"<html>"), None);
    }
}

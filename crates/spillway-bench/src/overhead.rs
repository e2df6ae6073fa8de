//! The load generator of `spillway bench overhead`: the same requests at a constant rate to
//! several endpoints at once (a simulator directly, and the gateway in front of it), timed the
//! same way for each.
//!
//! * **Open loop, constant rate.** Each endpoint gets `rps` requests a second: time is cut into
//!   slots of `1 / rps` and each endpoint's request of slot `i` is due at a uniformly random
//!   instant inside it (seeded), whatever happened to earlier ones. The jitter keeps the send
//!   times from locking onto the 1 ms tick of a tokio timer on the far side (a simulator's
//!   `sleep_until` rounds up to that tick), which would otherwise bias one path against the
//!   other by up to a millisecond.
//! * **Paced from its own thread.** A pacer thread sleeps until each due time (sub-millisecond
//!   precision, unlike tokio's 1 ms timer) and hands the request to the caller's runtime, where
//!   it runs as a task. If the pacer falls behind it sends at once and catches up.
//! * **Interleaved.** The endpoints' schedules are merged into one, so both paths see the same
//!   machine conditions (CPU contention, timer phase, connection pools) in the same run.
//! * **What is timed.** [`Sample::latency`]: from the moment the task hands the request to the
//!   HTTP client to the complete answer: the whole JSON body for a non-streaming request, the
//!   `[DONE]` event for a stream. [`Sample::from_schedule`] counts from the due time instead, so
//!   any lag of the generator is included (what an open-loop user sees when the machine cannot
//!   keep up; the max-rate ramp uses it).
//! * **What is an error.** Anything but a 200 with a complete answer: a JSON body that parses,
//!   a stream that reaches `[DONE]` with no error event; transport errors and timeouts too.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use bytes::Bytes;
use futures_util::StreamExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use spillway_proto::sse::{DONE, SseDecoder};
use tokio::time::Instant;

/// Where one path's requests go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The full URL of the chat-completions route.
    pub url: String,
    /// Sent as `Authorization: Bearer` (to every endpoint, so the requests are byte for byte the
    /// same size; a simulator ignores it).
    pub api_key: String,
}

/// One constant-rate run.
#[derive(Debug, Clone)]
pub struct Load {
    pub endpoints: Vec<Endpoint>,
    /// Requests per second sent to *each* endpoint.
    pub rps: f64,
    pub duration: Duration,
    /// The JSON request body (the same for every request).
    pub body: Bytes,
    /// Whether `body` asks for a stream (the answer is then read as SSE up to `[DONE]`).
    pub stream: bool,
    /// A request still unanswered after this counts as an error.
    pub timeout: Duration,
    /// Stop sending when this many requests are outstanding: the system is not keeping up, and
    /// waiting for the backlog would only make the run longer ([`Outcome::aborted`]).
    pub max_outstanding: Option<usize>,
    /// Seed of the send-time jitter.
    pub seed: u64,
}

/// One request's measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Index into [`Load::endpoints`].
    pub endpoint: usize,
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
    /// A 200 with a complete answer.
    pub ok: bool,
    /// From handing the request to the client to the complete answer (or the failure).
    pub latency: Duration,
    /// From the time the request was due to the complete answer: `latency` plus send lag.
    pub from_schedule: Duration,
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// The generator stopped early because `max_outstanding` requests were unanswered.
    pub aborted: bool,
    /// Wall time from the first due request to the last one sent.
    pub send_window: Duration,
}

/// Latency figures of one endpoint in a run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    pub requests: usize,
    pub errors: usize,
    /// Requests sent per second over the send window.
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// p99 measured from the due time (includes the generator's lag).
    pub p99_from_schedule_ms: f64,
}

impl Outcome {
    /// The figures of endpoint `endpoint`; latencies of successful requests only.
    pub fn stats(&self, endpoint: usize) -> Stats {
        let mine: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.endpoint == endpoint)
            .collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut lat: Vec<f64> = mine
            .iter()
            .filter(|s| s.ok)
            .map(|s| ms(s.latency))
            .collect();
        let mut sched: Vec<f64> = mine
            .iter()
            .filter(|s| s.ok)
            .map(|s| ms(s.from_schedule))
            .collect();
        lat.sort_by(f64::total_cmp);
        sched.sort_by(f64::total_cmp);
        let p = |v: &[f64], q: f64| crate::percentile(v, q);
        let window = self.send_window.as_secs_f64();
        Stats {
            requests: mine.len(),
            errors: mine.iter().filter(|s| !s.ok).count(),
            achieved_rps: if window > 0.0 {
                mine.len() as f64 / window
            } else {
                0.0
            },
            p50_ms: p(&lat, 50.0),
            p90_ms: p(&lat, 90.0),
            p99_ms: p(&lat, 99.0),
            p999_ms: p(&lat, 99.9),
            max_ms: lat.last().copied().unwrap_or(0.0),
            mean_ms: if lat.is_empty() {
                0.0
            } else {
                lat.iter().sum::<f64>() / lat.len() as f64
            },
            p99_from_schedule_ms: p(&sched, 99.0),
        }
    }
}

/// The HTTP client [`run`] sends with (make one with [`client`]).
pub type Client = reqwest::Client;

/// An HTTP/1.1 client tuned for many small requests to a few hosts on loopback: a large idle
/// pool (no connection setup in the measured path once warm), no Nagle, no proxy lookup.
pub fn client(max_idle_per_host: usize) -> reqwest::Result<Client> {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(120))
        .build()
}

/// Run `load`: send every request at its time and collect every answer. The requests run as
/// tasks on the caller's runtime; the pacing runs on a thread of its own for the duration.
pub async fn run(client: &Client, load: &Load) -> Outcome {
    let endpoints: Vec<Arc<Endpoint>> = load.endpoints.iter().cloned().map(Arc::new).collect();
    if endpoints.is_empty() || !load.rps.is_finite() || load.rps <= 0.0 {
        return Outcome::default();
    }
    let per_endpoint = (load.rps * load.duration.as_secs_f64()).round() as u64;
    let period = 1.0 / load.rps;
    let schedule = schedule(per_endpoint, endpoints.len(), period, load.seed);
    let outstanding = Arc::new(AtomicUsize::new(0));
    let pacer = Pacer {
        runtime: tokio::runtime::Handle::current(),
        client: client.clone(),
        endpoints,
        body: load.body.clone(),
        stream: load.stream,
        timeout: load.timeout,
        max_outstanding: load.max_outstanding,
        outstanding,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let _ = tx.send(pacer.pace(&schedule));
        });
    if spawned.is_err() {
        return Outcome::default();
    }
    let Ok(paced) = rx.await else {
        return Outcome::default();
    };
    let mut samples = Vec::with_capacity(paced.tasks.len());
    for task in paced.tasks {
        if let Ok(s) = task.await {
            samples.push(s);
        }
    }
    // The send window spans `per_endpoint` slots when every request went out.
    let send_window = if paced.aborted {
        paced.last_sent
    } else {
        Duration::from_secs_f64(per_endpoint as f64 * period)
    };
    Outcome {
        samples,
        aborted: paced.aborted,
        send_window,
    }
}

/// Every request's due time (offset from the start) and endpoint, in time order: endpoint `k`'s
/// request of slot `i` at `(i + u) × period`, `u` uniform in `[0, 1)`.
fn schedule(per_endpoint: u64, endpoints: usize, period: f64, seed: u64) -> Vec<(Duration, usize)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(per_endpoint as usize * endpoints);
    for i in 0..per_endpoint {
        for k in 0..endpoints {
            let u: f64 = rng.random::<f64>();
            out.push((Duration::from_secs_f64((i as f64 + u) * period), k));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// What the pacer thread needs to start requests on the caller's runtime.
struct Pacer {
    runtime: tokio::runtime::Handle,
    client: Client,
    endpoints: Vec<Arc<Endpoint>>,
    body: Bytes,
    stream: bool,
    timeout: Duration,
    max_outstanding: Option<usize>,
    outstanding: Arc<AtomicUsize>,
}

struct Paced {
    tasks: Vec<tokio::task::JoinHandle<Sample>>,
    aborted: bool,
    /// When the last request was sent, from the start.
    last_sent: Duration,
}

impl Pacer {
    fn pace(self, schedule: &[(Duration, usize)]) -> Paced {
        let start = std::time::Instant::now();
        let mut tasks = Vec::with_capacity(schedule.len());
        let mut aborted = false;
        let mut last_sent = Duration::ZERO;
        for &(at, ix) in schedule {
            let due = start + at;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if self
                .max_outstanding
                .is_some_and(|m| self.outstanding.load(Ordering::Relaxed) >= m)
            {
                aborted = true;
                break;
            }
            self.outstanding.fetch_add(1, Ordering::Relaxed);
            let outstanding = self.outstanding.clone();
            let request = one(
                self.client.clone(),
                self.endpoints[ix].clone(),
                ix,
                self.body.clone(),
                self.stream,
                self.timeout,
                Instant::from_std(due),
            );
            tasks.push(self.runtime.spawn(async move {
                let s = request.await;
                outstanding.fetch_sub(1, Ordering::Relaxed);
                s
            }));
            last_sent = start.elapsed();
        }
        Paced {
            tasks,
            aborted,
            last_sent,
        }
    }
}

async fn one(
    client: reqwest::Client,
    endpoint: Arc<Endpoint>,
    ix: usize,
    body: Bytes,
    stream: bool,
    timeout: Duration,
    due: Instant,
) -> Sample {
    let sent = Instant::now();
    let answer = tokio::time::timeout(timeout, exchange(&client, &endpoint, body, stream)).await;
    let (status, ok, done) = match answer {
        Ok(Ok((status, ok, done))) => (status, ok, done),
        Ok(Err(status)) => (status, false, Instant::now()),
        Err(_) => (0, false, Instant::now()),
    };
    Sample {
        endpoint: ix,
        status,
        ok,
        latency: done.saturating_duration_since(sent),
        from_schedule: done.saturating_duration_since(due),
    }
}

/// Send one request and read the whole answer. `Ok((status, complete, when complete))`;
/// `Err(status)` on a transport error (0 before any response).
async fn exchange(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    body: Bytes,
    stream: bool,
) -> Result<(u16, bool, Instant), u16> {
    let resp = client
        .post(&endpoint.url)
        .bearer_auth(&endpoint.api_key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = resp.status().as_u16();
    if status != 200 {
        let _ = resp.bytes().await;
        return Ok((status, false, Instant::now()));
    }
    if !stream {
        let bytes = resp.bytes().await.map_err(|_| status)?;
        let done = Instant::now();
        let complete = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
        return Ok((status, complete, done));
    }
    let mut body = resp.bytes_stream();
    let mut decoder = SseDecoder::new();
    let mut errored = false;
    let mut done = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| status)?;
        for ev in decoder.feed(&chunk) {
            if ev.data == DONE {
                done.get_or_insert_with(Instant::now);
            } else if ev.data.starts_with("{\"error\"") {
                errored = true;
            }
        }
    }
    // Read to the end so the connection goes back to the pool; timed at `[DONE]`.
    Ok(match done {
        Some(at) => (status, !errored, at),
        None => (status, false, Instant::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(endpoint: usize, ok: bool, ms: u64) -> Sample {
        Sample {
            endpoint,
            status: if ok { 200 } else { 500 },
            ok,
            latency: Duration::from_millis(ms),
            from_schedule: Duration::from_millis(ms + 1),
        }
    }

    #[test]
    fn stats_per_endpoint_count_errors_and_skip_their_latency() {
        let mut samples: Vec<Sample> = (1..=100).map(|ms| sample(0, true, ms)).collect();
        samples.push(sample(0, false, 10_000));
        samples.push(sample(1, true, 7));
        let out = Outcome {
            samples,
            aborted: false,
            send_window: Duration::from_secs(1),
        };
        let s = out.stats(0);
        assert_eq!((s.requests, s.errors), (101, 1));
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(s.p99_from_schedule_ms, 100.0);
        assert!((s.achieved_rps - 101.0).abs() < 1e-9);
        let t = out.stats(1);
        assert_eq!((t.requests, t.errors, t.p50_ms), (1, 0, 7.0));
        assert_eq!(out.stats(2).requests, 0);
    }

    #[test]
    fn the_schedule_is_a_constant_rate_per_endpoint_in_time_order() {
        let s = schedule(100, 2, 0.001, 7);
        assert_eq!(s.len(), 200);
        assert!(s.windows(2).all(|w| w[0].0 <= w[1].0));
        for k in 0..2 {
            let mine: Vec<Duration> = s.iter().filter(|e| e.1 == k).map(|e| e.0).collect();
            assert_eq!(mine.len(), 100);
            for (i, at) in mine.iter().enumerate() {
                let slot = at.as_secs_f64() / 0.001;
                assert!(slot >= i as f64 && slot < i as f64 + 1.0, "{k} {i} {slot}");
            }
        }
        assert_eq!(s, schedule(100, 2, 0.001, 7));
    }

    #[tokio::test]
    async fn no_endpoints_or_no_rate_sends_nothing() {
        let Ok(c) = client(4) else {
            panic!("client");
        };
        let mut load = Load {
            endpoints: Vec::new(),
            rps: 10.0,
            duration: Duration::from_millis(100),
            body: Bytes::new(),
            stream: false,
            timeout: Duration::from_secs(1),
            max_outstanding: None,
            seed: 1,
        };
        assert!(run(&c, &load).await.samples.is_empty());
        load.endpoints.push(Endpoint {
            url: "http://127.0.0.1:9/".into(),
            api_key: String::new(),
        });
        load.rps = 0.0;
        assert!(run(&c, &load).await.samples.is_empty());
    }
}

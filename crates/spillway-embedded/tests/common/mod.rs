//! The end-to-end harness: a TOML configuration built per test (regions, models, deployments on
//! in-process simulators or on other upstreams, tenants and quotas, one listener per region on
//! 127.0.0.1:0), a started [`Stack`] (the gateway and its simulators), a client that tags every request with its own request id,
//! and the residency check that every test calls.
//!
//! Nothing here sleeps to guess timing: waits are deadline loops on observable state.
#![allow(dead_code)]
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use spillway_embedded::Stack;
use spillway_gateway::{Config, Gateway};
use spillway_proto::sse::SseDecoder;
use spillway_sim::{Fault, ServedRecord, SimHandle};

mod spec;

#[allow(unused_imports)]
pub use spec::{Dep, ModelSpec, Quota, Spec, Tenant, Upstream};

pub const M: &str = "demo.chat-small-v1:0";
pub const KEY: &str = "sk-test-acme";
pub const US: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];
pub const EU: [&str; 2] = ["eu-central-1", "eu-west-1"];
/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A request body: one short user message (see [`prompt`]), `max_tokens` output tokens.
pub fn body(model: &str, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
    })
}

/// A streaming request body.
pub fn stream_body(model: &str, max_tokens: u64) -> Value {
    let mut b = body(model, max_tokens);
    b["stream"] = json!(true);
    b
}

/// Prompt tokens of [`body`]'s messages, by the shared estimate the simulators report.
pub fn prompt() -> u64 {
    let msgs: Vec<spillway_proto::ChatMessage> =
        serde_json::from_value(json!([{"role": "user", "content": "hi"}])).expect("messages");
    spillway_proto::tokens::prompt_tokens(&msgs)
}

/// A non-streamed answer.
#[derive(Debug)]
pub struct Reply {
    pub id: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn region(&self) -> Option<&str> {
        self.header("x-spillway-region")
    }

    pub fn reason(&self) -> Option<&str> {
        self.header("x-spillway-route-reason")
    }

    /// Asserts OpenAI's error shape with this status and `error.type`.
    pub fn assert_error(&self, status: u16, kind: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        let e = &self.json["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        assert_eq!(e["type"], kind, "{self:?}");
        assert!(e.get("code").is_some(), "error.code missing: {self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
    }

    /// Asserts a 429 with a usable `Retry-After` (whole seconds, at least 1).
    pub fn assert_throttled(&self) {
        self.assert_error(429, "rate_limit_error");
        let secs: u64 = self
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {self:?}"));
        assert!(secs >= 1, "{self:?}");
    }

    pub fn assert_ok_in(&self, region: &str, reason: &str) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.region(), Some(region), "{self:?}");
        assert_eq!(self.reason(), Some(reason), "{self:?}");
    }
}

/// A started gateway and what the test needs around it.
pub struct Harness {
    pub spec: Spec,
    gw: Option<Stack>,
    sims: Vec<SimHandle>,
    addrs: HashMap<String, SocketAddr>,
    /// `http` or `https` (see [`Harness::start_custom`]).
    scheme: &'static str,
    pub client: reqwest::Client,
    /// Request id → (source region, regions it may be served in).
    sent: Mutex<HashMap<String, (String, Vec<String>)>>,
    next: AtomicU64,
}

impl Harness {
    pub async fn start(spec: Spec) -> Harness {
        Harness::start_with(spec, "").await
    }

    /// [`Harness::start`] with `prefix` (e.g. a `[state]` table) before the spec's TOML.
    pub async fn start_with(spec: Spec, prefix: &str) -> Harness {
        Harness::start_custom(spec, prefix, |_| {}, "http", reqwest::Client::new()).await
    }

    /// [`Harness::start_with`], the parsed configuration changed by `adjust` before the start
    /// (e.g. TLS on the listeners), URLs with `scheme`, requests sent by `client`.
    pub async fn start_custom(
        spec: Spec,
        prefix: &str,
        adjust: impl FnOnce(&mut Config),
        scheme: &'static str,
        client: reqwest::Client,
    ) -> Harness {
        let toml = format!("{prefix}{}", spec.to_toml());
        let mut cfg = Config::parse(&toml, "<test>")
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n{toml}"));
        adjust(&mut cfg);
        let gw = Stack::start(cfg).await.expect("gateway starts");
        let sims = gw.sims().cloned().collect();
        let addrs = gw.gateway().listeners().into_iter().collect();
        Harness {
            spec,
            gw: Some(gw),
            sims,
            addrs,
            scheme,
            client,
            sent: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    pub fn gw(&self) -> &Gateway {
        self.stack().gateway()
    }

    fn stack(&self) -> &Stack {
        self.gw.as_ref().expect("gateway already shut down")
    }

    /// The gateway and its simulators, for a test that shuts them down.
    pub fn take_gateway(&mut self) -> Stack {
        self.gw.take().expect("gateway already taken")
    }

    pub fn addr(&self, region: &str) -> SocketAddr {
        self.addrs[region]
    }

    pub fn url(&self, region: &str, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr(region))
    }

    /// The simulator of `model` in `region`.
    pub fn sim_of(&self, model: &str, region: &str) -> &SimHandle {
        self.stack()
            .sim(model, region)
            .unwrap_or_else(|| panic!("no simulator for {model} in {region}"))
    }

    pub fn sim(&self, region: &str) -> &SimHandle {
        self.sim_of(M, region)
    }

    /// Registers a request id sent by hand: where it may be served.
    pub fn register(&self, id: &str, source: &str, key: &str, model: &str) {
        let allowed = self.spec.allowed(key, source, model);
        self.sent
            .lock()
            .expect("lock")
            .insert(id.to_string(), (source.to_string(), allowed));
    }

    /// Sends raw bytes to `/v1/chat/completions` on `source`'s listener, tagged with a fresh
    /// request id, and registers where that id may be served (`model`: None = nowhere).
    pub async fn post(
        &self,
        source: &str,
        key: Option<&str>,
        body: Vec<u8>,
        model: Option<&str>,
    ) -> (String, reqwest::Response) {
        let id = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        let allowed = match (model, key) {
            (Some(m), Some(k)) => self.spec.allowed(k, source, m),
            _ => Vec::new(),
        };
        self.sent
            .lock()
            .expect("lock")
            .insert(id.clone(), (source.to_string(), allowed));
        let mut req = self
            .client
            .post(self.url(source, "/v1/chat/completions"))
            .header("x-request-id", &id)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("gateway answers");
        assert_eq!(
            resp.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(id.as_str()),
            "the gateway echoes the request id"
        );
        (id, resp)
    }

    pub async fn chat_as(&self, source: &str, key: Option<&str>, body: Value) -> Reply {
        let model = body["model"].as_str().map(str::to_string);
        let bytes = serde_json::to_vec(&body).expect("json");
        let (id, resp) = self.post(source, key, bytes, model.as_deref()).await;
        reply(id, resp).await
    }

    pub async fn chat(&self, source: &str, body: Value) -> Reply {
        self.chat_as(source, Some(KEY), body).await
    }

    /// A streamed request; returns once the response head arrived.
    pub async fn stream(&self, source: &str, body: Value) -> (String, reqwest::Response) {
        let model = body["model"].as_str().map(str::to_string);
        let bytes = serde_json::to_vec(&body).expect("json");
        self.post(source, Some(KEY), bytes, model.as_deref()).await
    }

    /// Holds one slot of `model` on `source` busy, served in `serving` (plain ids: the source):
    /// the serving simulator decodes at 5 tokens/s for this request only, and this returns once
    /// the first chunk reached the client. Drop the result to end it.
    pub async fn hold(&self, source: &str, model: &str, serving: &str) -> Sse {
        self.hold_n(source, model, serving, 1000).await
    }

    /// [`Harness::hold`] with `max_tokens` output tokens (at 5 tokens/s).
    pub async fn hold_n(&self, source: &str, model: &str, serving: &str, max_tokens: u64) -> Sse {
        let sim = self.sim_of(self.spec.base_model(model), serving);
        sim.set_fault(Fault {
            slow_factor: 2000.0,
            ..Fault::default()
        });
        let (id, resp) = self.stream(source, stream_body(model, max_tokens)).await;
        assert_eq!(resp.status(), StatusCode::OK, "hold {id} was not admitted");
        assert_eq!(
            resp.headers()
                .get("x-spillway-region")
                .and_then(|v| v.to_str().ok()),
            Some(serving)
        );
        let mut sse = Sse::new(resp);
        let first = sse.next().await.expect("a first chunk");
        assert!(first.contains("chat.completion.chunk"), "{first}");
        sim.set_fault(Fault::default());
        sse
    }

    /// Every record of every simulator.
    pub fn records(&self) -> Vec<ServedRecord> {
        self.sims.iter().flat_map(SimHandle::served).collect()
    }

    pub fn records_for(&self, id: &str) -> Vec<ServedRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.request_id.as_deref() == Some(id))
            .collect()
    }

    pub fn records_in(&self, region: &str) -> Vec<ServedRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.region == region)
            .collect()
    }

    /// Data residency, from the simulators' own records: every request any simulator saw was
    /// sent by this test and reached only a region of its destination set for its source.
    /// Returns how many records were checked.
    pub fn assert_residency(&self) -> usize {
        let sent = self.sent.lock().expect("lock");
        let records = self.records();
        for r in &records {
            let id = r
                .request_id
                .as_deref()
                .unwrap_or_else(|| panic!("a simulator saw a request without an id: {r:?}"));
            let (source, allowed) = sent
                .get(id)
                .unwrap_or_else(|| panic!("a simulator saw a request nobody sent: {r:?}"));
            assert!(
                allowed.contains(&r.region),
                "RESIDENCY VIOLATION: request {id} from {source} reached {} (allowed: {allowed:?}): {r:?}",
                r.region
            );
        }
        records.len()
    }
}

async fn reply(id: String, resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        id,
        status,
        headers,
        text,
        json,
    }
}

/// Reads a streamed response event by event (each wait bounded by [`DEADLINE`]).
pub struct Sse {
    pub headers: HeaderMap,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    dec: SseDecoder,
    queue: VecDeque<String>,
    /// The connection broke (no clean end of the body).
    pub broken: bool,
}

impl Sse {
    pub fn new(resp: reqwest::Response) -> Sse {
        Sse {
            headers: resp.headers().clone(),
            body: resp.bytes_stream().boxed(),
            dec: SseDecoder::new(),
            queue: VecDeque::new(),
            broken: false,
        }
    }

    /// The next event's data; None at the end of the body.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            match tokio::time::timeout(DEADLINE, self.body.next()).await {
                Err(_) => panic!("no SSE event within {DEADLINE:?}"),
                Ok(None) => return None,
                Ok(Some(Err(_))) => {
                    self.broken = true;
                    return None;
                }
                Ok(Some(Ok(b))) => self
                    .queue
                    .extend(self.dec.feed(&b).into_iter().map(|e| e.data)),
            }
        }
    }

    /// Every remaining event.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// The content text of chunk events (JSON chunks only).
pub fn content_of(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Waits (bounded by [`DEADLINE`]) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An `http://127.0.0.1:<port>/v1` where nothing listens. The port stays bound (without
/// listening) while the returned socket lives, so no other server of the test process can be
/// given it in the meantime: connections to it are refused.
pub fn closed_port_url() -> (String, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    (format!("http://127.0.0.1:{port}/v1"), socket)
}

/// What an [`mock_upstream`] saw: one entry per request, (x-spillway-request-id, authorization).
pub type Hits = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// A tiny OpenAI-compatible upstream that answers every chat completion with `status`, `body`
/// and `headers`. Returns its base URL (`.../v1`) and what it saw.
pub async fn mock_upstream(
    status: u16,
    body: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> (String, Hits) {
    use axum::http::HeaderMap as AxHeaders;
    let hits: Hits = Arc::default();
    let seen = hits.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |h: AxHeaders| {
            let seen = seen.clone();
            async move {
                let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                seen.lock()
                    .expect("lock")
                    .push((get("x-spillway-request-id"), get("authorization")));
                let mut resp = axum::response::Response::new(axum::body::Body::from(body));
                *resp.status_mut() =
                    axum::http::StatusCode::from_u16(status).expect("valid status");
                let hm = resp.headers_mut();
                hm.insert("content-type", "application/json".parse().expect("value"));
                for (k, v) in headers {
                    hm.insert(*k, v.parse().expect("value"));
                }
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), hits)
}

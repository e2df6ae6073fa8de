//! The end-to-end harness: a TOML configuration built per test (regions, models, deployments on
//! in-process simulators or on other upstreams, tenants and quotas, one listener per region on
//! 127.0.0.1:0), a started [`Gateway`], a client that tags every request with its own request id,
//! and the residency check that every test calls.
//!
//! Nothing here sleeps to guess timing: waits are deadline loops on observable state.
#![allow(dead_code)]
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
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
use spillway_gateway::{Config, Gateway};
use spillway_proto::sse::SseDecoder;
use spillway_sim::{Fault, ServedRecord, SimHandle};

pub const M: &str = "demo.chat-small-v1:0";
pub const KEY: &str = "sk-test-acme";
pub const US: [&str; 3] = ["us-east-1", "us-east-2", "us-west-2"];
pub const EU: [&str; 2] = ["eu-central-1", "eu-west-1"];
/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub profile_only: bool,
    pub burndown: Option<f64>,
    pub default_max_tokens: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Upstream {
    /// An in-process simulator: fast (prefill ~0, 10k tokens/s), 64 slots.
    Sim,
    /// An OpenAI-compatible server at this base URL (`.../v1`).
    OpenAi(String),
}

#[derive(Debug, Clone)]
pub struct Dep {
    pub model: String,
    pub region: String,
    pub max_in_flight: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub upstream: Upstream,
}

#[derive(Debug, Clone)]
pub struct Quota {
    pub model: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub key: String,
    pub multiplier: Option<f64>,
    pub denied: Vec<String>,
    pub quotas: Vec<Quota>,
}

impl Tenant {
    pub fn new(name: &str, key: &str) -> Tenant {
        Tenant {
            name: name.into(),
            key: key.into(),
            multiplier: None,
            denied: Vec::new(),
            quotas: Vec::new(),
        }
    }

    pub fn quota(mut self, model: &str, rpm: Option<u64>, tpm: Option<u64>) -> Tenant {
        self.quotas.push(Quota {
            model: model.into(),
            rpm,
            tpm,
        });
        self
    }
}

/// What a test's gateway looks like; [`Spec::standard`] is three `us` and two `eu` regions, `M`
/// deployed everywhere with room to spare, one tenant (`KEY`) without quotas.
#[derive(Debug, Clone)]
pub struct Spec {
    pub regions: Vec<(String, String)>,
    pub models: Vec<ModelSpec>,
    pub deployments: Vec<Dep>,
    pub tenants: Vec<Tenant>,
    pub routing: Vec<(String, String)>,
    pub max_body_bytes: Option<usize>,
}

impl Spec {
    pub fn standard() -> Spec {
        let mut s = Spec {
            regions: US
                .iter()
                .map(|r| (r.to_string(), "us".to_string()))
                .chain(EU.iter().map(|r| (r.to_string(), "eu".to_string())))
                .collect(),
            models: Vec::new(),
            deployments: Vec::new(),
            tenants: vec![Tenant::new("acme", KEY)],
            routing: Vec::new(),
            max_body_bytes: None,
        };
        s.add_model(M, false, None);
        s
    }

    /// Adds a model deployed on a simulator in every region.
    pub fn add_model(&mut self, id: &str, profile_only: bool, burndown: Option<f64>) {
        self.models.push(ModelSpec {
            id: id.into(),
            profile_only,
            burndown,
            default_max_tokens: None,
        });
        for (r, _) in self.regions.clone() {
            self.deployments.push(Dep {
                model: id.into(),
                region: r,
                max_in_flight: 32,
                rpm: None,
                tpm: None,
                upstream: Upstream::Sim,
            });
        }
    }

    pub fn dep(&mut self, model: &str, region: &str) -> &mut Dep {
        self.deployments
            .iter_mut()
            .find(|d| d.model == model && d.region == region)
            .expect("no such deployment in the spec")
    }

    pub fn routing(mut self, key: &str, value: &str) -> Spec {
        self.routing.push((key.into(), value.into()));
        self
    }

    pub fn geography(&self, region: &str) -> &str {
        self.regions
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, g)| g.as_str())
            .expect("unknown region")
    }

    /// The regions a request may be served in, by the rules (not by the gateway's own tables):
    /// a plain id only in its source; `<geo>.` profiles only in that geography; `global.`
    /// anywhere; never in a region the tenant denied.
    pub fn allowed(&self, key: &str, source: &str, model: &str) -> Vec<String> {
        let denied: Vec<String> = self
            .tenants
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.denied.clone())
            .unwrap_or_default();
        let set: Vec<String> = match model.split_once('.') {
            Some(("global", _)) => self.regions.iter().map(|(r, _)| r.clone()).collect(),
            Some((geo, _)) if self.regions.iter().any(|(_, g)| g == geo) => self
                .regions
                .iter()
                .filter(|(_, g)| g == geo)
                .map(|(r, _)| r.clone())
                .collect(),
            _ => vec![source.to_string()],
        };
        set.into_iter().filter(|r| !denied.contains(r)).collect()
    }

    /// The model id behind a profile id (`us.<id>` → `<id>`); a model id as it is.
    pub fn base_model<'a>(&self, name: &'a str) -> &'a str {
        match name.split_once('.') {
            Some((p, m)) if p == "global" || self.regions.iter().any(|(_, g)| g == p) => m,
            _ => name,
        }
    }

    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        if let Some(b) = self.max_body_bytes {
            let _ = writeln!(t, "[server]\nmax_body_bytes = {b}\n");
        }
        let _ = writeln!(t, "[routing]\nseed = 7");
        for (k, v) in &self.routing {
            let _ = writeln!(t, "{k} = {v}");
        }
        for (name, geo) in &self.regions {
            let _ = writeln!(t, "\n[[regions]]\nname = {name:?}\ngeography = {geo:?}");
        }
        for m in &self.models {
            let _ = writeln!(
                t,
                "\n[[models]]\nid = {:?}\nprofile_only = {}",
                m.id, m.profile_only
            );
            if let Some(b) = m.burndown {
                let _ = writeln!(t, "output_burndown = {b:?}");
            }
            if let Some(n) = m.default_max_tokens {
                let _ = writeln!(t, "default_max_tokens = {n}");
            }
        }
        for d in &self.deployments {
            let _ = writeln!(
                t,
                "\n[[deployments]]\nmodel = {:?}\nregion = {:?}\nmax_in_flight = {}",
                d.model, d.region, d.max_in_flight
            );
            if let Some(v) = d.rpm {
                let _ = writeln!(t, "rpm = {v}");
            }
            if let Some(v) = d.tpm {
                let _ = writeln!(t, "tpm = {v}");
            }
            let _ = match &d.upstream {
                Upstream::Sim => writeln!(
                    t,
                    "upstream = {{ kind = \"sim\", concurrency = 64, queue_limit = 64, \
                     prefill_tokens_per_sec = 1000000000.0, decode_tokens_per_sec = 10000.0 }}"
                ),
                Upstream::OpenAi(url) => {
                    writeln!(t, "upstream = {{ kind = \"openai\", base_url = {url:?} }}")
                }
            };
        }
        for tn in &self.tenants {
            let hash: String = spillway_gateway::config::sha256(tn.key.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let _ = writeln!(
                t,
                "\n[[tenants]]\nname = {:?}\napi_keys = [{{ sha256 = {hash:?} }}]\ndenied_regions = {:?}",
                tn.name, tn.denied
            );
            if let Some(m) = tn.multiplier {
                let _ = writeln!(t, "cross_region_multiplier = {m:?}");
            }
            for q in &tn.quotas {
                let _ = writeln!(t, "\n[[tenants.quotas]]\nmodel = {:?}", q.model);
                if let Some(v) = q.rpm {
                    let _ = writeln!(t, "rpm = {v}");
                }
                if let Some(v) = q.tpm {
                    let _ = writeln!(t, "tpm = {v}");
                }
            }
        }
        for (name, _) in &self.regions {
            let _ = writeln!(
                t,
                "\n[[listeners]]\nbind = \"127.0.0.1:0\"\nregion = {name:?}"
            );
        }
        t
    }
}

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
    gw: Option<Gateway>,
    sims: Vec<SimHandle>,
    addrs: HashMap<String, SocketAddr>,
    pub client: reqwest::Client,
    /// Request id → (source region, regions it may be served in).
    sent: Mutex<HashMap<String, (String, Vec<String>)>>,
    next: AtomicU64,
}

impl Harness {
    pub async fn start(spec: Spec) -> Harness {
        let toml = spec.to_toml();
        let cfg = Config::parse(&toml, "<test>")
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n{toml}"));
        let gw = Gateway::start(cfg).await.expect("gateway starts");
        let sims = gw.sims().cloned().collect();
        let addrs = gw.listeners().into_iter().collect();
        Harness {
            spec,
            gw: Some(gw),
            sims,
            addrs,
            client: reqwest::Client::new(),
            sent: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("gateway already shut down")
    }

    pub fn take_gateway(&mut self) -> Gateway {
        self.gw.take().expect("gateway already taken")
    }

    pub fn addr(&self, region: &str) -> SocketAddr {
        self.addrs[region]
    }

    pub fn url(&self, region: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(region))
    }

    /// The simulator of `model` in `region`.
    pub fn sim_of(&self, model: &str, region: &str) -> &SimHandle {
        self.gw()
            .sim(model, region)
            .unwrap_or_else(|| panic!("no simulator for {model} in {region}"))
    }

    pub fn sim(&self, region: &str) -> &SimHandle {
        self.sim_of(M, region)
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
        let sim = self.sim_of(self.spec.base_model(model), serving);
        sim.set_fault(Fault {
            slow_factor: 2000.0,
            ..Fault::default()
        });
        let (id, resp) = self.stream(source, stream_body(model, 1000)).await;
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

/// An `http://127.0.0.1:<port>/v1` where nothing listens (the port was just free).
pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
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

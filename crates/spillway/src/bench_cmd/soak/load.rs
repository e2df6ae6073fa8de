//! The soak's mixed load: `clients` clients of each request kind, each sending one request at a
//! time with a pause between them, and `idle` connections that never send a request, all
//! against one API listener until told to stop.
//!
//! The four well-behaved kinds (chat, chat-stream, converse, converse-stream) go through an
//! HTTP client each (its own connection pool, keep-alive, as an SDK would); the disconnecting
//! and slow-reading clients and the idle connections are hand-written HTTP/1.1 ([`super::raw`]).
//! A quarter of the requests ask for the large model, the rest for the small one, both through
//! the `us.` profiles, so faults in one US region are absorbed by the other two.
//!
//! At stop, requests in flight are dropped (a client going away, not counted); idle connections
//! are left open for the gateway to close, and are let go only at `release`.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::http::{DEMO_KEY, contains};
use super::raw;
use super::tally::{Kind, Outcome, Tally};

pub const SMALL: &str = "us.demo.chat-small-v1:0";
pub const LARGE: &str = "us.demo.chat-large-v1:0";
/// Any one request, start to end (well above a brown-out's service time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub api: SocketAddr,
    /// Clients of each request kind.
    pub clients: usize,
    /// Idle connections held at once.
    pub idle: usize,
    /// Mean pause between a client's requests.
    pub pause: Duration,
    /// How long a slow reader reads nothing after the head.
    pub slow_hold: Duration,
    /// Output tokens of a slow reader's stream.
    pub slow_tokens: u64,
    pub seed: u64,
}

/// The running load.
pub struct Running {
    active: JoinSet<()>,
    idle: JoinSet<()>,
    stop: watch::Sender<bool>,
    release: watch::Sender<bool>,
    pub tally: Arc<Tally>,
    /// Idle connections open now.
    pub idle_open: Arc<AtomicUsize>,
}

/// What every client task shares.
#[derive(Clone)]
pub struct Ctx {
    pub api: SocketAddr,
    pub tally: Arc<Tally>,
    pub stop: watch::Receiver<bool>,
    pub release: watch::Receiver<bool>,
    pub pause: Duration,
    pub slow_hold: Duration,
    pub slow_tokens: u64,
    pub idle_open: Arc<AtomicUsize>,
}

pub fn start(spec: &LoadSpec) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let (release, release_rx) = watch::channel(false);
    let tally = Arc::new(Tally::default());
    let idle_open = Arc::new(AtomicUsize::new(0));
    let cx = Ctx {
        api: spec.api,
        tally: tally.clone(),
        stop: stop_rx,
        release: release_rx,
        pause: spec.pause,
        slow_hold: spec.slow_hold,
        slow_tokens: spec.slow_tokens,
        idle_open: idle_open.clone(),
    };
    let mut active = JoinSet::new();
    let mut seed = spec.seed;
    for _ in 0..spec.clients {
        for kind in [
            Kind::Chat,
            Kind::ChatStream,
            Kind::Converse,
            Kind::ConverseStream,
        ] {
            seed += 1;
            active.spawn(sdk_client(cx.clone(), kind, seed));
        }
        seed += 1;
        active.spawn(raw::disconnecting(cx.clone(), seed));
        seed += 1;
        active.spawn(raw::slow_reader(cx.clone(), seed));
    }
    let mut idle = JoinSet::new();
    for _ in 0..spec.idle {
        idle.spawn(raw::idle(cx.clone()));
    }
    Running {
        active,
        idle,
        stop,
        release,
        tally,
        idle_open,
    }
}

impl Running {
    /// Stops the requests (in flight ones are dropped) and waits for their clients to end; idle
    /// connections stay open.
    pub async fn stop(&mut self) {
        self.stop.send_replace(true);
        while self.active.join_next().await.is_some() {}
    }

    /// Closes the idle connections still open and waits for their tasks.
    pub async fn release(&mut self) {
        self.release.send_replace(true);
        while self.idle.join_next().await.is_some() {}
    }
}

/// Sleeps about `mean` (uniformly half to one and a half of it); false if stopped meanwhile.
pub async fn pause(cx: &mut Ctx, rng: &mut SmallRng) -> bool {
    let d = cx.pause.mul_f64(rng.random_range(0.5..1.5));
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cx.stop.wait_for(|s| *s) => true,
    };
    !stopped && !*cx.stop.borrow()
}

/// The model of the next request: the large one a quarter of the time.
pub fn model(rng: &mut SmallRng) -> &'static str {
    if rng.random_bool(0.25) { LARGE } else { SMALL }
}

/// A streamed chat completion body.
pub fn chat_body(model: &str, max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "tell me about spillways"}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

/// One client of a well-behaved kind, until stopped.
async fn sdk_client(mut cx: Ctx, kind: Kind, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            cx.tally.add(kind, Outcome::Failed(format!("client: {e}")));
            return;
        }
    };
    let base = format!("http://{}", cx.api);
    loop {
        let (path, body) = request(kind, model(&mut rng), rng.random_range(8..=48));
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(DEMO_KEY)
            .json(&body);
        let outcome = tokio::select! {
            o = send(req, kind) => o,
            _ = cx.stop.wait_for(|s| *s) => return,
        };
        cx.tally.add(kind, outcome);
        if !pause(&mut cx, &mut rng).await {
            return;
        }
    }
}

/// The path and body of a well-behaved request.
fn request(kind: Kind, model: &str, max_tokens: u64) -> (String, Value) {
    let converse = json!({
        "messages": [{"role": "user", "content": [{"text": "tell me about spillways"}]}],
        "inferenceConfig": {"maxTokens": max_tokens},
    });
    match kind {
        Kind::ChatStream => {
            let mut b = chat_body(model, max_tokens, true);
            b["stream_options"] = json!({"include_usage": true});
            ("/v1/chat/completions".into(), b)
        }
        Kind::Converse => (format!("/model/{model}/converse"), converse),
        Kind::ConverseStream => (format!("/model/{model}/converse-stream"), converse),
        _ => (
            "/v1/chat/completions".into(),
            chat_body(model, max_tokens, false),
        ),
    }
}

/// Sends and reads the whole answer; judges it by status and, for 200, by whether it ended as
/// its API ends an answer.
async fn send(req: reqwest::RequestBuilder, kind: Kind) -> Outcome {
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(reqwest_reason(&e)),
    };
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => return Outcome::Failed(format!("body: {}", reqwest_reason(&e))),
        }
    }
    match status {
        200 => {
            let complete = match kind {
                Kind::ChatStream => contains(&body, b"data: [DONE]"),
                Kind::Converse => contains(&body, b"\"output\""),
                Kind::ConverseStream => {
                    contains(&body, b"messageStop") && !contains(&body, b":exception-type")
                }
                _ => contains(&body, b"\"choices\""),
            };
            if complete {
                Outcome::Ok
            } else {
                Outcome::Failed("200 but the answer did not end properly".into())
            }
        }
        429 => Outcome::Throttled,
        s => Outcome::Failed(format!("status {s}")),
    }
}

fn reqwest_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connect failed".into()
    } else {
        // The innermost cause says what happened (reset, closed, ...).
        let mut source: &dyn std::error::Error = e;
        while let Some(s) = source.source() {
            source = s;
        }
        format!("transport: {source}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_to_their_api() {
        let (p, b) = request(Kind::ConverseStream, SMALL, 9);
        assert_eq!(p, format!("/model/{SMALL}/converse-stream"));
        assert_eq!(b["inferenceConfig"]["maxTokens"], 9);
        let (p, b) = request(Kind::ChatStream, LARGE, 9);
        assert_eq!(p, "/v1/chat/completions");
        assert_eq!(
            (b["stream"].as_bool(), b["model"].as_str()),
            (Some(true), Some(LARGE))
        );
    }
}

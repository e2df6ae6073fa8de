//! A simulated regional LLM backend speaking the OpenAI chat-completions API.
//!
//! Each simulator is a real HTTP server (axum on a tokio `TcpListener`) that stands for one
//! region's inference engine. The gateway's tests and benchmarks run one per model and region so
//! that routing, spill-over, failover and data residency are exercised over real sockets:
//!
//! * **Capacity model** ([`engine`]): continuous-batching slots (`concurrency`), prefill time
//!   proportional to prompt tokens, decode time per output token, a bounded waiting queue beyond
//!   which it answers 429 with `Retry-After`, an injected network RTT, and a `time_scale` that
//!   shortens service times so a long trace replays quickly.
//! * **Faults** ([`Fault`]), switched at run time through [`SimHandle::set_fault`] or
//!   `POST /admin/fault`: outage (503), error rate (500), hang (no first byte), brown-out
//!   (`slow_factor`), a connection break after N streamed tokens, a 429 storm with or without
//!   `Retry-After` (`throttle`, `throttle_retry_after_ms`), a connection reset before any
//!   response (`reset`), a hang after the first byte (`stall_after_tokens`) and an engine error
//!   part-way (`error_event_after_tokens`: an SSE error event, or a 500).
//! * **Evidence** ([`ServedRecord`]): every request that reaches the handler is recorded with its
//!   request id, model, token counts and outcome, so a test can prove where each request went.
//!
//! The output is deterministic: `n` output tokens are the words of [`completion_text`]`(n)`, one
//! token each, or with a [`SimConfig::text_seed`] the words [`seeded_text`] picks for the
//! prompt ([`prompt_fingerprint`]); `usage.prompt_tokens` is exactly
//! [`spillway_proto::tokens::prompt_tokens`] of the request's messages.
//!
//! A request with `"continue_final_message": true` and a final assistant message continues
//! that message as vLLM does (see `text.rs`): its output is the rest of the answer the message
//! began, so the first leg's text plus the continuation's is the unbroken answer token for
//! token. Its record says how many tokens it continued from
//! ([`ServedRecord::continued_from`]).
//!
//! A request that offers `tools` is answered with a tool call by a deterministic rule (the
//! named or first tool, arguments from its schema; no call after a `tool` result): see
//! `tools.rs`.
//!
//! * **Prefix cache** (`prefix_cache.rs`, off unless [`SimConfig::prefix_cache_blocks`] is set):
//!   an LRU of the prompt's 512-token blocks ([`spillway_proto::prefix`]); a prompt whose
//!   leading blocks are cached prefills only the rest and reports them as
//!   `usage.prompt_tokens_details.cached_tokens`. Its counters are [`SimHandle::stats`] and
//!   `GET /admin/stats`.
//!
//! Embeddings ([`embeddings`]) run on the same engine: a prefill of the input's tokens, with a
//! deterministic unit vector per input item.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models` (the models requested so far),
//! `GET|POST /admin/fault`, `GET|DELETE /admin/served`, `GET /admin/stats`, `GET /healthz`. Every response carries
//! `x-sim-region`.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
mod config;
pub mod embeddings;
pub mod engine;
mod faults;
mod handlers;
mod prefix_cache;
mod record;
mod reply;
mod stream;
mod text;
mod tools;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::SimConfig;
pub use engine::{MAX_OUTPUT_TOKENS, completion_text, token_text};
pub use faults::Fault;
pub use handlers::REGION_HEADER;
pub use prefix_cache::PrefixCacheStats;
pub use record::{Outcome, ServedRecord};
pub use text::{messages_fingerprint, prompt_fingerprint, seeded_text, seeded_token};

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("spillway-sim: i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("spillway-sim: invalid configuration: {0}")]
    InvalidConfig(String),
}

/// State shared by the handlers of one simulator.
pub(crate) struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) engine: Arc<engine::Engine>,
    pub(crate) faults: faults::FaultState,
    pub(crate) recorder: Arc<record::Recorder>,
    pub(crate) prefix: prefix_cache::PrefixCache,
    pub(crate) models: Mutex<BTreeSet<String>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// `x-sim-region` value (None if the region name is not a valid header value).
    pub(crate) region_header: Option<HeaderValue>,
    /// Unix seconds when the simulator started (`created` of `/v1/models` entries).
    pub(crate) created: u64,
}

impl Sim {
    /// The state of a simulator with `cfg` (validated) that stops when `shutdown` turns true.
    pub(crate) fn new(cfg: SimConfig, shutdown: watch::Receiver<bool>) -> Arc<Sim> {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Arc::new(Sim {
            engine: engine::Engine::new(&cfg),
            faults: faults::FaultState::new(cfg.seed),
            recorder: Arc::new(record::Recorder::new()),
            prefix: prefix_cache::PrefixCache::new(cfg.prefix_cache_blocks),
            models: Mutex::new(BTreeSet::new()),
            shutdown,
            region_header: HeaderValue::from_str(&cfg.region).ok(),
            created,
            cfg,
        })
    }

    pub(crate) fn note_model(&self, model: &str) {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if !models.contains(model) {
            models.insert(model.to_string());
        }
    }

    pub(crate) fn models(&self) -> Vec<String> {
        self.models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

struct Inner {
    addr: SocketAddr,
    sim: Arc<Sim>,
    shutdown: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
}

/// A running simulator. Cheap to clone; dropping every handle does not stop the server (call
/// [`SimHandle::shutdown`]).
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("region", &self.region())
            .field("addr", &self.inner.addr)
            .finish()
    }
}

/// Starts a simulator serving on `listener` (bind `127.0.0.1:0` for a free port). The server runs
/// on a spawned task until [`SimHandle::shutdown`].
pub async fn spawn(cfg: SimConfig, listener: TcpListener) -> Result<SimHandle, SimError> {
    cfg.validate()?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let sim = Sim::new(cfg, shutdown_rx.clone());
    let app = handlers::router(sim.clone());
    let region = sim.cfg.region.clone();
    // Tokens are small writes that must leave at once: no Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "spillway-sim: could not set TCP_NODELAY");
        }
    });
    let mut signal = shutdown_rx;
    tokio::spawn(async move {
        let stop = async move {
            if signal.wait_for(|down| *down).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tracing::info!(%region, %addr, "spillway-sim: serving");
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%region, error = %e, "spillway-sim: server failed");
        }
        tracing::info!(%region, "spillway-sim: stopped");
        stopped_tx.send_replace(true);
    });
    Ok(SimHandle {
        inner: Arc::new(Inner {
            addr,
            sim,
            shutdown: shutdown_tx,
            stopped: stopped_rx,
        }),
    })
}

impl SimHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://<ip>:<port>/v1`, with loopback in place of an unspecified bind address.
    pub fn base_url(&self) -> String {
        let mut addr = self.inner.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}/v1")
    }

    pub fn region(&self) -> &str {
        &self.inner.sim.cfg.region
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &SimConfig {
        &self.inner.sim.cfg
    }

    /// Every request recorded so far, in the order they ended.
    pub fn served(&self) -> Vec<ServedRecord> {
        self.inner.sim.recorder.snapshot()
    }

    pub fn clear_served(&self) {
        self.inner.sim.recorder.clear();
    }

    /// Replaces the current fault (`Fault::default()` clears it); affects new requests.
    pub fn set_fault(&self, f: Fault) {
        self.inner.sim.faults.set(f);
    }

    pub fn fault(&self) -> Fault {
        self.inner.sim.faults.get()
    }

    /// The prefix cache's counters (what `GET /admin/stats` answers as `prefix_cache`).
    pub fn stats(&self) -> PrefixCacheStats {
        self.inner.sim.prefix.stats()
    }

    /// Requests running or waiting for a slot right now.
    pub fn in_flight(&self) -> u32 {
        self.inner.sim.engine.in_flight()
    }

    /// Stops accepting connections and lets the server task end once in-flight requests finish
    /// (hung requests are answered 503). Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Waits until the server task has ended (after [`SimHandle::shutdown`]).
    pub async fn stopped(&self) {
        let mut rx = self.inner.stopped.clone();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

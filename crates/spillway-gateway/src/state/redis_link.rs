//! One gateway instance's link to the shared state (`[state] kind = "redis"`): the connection,
//! whether Redis answers (with its gauge and one log line per change), connecting and
//! reconnecting with back-off, and the heartbeat.
//!
//! Everything that keeps state in Redis (the shared quotas, deployments and profiles) holds the same
//! `Arc<RedisLink>`, takes [`RedisLink::conn`] for each call (a cheap clone of a multiplexed
//! connection), bounds every call with [`OP_TIMEOUT`], and reports the result with
//! [`RedisLink::mark`]. A failed call marks the link down: callers then serve on local state
//! and the background task probes until Redis answers again. Every down → up transition bumps
//! [`RedisLink::generation`], so local state kept during an outage can be recognised as stale
//! and resynchronised.
//!
//! With `[state] cluster = true` the link is a Redis Cluster connection (seed nodes from the
//! config; it follows MOVED/ASK and topology changes itself). [`Conn`] hides the difference: it
//! implements [`redis::aio::ConnectionLike`], so scripts and commands run on either unchanged.
//! Every key that one script or command touches shares one hash tag (`{...}`), so it lives on
//! one Cluster slot.
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::metrics::StateMetrics;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::RedisState;
use crate::state::lock;

/// Longest a request waits on a Redis call before serving on local state.
pub const OP_TIMEOUT: Duration = Duration::from_millis(300);
/// Reconnection back-off while Redis is down: doubles from the first to the second.
const PROBE_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// With no other traffic to Redis for this long, the background task pings it.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How often the background task looks at the link.
const TICK: Duration = Duration::from_millis(100);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A connection to the shared state: multiplexed, cheap to clone; one Redis (or Valkey) server
/// or a Redis Cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How to open a [`Conn`].
enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl Client {
    fn open(cfg: &RedisState) -> Result<Client, redis::RedisError> {
        if cfg.cluster {
            let seeds: Vec<&str> = cfg.urls.iter().map(String::as_str).collect();
            ClusterClientBuilder::new(seeds)
                .connection_timeout(OP_TIMEOUT)
                .response_timeout(OP_TIMEOUT)
                // MOVED/ASK redirections are retries: allow a few, quickly; every call is
                // bounded by OP_TIMEOUT anyway.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()
                .map(|c| Client::Cluster(Box::new(c)))
        } else {
            redis::Client::open(cfg.url.as_str()).map(Client::Single)
        }
    }

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        match self {
            Client::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT))
                    .set_response_timeout(Some(OP_TIMEOUT))
                    .set_number_of_retries(0);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Conn::Single)
            }
            Client::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}

pub struct RedisLink {
    pub cfg: RedisState,
    client: Client,
    conn: Mutex<Option<Conn>>,
    state: AtomicU8,
    generation: AtomicU64,
    last_ok: Mutex<Instant>,
    metrics: StateMetrics,
}

impl RedisLink {
    pub fn new(cfg: RedisState, metrics: StateMetrics) -> Result<RedisLink, redis::RedisError> {
        let client = Client::open(&cfg)?;
        metrics.up.set(0);
        Ok(RedisLink {
            cfg,
            client,
            conn: Mutex::new(None),
            state: AtomicU8::new(UNKNOWN),
            generation: AtomicU64::new(0),
            last_ok: Mutex::new(Instant::now()),
            metrics,
        })
    }

    /// Connect (waiting at most [`OP_TIMEOUT`]; unreachable is fine, it is retried) and start
    /// the background task, which stops when `this` is dropped.
    pub async fn start(this: &Arc<RedisLink>) {
        this.probe().await;
        tokio::spawn(background(Arc::downgrade(this)));
    }

    /// Redis answered the last call.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// Bumped on every reconnection: state kept locally under an older generation is stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current connection, if any (`None`: not connected yet).
    pub fn conn(&self) -> Option<Conn> {
        lock(&self.conn).clone()
    }

    /// Record the result of a call: the gauge, and one log line per change of state.
    pub fn mark(&self, up: bool, error: &str) {
        if up {
            *lock(&self.last_ok) = Instant::now();
        }
        let new = if up { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        self.metrics.up.set(i64::from(up));
        let url = format!("{:?}", self.cfg);
        match (old, up) {
            (UNKNOWN, true) => tracing::info!(state = %url, "shared state (Redis) connected"),
            (_, true) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(state = %url, "shared state (Redis) reachable again; quotas, capacity and health are global again")
            }
            (_, false) => {
                tracing::warn!(state = %url, %error, "shared state (Redis) unreachable; serving on this instance's local state and share of each quota")
            }
        }
    }

    /// Run one call with [`OP_TIMEOUT`] and mark the link by its result.
    pub async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let Some(mut conn) = self.conn() else {
            self.mark(false, "not connected");
            return Err("not connected".into());
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(OP_TIMEOUT, f(&mut conn)).await;
        self.metrics
            .call_seconds
            .observe(started.elapsed().as_secs_f64());
        if !matches!(answer, Ok(Ok(_))) {
            self.metrics.call_errors.inc();
        }
        match answer {
            Ok(Ok(v)) => {
                self.mark(true, "");
                Ok(v)
            }
            Ok(Err(e)) => {
                let e = e.to_string();
                self.mark(false, &e);
                Err(e)
            }
            Err(_) => {
                let e = format!("no answer within {OP_TIMEOUT:?}");
                self.mark(false, &e);
                Err(e)
            }
        }
    }

    /// Connect afresh and ping; marks the state either way.
    async fn probe(&self) {
        let connect = self.client.connect();
        let result = match tokio::time::timeout(OP_TIMEOUT, connect).await {
            Ok(Ok(mut conn)) => {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                match tokio::time::timeout(OP_TIMEOUT, ping).await {
                    Ok(Ok(_)) => Ok(conn),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".to_string()),
        };
        match result {
            Ok(conn) => {
                *lock(&self.conn) = Some(conn);
                self.mark(true, "");
            }
            Err(e) => self.mark(false, &e),
        }
    }

    /// Ping over the current connection (heartbeat while up).
    async fn ping(&self) {
        let _ = self
            .call(async |c| redis::cmd("PING").query_async::<String>(c).await)
            .await;
    }
}

/// The background task: heartbeats while up, reconnects with back-off while down.
async fn background(weak: Weak<RedisLink>) {
    let mut backoff = PROBE_BACKOFF.0;
    let mut next_probe = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(link) = weak.upgrade() else {
            return;
        };
        if link.is_up() {
            backoff = PROBE_BACKOFF.0;
            if lock(&link.last_ok).elapsed() >= HEARTBEAT {
                link.ping().await;
            }
        } else if Instant::now() >= next_probe {
            link.probe().await;
            if !link.is_up() {
                next_probe = Instant::now() + backoff;
                backoff = (backoff * 2).min(PROBE_BACKOFF.1);
            }
        }
    }
}

/// Names in keys: `%`, `:`, `{` and `}` percent-encoded, so a name cannot break the hash tag.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' | ':' | '{' | '}' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

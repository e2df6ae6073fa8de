//! Deployment load and health shared by several gateway instances through Redis (`[state]
//! kind = "redis"`): in-flight counts, RPM/TPM usage, ejections, cooldowns and recoveries.
//!
//! # Design
//!
//! Every instance has a random id and keeps its routing core ([`spillway_core::Router`]) as
//! before: admission, planning, health and the half-open probe stay local and never wait on
//! Redis. A background task ([`sync`]) connects the cores of all instances:
//!
//! * **Load**, every [`SYNC_EVERY`]: per deployment, one Lua script ([`lua`]) writes this
//!   instance's [`Load`] (in flight now, requests and tokens over the last 60 s) into the
//!   deployment's hash `{prefix}:{d:<model>:<region>}:load` under its id, stamped to expire
//!   [`LIVE_TTL`] later by Redis's clock, drops the entries whose instance stopped
//!   heart-beating, and returns the sum over the other live instances, which goes into the
//!   core ([`Router::set_remote_load`]). Publishing is the heartbeat: a crashed instance's counts
//!   are ignored (and deleted) [`LIVE_TTL`] after its last sync.
//! * **Health**, within [`EVENT_TICK`] of the outcome that caused it: the core records
//!   ejections, cooldowns (upstream `Retry-After`) and recoveries ([`Router::take_events`]), and
//!   one script per change writes them to `{prefix}:{d:<model>:<region>}:health` (an ejection or
//!   cooldown only ever extends what is there; a recovery replaces the ejection with a
//!   tombstone saying when). The same sync call reads that record, and the core applies it
//!   ([`Router::eject_until`], [`Router::cool_until`], [`Router::end_ejection`]) until the same
//!   instant; half-open probing then happens in every instance, locally, and the first probe
//!   that succeeds anywhere closes the circuit everywhere. The latest evidence wins: a recovery
//!   ends only ejections that began before it (in the instance's own clock, conservatively), and
//!   an ejection after a recovery ejects again.
//!
//! # Bounds
//!
//! The remote figures an instance admits against are at most `S = 2 × SYNC_EVERY + 2 × RTT`
//! old (the other instance published up to one period before our read, and we read once per
//! period), about 0.4 s on a LAN. Every instance enforces `local + remote ≤ limit`, so:
//!
//! * **in flight**: the global count exceeds `max_in_flight` by at most what the *other*
//!   instances admitted during the last `S` and this one has not seen yet; since each instance
//!   also checks against its own count, the worst case (all instances bursting within one
//!   period from an idle start) is `N × max_in_flight` for `N` instances;
//! * **RPM / TPM**: over any 60 s window the global usage exceeds the limit by at most the
//!   other instances' admissions during the last `S` (worst case likewise `N ×` the limit, each
//!   instance's own bucket still holding); tokens count as estimated until the attempt settles;
//! * **crash**: a crashed instance's in-flight and usage stop counting `LIVE_TTL + S` (≈ 3.4 s)
//!   after its last sync (its usage of the past minute is then forgotten: a bounded overshoot);
//! * **health**: an ejection reaches the other instances within `EVENT_TICK + SYNC_EVERY +
//!   2 × RTT` (≈ 0.25 s; the tests assert < 1 s).
//!
//! # Redis unavailable
//!
//! Nothing waits on Redis: while the link is down the remote loads are set to zero (every
//! instance admits on its own counts, as with the memory backend, so the global bound is then
//! `N ×` each limit), health stays local, and events are not queued. When the link comes back
//! ([`RedisLink::generation`] changes) the next sync republishes this instance's load, and its
//! running ejections and cooldowns are republished from the core (but for the ejections it
//! learned from another instance: that one republishes them), and so is a recovery seen during
//! the outage (when the deployment is still healthy): a tombstone dated when it happened (to
//! within [`EVENT_TICK`]), which clears only an ejection on record that began before it, so the
//! others close a circuit they learned before the outage instead of waiting for it to run out.
//!
//! # Metrics
//!
//! Every sync sets `spillway_deployment_remote_in_flight{region,model}` to the other live
//! instances' in-flight sum (0 while Redis is unreachable), and each ejection learned from
//! another instance (one the core did not already have) adds one to
//! `spillway_deployment_remote_ejections_total{region,model}`.
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spillway_core::{DeploymentIx, Load, Router};
use tokio::task::JoinHandle;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::Config;
use crate::metrics::{DeploymentLabels, Metrics};
use crate::state::lock;
use crate::state::redis_link::{RedisLink, escape};

mod lua;
mod sync;

/// How often each instance publishes its load and reads the others' (and the health records).
pub const SYNC_EVERY: Duration = Duration::from_millis(200);
/// How often the background task publishes health changes recorded by the core.
pub const EVENT_TICK: Duration = Duration::from_millis(50);
/// An instance's load counts this long after its last sync (a crashed instance's expires).
pub const LIVE_TTL: Duration = Duration::from_secs(3);

/// The Redis keys of one deployment (one hash tag: one Cluster slot).
pub(crate) struct Keys {
    pub(crate) load: String,
    pub(crate) health: String,
}

pub struct SharedDeployments {
    link: Arc<RedisLink>,
    /// This instance's id in the load hashes.
    instance: String,
    /// Indexed by deployment.
    keys: Vec<Keys>,
    scripts: lua::Scripts,
    /// Indexed by deployment: the other instances' in-flight, and ejections learned from them.
    remote_in_flight: Vec<Gauge>,
    remote_ejections: Vec<Counter>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SharedDeployments {
    pub fn new(cfg: &Config, link: Arc<RedisLink>, metrics: &Metrics) -> SharedDeployments {
        let labels: Vec<DeploymentLabels> = cfg
            .deployments
            .iter()
            .map(|d| DeploymentLabels {
                region: cfg.region_name(d.region).to_string(),
                model: cfg.models[d.model].id.clone(),
            })
            .collect();
        let remote_in_flight = labels
            .iter()
            .map(|l| metrics.deployment.remote_in_flight.get_or_create(l).clone())
            .collect();
        let remote_ejections = labels
            .iter()
            .map(|l| metrics.deployment.remote_ejections.get_or_create(l).clone())
            .collect();
        let keys = cfg
            .deployments
            .iter()
            .map(|d| {
                let tag = format!(
                    "{}:{{d:{}:{}}}",
                    link.cfg.key_prefix,
                    escape(&cfg.models[d.model].id),
                    escape(cfg.region_name(d.region)),
                );
                Keys {
                    load: format!("{tag}:load"),
                    health: format!("{tag}:health"),
                }
            })
            .collect();
        SharedDeployments {
            link,
            instance: instance_id(),
            keys,
            scripts: lua::Scripts::new(),
            remote_in_flight,
            remote_ejections,
            task: Mutex::new(None),
        }
    }

    /// Start the background task on `router`, whose clock is the time since `epoch`. It stops
    /// when the router is dropped, or with [`SharedDeployments::stop_heartbeat`].
    pub fn start(
        this: &Arc<SharedDeployments>,
        router: std::sync::Weak<Mutex<crate::state::routing::RouterCell>>,
        epoch: Instant,
    ) {
        if let Some(cell) = router.upgrade() {
            lock(&cell).router.record_events(true);
        }
        let task = tokio::spawn(sync::background(this.clone(), router, epoch));
        if let Some(old) = lock(&this.task).replace(task) {
            old.abort();
        }
    }

    /// This instance's id in the load hashes.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Stop publishing and reading at once, withdrawing nothing: what the other instances see
    /// of a crash (tests). The counts already published expire after [`LIVE_TTL`].
    pub fn stop_heartbeat(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }

    /// Graceful shutdown: stop the task and withdraw this instance's load at once.
    pub async fn leave(&self) {
        self.stop_heartbeat();
        if !self.link.is_up() {
            return;
        }
        for k in &self.keys {
            let scripts = &self.scripts;
            let instance = self.instance.as_str();
            let left = self
                .link
                .call(async |c| scripts.leave(c, &k.load, instance).await)
                .await;
            if left.is_err() {
                return;
            }
        }
    }

    fn keys(&self, d: DeploymentIx) -> Option<&Keys> {
        self.keys.get(d.0 as usize)
    }

    /// Show the other instances' in-flight on `d` in the metrics.
    fn show_remote_in_flight(&self, d: DeploymentIx, n: u32) {
        if let Some(g) = self.remote_in_flight.get(d.0 as usize) {
            g.set(i64::from(n));
        }
    }

    /// Count an ejection of `d` learned from another instance.
    fn count_learned_ejection(&self, d: DeploymentIx) {
        if let Some(c) = self.remote_ejections.get(d.0 as usize) {
            c.inc();
        }
    }
}

/// Forget every other instance's load: admit on local counts only (Redis unreachable).
fn local_only(sd: &SharedDeployments, router: &mut Router) {
    for d in 0..router.deployment_count() {
        let d = DeploymentIx(d as u32);
        router.set_remote_load(d, Load::default());
        sd.show_remote_in_flight(d, 0);
    }
}

/// A random id for this instance: the process id, the time and the standard library's
/// randomly keyed hasher.
fn instance_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(t.as_nanos());
    format!("{:016x}", h.finish())
}

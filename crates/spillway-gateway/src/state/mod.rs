//! Shared state of one gateway process: the validated config, the routing core behind a lock,
//! the tenant quota book, application profiles, upstream targets, metrics and the audit log.
//!
//! The backends are picked once, here, at start-up: with `[state] kind = "memory"` the quota
//! book is a [`MemoryBook`] and profiles and deployment load stay in this process; with
//! `kind = "redis"` the book is the Redis-shared one (`shared_quota`), and profiles and
//! deployment load and health are shared too. Request code only sees the [`QuotaBook`] trait.

pub mod app_profiles;
pub mod generation;
pub mod quota_book;
pub mod redis_link;
pub mod routing;
pub mod shared_deployments;
pub mod shared_prefix;
pub mod shared_quota;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_core::{DeploymentSpec, PrefixConfig, QuotaDenied, QuotaLimits, Router};

use crate::config::{Config, StateKind};
use crate::metrics::Metrics;
use crate::state::quota_book::{MemoryBook, QuotaBook, QuotaKey, Ticket};
use crate::state::redis_link::RedisLink;
use crate::state::routing::RouterCell;
use crate::state::shared_deployments::SharedDeployments;
use crate::state::shared_prefix::SharedPrefix;
use crate::state::shared_quota::SharedQuotas;
use crate::upstream::UpstreamTarget;
/// A mutex's guard, also after a thread panicked holding it: the gateway goes on serving with
/// the state as that thread left it rather than fail every later request.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Cache affinity: the most prompt blocks the router keeps per deployment, whatever its
/// cache's size (about 70 bytes each: at most ~18 MB a deployment; 134 M tokens of cache).
const PREFIX_ENTRIES: usize = 1 << 18;

pub struct AppState {
    pub cfg: Arc<Config>,
    pub http: crate::upstream::UpstreamClient,
    pub targets: Vec<UpstreamTarget>,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// The live dashboard's figures (kept across reloads, like the metrics).
    pub dashboard: Arc<crate::dashboard::Dashboard>,
    /// OpenTelemetry traces (`[telemetry]`): started once, kept across reloads.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Application inference profiles (cached here; with Redis, shared through it).
    pub app_profiles: crate::state::app_profiles::AppProfiles,
    /// Wall-clock start (system profiles' `createdAt`).
    pub started_at: std::time::SystemTime,
    epoch: Instant,
    router: Arc<Mutex<RouterCell>>,
    /// Tenant quotas: in this process, or shared through Redis.
    quotas: Arc<dyn QuotaBook>,
    /// The link to the shared state (`[state] kind = "redis"`).
    link: Option<Arc<RedisLink>>,
    /// Tenant quotas shared through Redis (its background task is started with the gateway).
    shared: Option<Arc<SharedQuotas>>,
    /// Deployment load and health shared through Redis.
    shared_deployments: Option<Arc<SharedDeployments>>,
    /// Where the instances sent which prompt (cache affinity), shared through Redis.
    shared_prefix: Option<Arc<SharedPrefix>>,
}

impl AppState {
    pub fn new(cfg: Arc<Config>, targets: Vec<UpstreamTarget>) -> Result<AppState, StateError> {
        let metrics = Arc::new(Metrics::new(&cfg));
        let telemetry = crate::telemetry::Telemetry::start(&cfg.telemetry)?;
        let mut state = AppState::with_metrics(cfg, targets, metrics)?;
        state.telemetry = Arc::new(telemetry);
        Ok(state)
    }

    /// [`AppState::new`] exporting to `metrics` (a reload keeps the running generation's).
    pub(crate) fn with_metrics(
        cfg: Arc<Config>,
        targets: Vec<UpstreamTarget>,
        metrics: Arc<Metrics>,
    ) -> Result<AppState, StateError> {
        let specs = cfg
            .deployments
            .iter()
            .map(|d| DeploymentSpec {
                region: d.region,
                max_in_flight: d.max_in_flight,
                rpm: d.rpm,
                tpm: d.tpm,
            })
            .collect();
        let mut router = Router::new(cfg.router.clone(), specs);
        router.set_prefix_cache(Some(PrefixConfig {
            max_entries: PREFIX_ENTRIES,
            ttl: cfg.prefix_cache_ttl,
            capacity_blocks: cfg
                .deployments
                .iter()
                .map(|d| d.prefix_cache_blocks)
                .collect(),
        }));
        let http = crate::upstream::UpstreamClient::new(cfg.timeouts.connect)?;
        let link = match &cfg.state {
            StateKind::Memory => None,
            StateKind::Redis(r) => {
                Some(Arc::new(RedisLink::new(r.clone(), metrics.state.clone())?))
            }
        };
        let shared = link
            .as_ref()
            .map(|l| Arc::new(SharedQuotas::new(cfg.clone(), l.clone())));
        let app_profiles = crate::state::app_profiles::AppProfiles::new(cfg.clone(), link.clone());
        let shared_deployments = link
            .as_ref()
            .map(|l| Arc::new(SharedDeployments::new(&cfg, l.clone(), &metrics)));
        let shared_prefix = link
            .as_ref()
            .zip(shared_deployments.as_ref())
            .and_then(|(l, sd)| SharedPrefix::new(&cfg, l.clone(), sd.instance()).map(Arc::new));
        let epoch = Instant::now();
        let quotas: Arc<dyn QuotaBook> = match &shared {
            Some(sq) => sq.clone(),
            None => Arc::new(MemoryBook::new(epoch)),
        };
        Ok(AppState {
            link,
            shared,
            quotas,
            shared_deployments,
            shared_prefix,
            router: Arc::new(Mutex::new(RouterCell {
                router,
                rng: SmallRng::seed_from_u64(cfg.seed),
            })),
            epoch,
            audit: Arc::new(crate::audit::AuditLog::start(&cfg.audit)),
            dashboard: Arc::default(),
            telemetry: Arc::new(crate::telemetry::Telemetry::off()),
            app_profiles,
            started_at: std::time::SystemTime::now(),
            cfg,
            http,
            targets,
            metrics,
        })
    }

    /// Connect the shared state (if any) and start its background task; call once, on the
    /// runtime, before serving. Waits at most a few hundred milliseconds: Redis being
    /// unreachable is not an error (the gateway serves on local shares until it answers).
    pub async fn start_shared(&self) {
        if let Some(link) = &self.link {
            RedisLink::start(link).await;
        }
        if let Some(sq) = &self.shared {
            SharedQuotas::start(sq);
        }
        if let Some(sd) = &self.shared_deployments {
            SharedDeployments::start(sd, Arc::downgrade(&self.router), self.epoch);
        }
        if let Some(sp) = &self.shared_prefix {
            SharedPrefix::start(sp, Arc::downgrade(&self.router), self.epoch);
        }
        self.app_profiles.start();
    }

    /// Deployment load and health shared through Redis, if configured.
    pub fn shared_deployments(&self) -> Option<&Arc<SharedDeployments>> {
        self.shared_deployments.as_ref()
    }

    /// False while the shared state (Redis) is configured but unreachable (`/readyz` degraded).
    pub fn shared_state_up(&self) -> bool {
        self.link.as_ref().is_none_or(|l| l.is_up())
    }

    /// Give every quota lease back to the shared state (shutdown).
    pub async fn flush_shared(&self) {
        if let Some(sq) = &self.shared {
            sq.flush_all().await;
        }
        if let Some(sd) = &self.shared_deployments {
            sd.leave().await;
        }
    }

    /// Time since the gateway started: the core's clock.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// `t` on the clock of [`AppState::now`] (zero before this generation started).
    pub fn clock_of(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// The instant at `now` on the core's clock, for tokio's timers.
    pub fn instant_at(&self, now: Duration) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + now)
    }

    pub fn router(&self) -> MutexGuard<'_, RouterCell> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant's limits for this key: the in-region quota, times the multiplier for
    /// cross-region calls. `None`: the tenant has no quota for this model and source.
    pub fn quota_limits(&self, key: &QuotaKey) -> Option<QuotaLimits> {
        let t = &self.cfg.tenants[key.tenant];
        let base = t.quotas.get(&(key.model, key.source))?;
        if !key.cross_region {
            return Some(*base);
        }
        let scale = |v: u64| ((v as f64) * t.cross_region_multiplier).floor() as u64;
        Some(QuotaLimits {
            rpm: base.rpm.map(scale),
            tpm: base.tpm.map(scale),
        })
    }

    /// Reserve the tenant's quota for `key` up front: `None` when the tenant has no quota
    /// there. With shared state this awaits Redis only when this instance's lease does not
    /// cover the request.
    pub async fn reserve(
        &self,
        key: QuotaKey,
        est_tokens: u64,
    ) -> Result<Option<Ticket>, QuotaDenied> {
        match self.quota_limits(&key) {
            Some(limits) => self.quotas.reserve(key, limits, est_tokens).await.map(Some),
            None => Ok(None),
        }
    }

    /// Settle a reservation to `used` tokens, or cancel it (`None`): once, at the request's end.
    pub fn settle(&self, ticket: Option<Ticket>, used: Option<u64>) {
        if let Some(t) = ticket {
            self.quotas.settle(t, used);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Http(#[from] crate::upstream::client::ClientError),
    #[error("cannot set up the shared state: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::ExportSetupError),
}

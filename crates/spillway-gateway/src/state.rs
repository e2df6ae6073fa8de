//! Shared state of one gateway process: the validated config, the routing core behind a lock,
//! the tenant quota book, upstream targets and metrics (the `memory` state backend). With
//! `[state] kind = "redis"` tenant quotas are shared with the other instances instead
//! ([`crate::shared_quota`]).
//!
//! The core is sans-IO: every call passes `now` (time since the gateway started) and the
//! seeded RNG kept here. The lock is held only for the decision itself (a few microseconds),
//! never across I/O.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use spillway_core::{
    Admission, DeploymentIx, DeploymentSpec, Outcome, QuotaBucket, QuotaDenied, QuotaLimits,
    RegionIx, Reservation, Router,
};

use crate::config::{Config, ModelIx, StateKind, TenantIx};
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::shared_deployments::SharedDeployments;
use crate::shared_quota::{SharedQuotas, Via};
use crate::upstream::UpstreamTarget;

pub struct AppState {
    pub cfg: Arc<Config>,
    pub http: reqwest::Client,
    pub targets: Vec<UpstreamTarget>,
    pub metrics: Metrics,
    pub audit: crate::audit::AuditLog,
    /// Application inference profiles (cached here; with Redis, shared through it).
    pub app_profiles: crate::app_profiles::AppProfiles,
    /// Wall-clock start (system profiles' `createdAt`).
    pub started_at: std::time::SystemTime,
    epoch: Instant,
    router: Arc<Mutex<RouterCell>>,
    quotas: Mutex<HashMap<QuotaKey, QuotaBucket>>,
    /// The link to the shared state (`[state] kind = "redis"`).
    link: Option<Arc<RedisLink>>,
    /// Tenant quotas shared through Redis.
    shared: Option<Arc<SharedQuotas>>,
    /// Deployment load and health shared through Redis.
    shared_deployments: Option<Arc<SharedDeployments>>,
}

pub struct RouterCell {
    pub router: Router,
    pub rng: SmallRng,
}

/// Which quota a request draws on: a tenant's in-region quota (plain model id) or its
/// cross-region quota (profile id), per model and source region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub tenant: TenantIx,
    pub model: ModelIx,
    pub source: RegionIx,
    pub cross_region: bool,
}

impl AppState {
    pub fn new(cfg: Arc<Config>, targets: Vec<UpstreamTarget>) -> Result<AppState, StateError> {
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
        let router = Router::new(cfg.router.clone(), specs);
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // An upstream that redirects is misconfigured; following it would also re-parse URLs
            // on the hot path.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let metrics = Metrics::new(&cfg);
        let link = match &cfg.state {
            StateKind::Memory => None,
            StateKind::Redis(r) => Some(Arc::new(RedisLink::new(
                r.clone(),
                metrics.shared_state_up.clone(),
            )?)),
        };
        let shared = link
            .as_ref()
            .map(|l| Arc::new(SharedQuotas::new(cfg.clone(), l.clone())));
        let app_profiles = crate::app_profiles::AppProfiles::new(cfg.clone(), link.clone());
        let shared_deployments = link
            .as_ref()
            .map(|l| Arc::new(SharedDeployments::new(&cfg, l.clone(), &metrics)));
        Ok(AppState {
            link,
            shared,
            shared_deployments,
            router: Arc::new(Mutex::new(RouterCell {
                router,
                rng: SmallRng::seed_from_u64(cfg.seed),
            })),
            quotas: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            audit: crate::audit::AuditLog::start(&cfg.audit),
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

    /// Reserve quota up front; the hold settles (or cancels) when dropped. With shared state
    /// this awaits Redis only when this instance's lease does not cover the request.
    pub async fn reserve(
        self: &Arc<Self>,
        key: QuotaKey,
        est_tokens: u64,
    ) -> Result<QuotaHold, QuotaDenied> {
        let Some(limits) = self.quota_limits(&key) else {
            return Ok(QuotaHold {
                state: self.clone(),
                key,
                reservation: None,
                via: None,
                used: None,
            });
        };
        if let Some(sq) = &self.shared {
            let via = sq.reserve(key, limits, est_tokens).await?;
            return Ok(QuotaHold {
                state: self.clone(),
                key,
                reservation: Some(Reservation { tokens: est_tokens }),
                via: Some(via),
                used: None,
            });
        }
        let now = self.now();
        let mut book = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = book
            .entry(key)
            .or_insert_with(|| QuotaBucket::new(limits, now));
        let r = bucket.reserve(est_tokens, now)?;
        Ok(QuotaHold {
            state: self.clone(),
            key,
            reservation: Some(r),
            via: None,
            used: None,
        })
    }

    fn settle_quota(&self, key: QuotaKey, via: Option<Via>, r: Reservation, used: Option<u64>) {
        if let (Some(sq), Some(via)) = (&self.shared, via) {
            return sq.settle(key, via, r, used);
        }
        let now = self.now();
        let mut book = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = book.get_mut(&key) {
            match used {
                Some(tokens) => bucket.settle(r, tokens, now),
                None => bucket.cancel(r, now),
            }
        }
    }

    /// Admit on a deployment; the hold releases the slot (as cancelled) if dropped unreported.
    pub fn acquire(
        self: &Arc<Self>,
        d: DeploymentIx,
        demand: spillway_core::Demand,
    ) -> Result<AttemptHold, spillway_core::Rejection> {
        let now = self.now();
        let admission = self.router().router.try_acquire(d, demand, now)?;
        Ok(AttemptHold {
            state: self.clone(),
            admission: Some(admission),
            used: 0,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot set up the shared state: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A tenant-quota reservation. Settles to `used` tokens when dropped; with nothing marked used
/// (the request never reached an upstream) the reservation is cancelled in full.
pub struct QuotaHold {
    state: Arc<AppState>,
    key: QuotaKey,
    reservation: Option<Reservation>,
    /// Where a shared-state reservation came from (`None`: the memory book).
    via: Option<Via>,
    used: Option<u64>,
}

impl QuotaHold {
    /// Record usage so far (prompt tokens once an upstream has the request, then more).
    pub fn set_used(&mut self, tokens: u64) {
        self.used = Some(tokens);
    }

    /// Nothing was served after all: the reservation is cancelled in full when dropped.
    pub fn clear_used(&mut self) {
        self.used = None;
    }

    pub fn reserved_tokens(&self) -> Option<u64> {
        self.reservation.map(|r| r.tokens)
    }
}

impl Drop for QuotaHold {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.state.settle_quota(self.key, self.via, r, self.used);
        }
    }
}

/// An admitted attempt on one deployment. Report its outcome with [`AttemptHold::finish`];
/// dropped unreported (the client went away), it is released as cancelled.
pub struct AttemptHold {
    state: Arc<AppState>,
    admission: Option<Admission>,
    /// Tokens the upstream produced so far (charged to the deployment even if the attempt fails).
    used: u64,
}

impl AttemptHold {
    pub fn deployment(&self) -> Option<DeploymentIx> {
        self.admission.as_ref().map(|a| a.deployment)
    }

    /// Tokens the upstream has produced so far for this attempt.
    pub fn set_used(&mut self, tokens: u64) {
        self.used = tokens;
    }

    pub fn finish(mut self, outcome: Outcome) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome) {
        if let Some(a) = self.admission.take() {
            let now = self.state.now();
            let d = a.deployment;
            let mut cell = self.state.router();
            cell.router.release(a, outcome, now);
            if matches!(outcome, Outcome::Failure(_)) && self.used > 0 {
                cell.router.charge_tokens(d, self.used, now);
            }
        }
    }
}

impl Drop for AttemptHold {
    fn drop(&mut self) {
        self.release(Outcome::Failure(spillway_core::FailureKind::Cancelled));
    }
}

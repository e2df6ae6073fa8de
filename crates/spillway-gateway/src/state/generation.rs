//! The next generation of state, for a reload: what carries over from the running one.
//!
//! A reload builds a new [`AppState`] from the new configuration; requests in flight keep the
//! old one to their end. What must not start afresh is carried over when it still means the
//! same thing under the new configuration:
//!
//! * the core's clock (`epoch`), metrics, the dashboard's figures, the trace exporter
//!   (`[telemetry]` cannot change without a restart) and, when `[audit]` is unchanged, the
//!   audit writer: always;
//! * the routing core (in-flight counts, adaptive limits, health, rate windows), when regions,
//!   models and deployments (model, region, limits) and `[routing]` are unchanged; otherwise a
//!   new core starts, and requests in flight on the old deployments finish there;
//! * with memory state, the tenant quota book and application profiles, when regions and models
//!   are unchanged and the running tenants are, in order, the first tenants of the new file
//!   (tenants added at the end, keys or quotas edited). Otherwise they start afresh and a
//!   warning says so: their keys are positions in those lists. With Redis state they live in
//!   Redis, keyed by names, and the new generation's clients read them there.
use std::sync::Arc;

use super::{AppState, StateError};
use crate::config::{Config, StateKind};
use crate::upstream::UpstreamTarget;

/// What carried over, for the reload's log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub routing: bool,
    pub quotas_and_profiles: bool,
}

impl AppState {
    /// The generation after `self` for `cfg`.
    pub fn successor(
        &self,
        cfg: Arc<Config>,
        targets: Vec<UpstreamTarget>,
    ) -> Result<(AppState, Carried), StateError> {
        let mut next = AppState::with_metrics(cfg.clone(), targets, self.metrics.clone())?;
        let old = &self.cfg;
        next.epoch = self.epoch;
        next.started_at = self.started_at;
        next.dashboard = self.dashboard.clone();
        next.telemetry = self.telemetry.clone();
        if old.audit == cfg.audit {
            next.audit = self.audit.clone();
        }
        let mut carried = Carried::default();
        if same_places(old, &cfg) && same_deployments(old, &cfg) {
            next.router = self.router.clone();
            carried.routing = true;
        }
        let memory = matches!(cfg.state, StateKind::Memory);
        if memory && same_places(old, &cfg) && tenants_kept(old, &cfg) {
            next.quotas = self.quotas.clone();
            next.app_profiles = self.app_profiles.clone();
            carried.quotas_and_profiles = true;
        } else if memory {
            tracing::warn!(
                "reload: regions, models or the order of tenants changed; tenant quota windows and application profiles start afresh"
            );
        }
        Ok((next, carried))
    }
}

/// Regions and models are the same lists (names, in order): every index keeps its meaning.
fn same_places(a: &Config, b: &Config) -> bool {
    let regions = |c: &Config| {
        c.regions
            .iter()
            .map(|r| (r.name.clone(), r.geography.clone()))
            .collect::<Vec<_>>()
    };
    let models = |c: &Config| c.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    regions(a) == regions(b) && models(a) == models(b)
}

/// The routing core's inputs are unchanged.
fn same_deployments(a: &Config, b: &Config) -> bool {
    let deps = |c: &Config| {
        c.deployments
            .iter()
            .map(|d| (d.model, d.region, d.max_in_flight, d.rpm, d.tpm))
            .collect::<Vec<_>>()
    };
    deps(a) == deps(b) && format!("{:?}", a.router) == format!("{:?}", b.router)
}

/// The running tenants are the first tenants of the new configuration, in order.
fn tenants_kept(old: &Config, new: &Config) -> bool {
    old.tenants.len() <= new.tenants.len()
        && old
            .tenants
            .iter()
            .zip(&new.tenants)
            .all(|(a, b)| a.name == b.name)
}

//! Reloading the configuration (SIGHUP, `spillway reload`, `POST /admin/reload`).
//!
//! The new file is loaded and validated first; if it has errors, every one is reported and the
//! running configuration keeps serving. Listener and admin addresses, the state backend and the
//! per-connection limits (`header_read_timeout_ms`, `max_connections`, `max_header_bytes`,
//! `max_headers`, `max_uri_bytes`) and `[telemetry]` cannot change while running (sockets are bound, their
//! parsers set up and shared state connected once): a file that changes them is refused with
//! that reason. The other `[server]` limits apply from the next request. Otherwise the next generation of state is
//! built (`state::generation` says what carries over) and swapped in at once: new requests
//! start on it, requests in flight finish on the generation they started on, and the old
//! generation, once its last request has ended, returns its shared-state leases.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Hub;
use crate::config::{Config, ConfigError, StateKind};
use crate::state::AppState;
use crate::upstream::UpstreamTarget;

/// How often a retired generation is checked for its last request.
const RETIRE_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration was not reloaded: {0}")]
    Invalid(#[from] ConfigError),
    #[error("the configuration was not reloaded: {0} (restart the gateway to change it)")]
    NeedsRestart(&'static str),
    #[error("the configuration was not reloaded: {0}")]
    Sims(String),
    #[error("the configuration was not reloaded: the running one ({0}) has no file to read")]
    NoFile(String),
    #[error("the configuration was not reloaded: {0}")]
    State(#[from] crate::state::StateError),
}

impl Hub {
    /// Reload from the file the running configuration came from.
    pub async fn reload_from_file(&self) -> Result<String, ReloadError> {
        let source = self.current().cfg.source_name.clone();
        if source.starts_with('<') {
            return Err(ReloadError::NoFile(source));
        }
        let mut cfg = Config::load(Path::new(&source))?;
        cfg.keep_command_line(&self.current().cfg);
        self.reload(cfg).await
    }

    /// Swap in `cfg` (see the module docs); a one-line summary on success.
    pub async fn reload(&self, cfg: Config) -> Result<String, ReloadError> {
        let _one = self.reloading.lock().await;
        let old = self.current();
        fixed_parts_unchanged(&old.cfg, &cfg)?;
        let urls = sim_urls_for(&cfg, &self.sims)?;
        let cfg = Arc::new(cfg);
        let targets = UpstreamTarget::for_config(&cfg, &urls);
        let (next, carried) = old.successor(cfg.clone(), targets)?;
        let next = Arc::new(next);
        next.start_shared().await;
        let retired = self.swap(next);
        tokio::spawn(retire(retired));
        let summary = format!(
            "reloaded {}: {} tenants, {} deployments, {} profiles; routing state {}, quotas and profiles {}",
            cfg.source_name,
            cfg.tenants.len(),
            cfg.deployments.len(),
            cfg.profiles.len(),
            if carried.routing { "kept" } else { "new" },
            if carried.quotas_and_profiles || !matches!(cfg.state, StateKind::Memory) {
                "kept"
            } else {
                "new"
            },
        );
        tracing::info!("{summary}");
        Ok(summary)
    }
}

/// Listeners, the admin listener and the state backend are bound once.
fn fixed_parts_unchanged(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let listeners = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| {
                let tls = l.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()));
                (l.bind, c.region_name(l.region).to_string(), tls)
            })
            .collect::<Vec<_>>()
    };
    if listeners(old) != listeners(new) {
        return Err(ReloadError::NeedsRestart("[[listeners]] changed"));
    }
    if old.admin.bind != new.admin.bind {
        return Err(ReloadError::NeedsRestart("[admin] bind changed"));
    }
    if old.state != new.state {
        return Err(ReloadError::NeedsRestart("[state] changed"));
    }
    if old.telemetry != new.telemetry {
        return Err(ReloadError::NeedsRestart("[telemetry] changed"));
    }
    let (a, b) = (&old.edge, &new.edge);
    let per_connection = |e: &crate::config::EdgeLimits| {
        (
            e.header_read,
            e.max_connections,
            e.max_header_bytes,
            e.max_headers,
            e.max_uri_bytes,
            e.h2_max_streams,
        )
    };
    if per_connection(a) != per_connection(b) {
        return Err(ReloadError::NeedsRestart(
            "[server] header_read_timeout_ms, max_connections, max_header_bytes, max_headers, max_uri_bytes or h2_max_concurrent_streams changed (they are set on the listening sockets)",
        ));
    }
    Ok(())
}

/// The simulator URL of each embedded `sim` deployment of `cfg`, by (model, region).
pub(super) fn sim_urls_for(
    cfg: &Config,
    sims: &HashMap<(String, String), String>,
) -> Result<Vec<Option<String>>, ReloadError> {
    let mut table = vec![None; cfg.deployments.len()];
    for (d, _) in cfg.embedded_sims() {
        let dep = &cfg.deployments[d.0 as usize];
        let key = (
            cfg.models[dep.model].id.clone(),
            cfg.region_name(dep.region).to_string(),
        );
        let url = sims.get(&key).ok_or_else(|| {
            ReloadError::Sims(format!(
                "no simulator runs for the new `sim` deployment of {} in {}",
                key.0, key.1
            ))
        })?;
        table[d.0 as usize] = Some(url.clone());
    }
    Ok(table)
}

/// Once the last request on a retired generation has ended, return its shared-state leases.
async fn retire(old: Arc<AppState>) {
    while Arc::strong_count(&old) > 1 {
        tokio::time::sleep(RETIRE_POLL).await;
    }
    old.flush_shared().await;
}

//! The process around the listeners: [`Gateway`] binds the API listeners (one per region's
//! endpoint) and the admin listener, and runs reload, drain and shutdown.
//!
//! The gateway never starts simulators (DESIGN §2.1): it reaches every upstream over HTTP. A
//! `kind = "sim"` deployment without `base_url` stands for a simulator that whoever embeds the
//! gateway starts (the CLI, through `spillway-embedded`) and whose base URL it hands to
//! [`Gateway::start_with_sims`]. [`Gateway::start`] is for configurations whose every upstream
//! has a URL.
//!
//! Stopping has two forms. [`Gateway::shutdown`] stops accepting at once and lets requests in
//! flight finish within the grace period. [`Gateway::drain`] (SIGTERM) first fails `/readyz`,
//! keeps accepting for `delay` so that load balancers see it and move traffic away, then shuts
//! down the same way. Connections with no request in flight, or a half-sent head, close at once
//! and never hold the grace period.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use spillway_core::DeploymentIx;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::conn::{self, ConnStats, Serving};
use super::reload::ReloadError;
use super::{Hub, Lane};
use crate::config::Config;
use crate::state::AppState;
use crate::upstream::UpstreamTarget;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the `sim` deployment of {model} in {region} has no base_url and was given no simulator URL (the embedded stack, spillway-embedded, starts its simulator)"
    )]
    NoSimUrl { model: String, region: String },
    #[error(
        "a simulator URL was given for deployment {0}, which is not a `sim` deployment without base_url"
    )]
    UnexpectedSimUrl(u32),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// Connections the admin listener serves at once (scrapers and probes need few).
const ADMIN_CAP: usize = 64;

/// A running gateway: its listeners and a way to stop it.
pub struct Gateway {
    hub: Arc<Hub>,
    listeners: Vec<(String, SocketAddr)>,
    admin: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Bind every listener and serve a configuration whose every upstream has a URL; a `sim`
    /// deployment without `base_url` is an error ([`GatewayError::NoSimUrl`]).
    pub async fn start(cfg: Config) -> Result<Gateway, GatewayError> {
        Self::start_with_sims(cfg, &HashMap::new()).await
    }

    /// [`Gateway::start`] for a configuration with `sim` deployments without `base_url`
    /// ([`Config::embedded_sims`]): `sim_urls` maps each of them, and nothing else, to the base
    /// URL of the simulator started for it (`http://127.0.0.1:PORT/v1`).
    pub async fn start_with_sims(
        cfg: Config,
        sim_urls: &HashMap<DeploymentIx, String>,
    ) -> Result<Gateway, GatewayError> {
        let urls = sim_url_table(&cfg, sim_urls)?;
        let sims = sims_by_name(&cfg, &urls);
        let cfg = Arc::new(cfg);
        // Every socket first: a bind that fails leaves nothing running.
        let mut sockets = Vec::new();
        for l in &cfg.listeners {
            sockets.push(bind(l.bind).await?);
        }
        let admin_socket = bind(cfg.admin.bind).await?;
        let targets = UpstreamTarget::for_config(&cfg, &urls);
        let state = Arc::new(AppState::new(cfg.clone(), targets)?);
        state.start_shared().await;
        let hub = Arc::new(Hub::new(state, sims));
        let (stop, stop_rx) = watch::channel(false);
        let cap = conn::cap_for(cfg.edge.max_connections, cfg.listeners.len());
        tracing::info!(cap, "connections per listener");
        let mut listeners = Vec::new();
        let mut tasks = Vec::new();
        for (i, (l, (tcp, addr))) in cfg.listeners.iter().zip(sockets).enumerate() {
            let lane = Lane {
                hub: hub.clone(),
                listener: i,
            };
            let app = super::routes::api_router(lane).layer(DefaultBodyLimit::disable());
            let stats = hub.conns[i].clone();
            let tls = l.tls.as_ref().map(|t| t.server.clone());
            let serving = Serving::new(&cfg.edge, tls);
            tasks.push(serve(tcp, app, serving, cap, stop_rx.clone(), stats));
            let scheme = if l.tls.is_some() { "https" } else { "http" };
            tracing::info!(%addr, scheme, region = cfg.region_name(l.region), "listening");
            listeners.push((cfg.region_name(l.region).to_string(), addr));
        }
        let (tcp, admin) = admin_socket;
        let admin_app = super::admin::admin_router(hub.clone());
        let stats = ConnStats::default();
        let serving = Serving::new(&cfg.edge, None);
        tasks.push(serve(tcp, admin_app, serving, ADMIN_CAP, stop_rx, stats));
        tracing::info!(%admin, "admin listening");
        Ok(Gateway {
            hub,
            listeners,
            admin,
            stop,
            tasks,
        })
    }

    /// The generation of state new requests start on.
    pub fn state(&self) -> Arc<AppState> {
        self.hub.current()
    }

    /// The configuration new requests start on.
    pub fn config(&self) -> Arc<Config> {
        self.hub.current().cfg.clone()
    }

    /// What every listener shares (the current state, connection counters).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Bound addresses, one per listener, with the region each represents.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.clone()
    }

    /// The first listener of a region.
    pub fn addr(&self, region: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, a)| *a)
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Swap in a new configuration (see `edge::reload`).
    pub async fn reload(&self, cfg: Config) -> Result<String, ReloadError> {
        self.hub.reload(cfg).await
    }

    /// Reload from the file the running configuration came from.
    pub async fn reload_from_file(&self) -> Result<String, ReloadError> {
        self.hub.reload_from_file().await
    }

    /// SIGTERM: fail `/readyz` now, keep serving for `delay`, then [`Gateway::shutdown`].
    pub async fn drain(self, delay: Duration, grace: Duration) -> bool {
        self.hub.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            ?delay,
            "draining: /readyz fails; new connections stop after the delay"
        );
        tokio::time::sleep(delay).await;
        self.shutdown(grace).await
    }

    /// Stop accepting and let in-flight requests finish within `grace`. Returns false when the
    /// deadline cut requests off.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.hub.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        let clean = tokio::time::timeout(grace, all).await.is_ok();
        let state = self.hub.current();
        state.flush_shared().await;
        state.telemetry.shutdown().await;
        clean
    }
}

/// Per deployment, the base URL of the simulator started for it (`None` for every other
/// deployment); an error if an embedded `sim` deployment has none or another deployment has one.
fn sim_url_table(
    cfg: &Config,
    sim_urls: &HashMap<DeploymentIx, String>,
) -> Result<Vec<Option<String>>, GatewayError> {
    let mut table = vec![None; cfg.deployments.len()];
    for (d, _) in cfg.embedded_sims() {
        let dep = &cfg.deployments[d.0 as usize];
        let url = sim_urls.get(&d).ok_or_else(|| GatewayError::NoSimUrl {
            model: cfg.models[dep.model].id.clone(),
            region: cfg.region_name(dep.region).to_string(),
        })?;
        table[d.0 as usize] = Some(url.trim_end_matches('/').to_string());
    }
    if let Some(d) = sim_urls.keys().find(|d| {
        table
            .get(d.0 as usize)
            .is_none_or(|url: &Option<String>| url.is_none())
    }) {
        return Err(GatewayError::UnexpectedSimUrl(d.0));
    }
    Ok(table)
}

/// The embedded simulators' URLs by (model id, region name), for reloads.
fn sims_by_name(cfg: &Config, urls: &[Option<String>]) -> HashMap<(String, String), String> {
    cfg.deployments
        .iter()
        .zip(urls)
        .filter_map(|(d, url)| {
            let key = (
                cfg.models[d.model].id.clone(),
                cfg.region_name(d.region).to_string(),
            );
            url.clone().map(|u| (key, u))
        })
        .collect()
}

/// Bind `addr`; the socket and the address it got.
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), GatewayError> {
    let bind_err = |source| GatewayError::Bind { addr, source };
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let bound = tcp.local_addr().map_err(bind_err)?;
    Ok((tcp, bound))
}

/// Serve `app` on `tcp` on a task until `stop` turns true.
fn serve(
    tcp: tokio::net::TcpListener,
    app: axum::Router,
    serving: Serving,
    cap: usize,
    stop: watch::Receiver<bool>,
    stats: ConnStats,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        conn::serve(tcp, app, serving, cap, stop, stats).await;
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_sim_needs_a_url_and_nothing_else_takes_one() {
        let cfg = Config::embedded_default().unwrap();
        let embedded: Vec<DeploymentIx> = cfg.embedded_sims().map(|(d, _)| d).collect();
        assert_eq!(embedded.len(), cfg.deployments.len(), "all simulated");

        let err = sim_url_table(&cfg, &HashMap::new()).unwrap_err();
        assert!(matches!(err, GatewayError::NoSimUrl { .. }), "{err}");

        let mut urls: HashMap<DeploymentIx, String> = embedded
            .iter()
            .map(|d| (*d, format!("http://127.0.0.1:{}/v1/", 9000 + d.0)))
            .collect();
        let table = sim_url_table(&cfg, &urls).unwrap();
        assert_eq!(table[1].as_deref(), Some("http://127.0.0.1:9001/v1"));
        assert!(table.iter().all(Option::is_some));

        let beyond = DeploymentIx(cfg.deployments.len() as u32);
        urls.insert(beyond, "http://127.0.0.1:1/v1".into());
        let err = sim_url_table(&cfg, &urls).unwrap_err();
        assert!(
            matches!(err, GatewayError::UnexpectedSimUrl(d) if d == beyond.0),
            "{err}"
        );
    }
}

//! The embedded stack: the simulators of a configuration's `kind = "sim"` deployments without
//! `base_url`, started in this process, and the gateway in front of them.
//!
//! The gateway never starts simulators (DESIGN §2.1): it reaches every upstream over HTTP. This
//! crate is what runs `spillway serve`'s embedded default, the self-contained benchmarks and the
//! end-to-end tests:
//!
//! 1. [`Stack::start`] starts one simulator per embedded deployment
//!    ([`Config::embedded_sims`]) on `127.0.0.1:0`, in that deployment's region, with its
//!    configured [`SimParams`];
//! 2. then starts the gateway with their base URLs ([`Gateway::start_with_sims`]);
//! 3. [`Stack::shutdown`] stops the gateway first (in-flight requests finish against the
//!    simulators still running), then the simulators.
//!
//! If a step fails, what was already started is stopped before the error is returned.
//!
//! The gateway's end-to-end tests live in this crate's `tests/`: they run on a [`Stack`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use spillway_core::DeploymentIx;
use spillway_gateway::config::SimParams;
use spillway_gateway::{Config, Gateway, GatewayError};
use spillway_sim::{SimConfig, SimError, SimHandle};

/// Why the embedded stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot start the simulator for {model} in {region}: {source}")]
    Sim {
        model: String,
        region: String,
        #[source]
        source: SimError,
    },
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// A running gateway and the simulators it was started in front of.
pub struct Stack {
    gateway: Gateway,
    /// The configuration the stack started with (its deployments index `sims`).
    started: std::sync::Arc<Config>,
    /// Per deployment of `started`: its in-process simulator, if it has one.
    sims: Vec<Option<SimHandle>>,
    /// The base URL of each embedded deployment's simulator.
    sim_urls: HashMap<DeploymentIx, String>,
}

/// The simulator configuration of an embedded deployment in `region`: the configured
/// parameters, the simulator's defaults for the rest.
pub fn sim_config(params: &SimParams, region: &str) -> SimConfig {
    SimConfig {
        region: region.to_string(),
        concurrency: params.concurrency,
        queue_limit: params.queue_limit,
        prefill_tokens_per_sec: params.prefill_tokens_per_sec,
        decode_tokens_per_sec: params.decode_tokens_per_sec,
        rtt: params.rtt,
        time_scale: params.time_scale,
        text_seed: params.text_seed,
        prefix_cache_blocks: params.prefix_cache_blocks,
        ..SimConfig::default()
    }
}

impl Stack {
    /// Start the simulators of `cfg`'s embedded deployments, then the gateway.
    pub async fn start(cfg: Config) -> Result<Stack, EmbeddedError> {
        let mut sims: Vec<Option<SimHandle>> = vec![None; cfg.deployments.len()];
        let mut urls = HashMap::new();
        for (d, params) in cfg.embedded_sims() {
            let dep = &cfg.deployments[d.0 as usize];
            let region = cfg.region_name(dep.region);
            match spawn_sim(sim_config(params, region)).await {
                Ok(sim) => {
                    urls.insert(d, sim.base_url());
                    sims[d.0 as usize] = Some(sim);
                }
                Err(source) => {
                    stop_all(&sims);
                    return Err(EmbeddedError::Sim {
                        model: cfg.models[dep.model].id.clone(),
                        region: region.to_string(),
                        source,
                    });
                }
            }
        }
        match Gateway::start_with_sims(cfg, &urls).await {
            Ok(gateway) => Ok(Stack {
                started: gateway.config(),
                gateway,
                sims,
                sim_urls: urls,
            }),
            Err(e) => {
                stop_all(&sims);
                Err(e.into())
            }
        }
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The in-process simulator serving `model` in `region`, if the stack runs one.
    pub fn sim(&self, model: &str, region: &str) -> Option<&SimHandle> {
        // The simulators were started for the first configuration's deployments (a reload
        // reaches only those).
        let cfg = &self.started;
        let d = cfg.deployment(cfg.model_ix(model)?, cfg.region_ix(region)?)?;
        self.sims.get(d.0 as usize)?.as_ref()
    }

    /// The base URL of each embedded deployment's simulator: what another gateway instance of
    /// the same configuration is started with ([`Gateway::start_with_sims`]) to share them.
    pub fn sim_urls(&self) -> &HashMap<DeploymentIx, String> {
        &self.sim_urls
    }

    /// Every in-process simulator, in deployment order.
    pub fn sims(&self) -> impl Iterator<Item = &SimHandle> {
        self.sims.iter().flatten()
    }

    /// Drain the gateway ([`Gateway::drain`]: `/readyz` fails, new connections stop after
    /// `delay`, in-flight requests get `grace`), then stop the simulators.
    pub async fn drain(self, delay: Duration, grace: Duration) -> bool {
        let clean = self.gateway.drain(delay, grace).await;
        stop_all(&self.sims);
        clean
    }

    /// Stop the gateway (in-flight requests get `grace` to finish, see [`Gateway::shutdown`]),
    /// then the simulators. Returns false when the deadline cut requests off.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let clean = self.gateway.shutdown(grace).await;
        stop_all(&self.sims);
        clean
    }
}

async fn spawn_sim(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    spillway_sim::spawn(cfg, listener).await
}

fn stop_all(sims: &[Option<SimHandle>]) {
    for sim in sims.iter().flatten() {
        sim.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_defaults_are_the_simulators() {
        let ours = sim_config(&SimParams::default(), "r");
        let theirs = SimConfig {
            region: "r".into(),
            ..SimConfig::default()
        };
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    }
}

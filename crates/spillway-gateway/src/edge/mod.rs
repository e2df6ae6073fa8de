//! The edge: what faces the network before any API adapter runs.
//!
//! * [`conn`]: the accept loop and hyper's connection settings: header-read timeout (also the
//!   keep-alive idle timeout), connection cap, parser limits, draining on shutdown.
//! * `slots`: a listener's connection slots; at the cap the connection idle the longest makes
//!   room.
//! * [`guard`]: per request, before the body is read: URI, header and body limits, `Expect`,
//!   the body-read deadline; refusals in the caller's API shape.
//! * [`routes`]: the API listener's path table; 404 and 405 in the caller's shape.
//! * [`admin`]: the admin listener: `/metrics`, `/healthz`, `/readyz`, `/admin/reload`.
//! * [`dashboard`]: the live dashboard on the admin listener (`/dashboard`).
//! * [`reload`]: a new configuration validated, then swapped in atomically.
//! * [`server`]: [`server::Gateway`]: start, reload, drain, shutdown.
//!
//! Every request starts on the [`Hub`]'s current generation of state (an `Arc<AppState>`),
//! which it keeps to its end: a reload swaps the generation, and requests in flight finish on
//! the configuration they started with.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use spillway_core::RegionIx;

use crate::metrics::ListenerLabels;
use crate::state::AppState;

pub mod admin;
pub mod conn;
pub mod dashboard;
pub mod guard;
pub mod reload;
pub mod routes;
pub mod server;
mod slots;

/// What every listener shares: the current generation of state, the drain flag, and what a
/// reload needs to build the next generation.
pub struct Hub {
    current: RwLock<Arc<AppState>>,
    draining: AtomicBool,
    /// The embedded simulators' base URLs by (model id, region name), kept for reloads.
    sims: HashMap<(String, String), String>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Per listener (same order as `cfg.listeners`), its connection counters.
    pub conns: Vec<conn::ConnStats>,
}

impl Hub {
    fn new(state: Arc<AppState>, sims: HashMap<(String, String), String>) -> Hub {
        let cfg = &state.cfg;
        let conns = cfg
            .listeners
            .iter()
            .map(|l| {
                let labels = ListenerLabels {
                    region: cfg.region_name(l.region).to_string(),
                    bind: l.bind.to_string(),
                };
                conn::ConnStats::registered(&state.metrics.connections, &labels)
            })
            .collect();
        Hub {
            current: RwLock::new(state),
            draining: AtomicBool::new(false),
            sims,
            reloading: tokio::sync::Mutex::new(()),
            conns,
        }
    }

    /// The generation new requests start on.
    pub fn current(&self) -> Arc<AppState> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn swap(&self, next: Arc<AppState>) -> Arc<AppState> {
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, next)
    }

    /// True from the moment a drain starts: `/readyz` fails.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// One API listener's handle on the hub.
#[derive(Clone)]
pub(crate) struct Lane {
    hub: Arc<Hub>,
    /// The listener's position in `cfg.listeners` (reloads keep listeners as they are).
    listener: usize,
}

impl Lane {
    /// The generation to serve this request on, and the listener's region in it.
    fn now(&self) -> (Arc<AppState>, RegionIx) {
        let app = self.hub.current();
        let region = app
            .cfg
            .listeners
            .get(self.listener)
            .map_or(RegionIx(0), |l| l.region);
        (app, region)
    }
}

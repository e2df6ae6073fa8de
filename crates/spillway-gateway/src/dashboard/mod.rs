//! The live regional dashboard's data: what `GET /dashboard` on the admin listener shows
//! (docs/DASHBOARD.md).
//!
//! * [`Dashboard::record`] is called once per request, from `drive::finish::end` (the one place
//!   a request ends), with the figures the end already has: source and serving region, how it
//!   got there, outcome, tenant, tokens, cost at the source region's price, and a stream's time
//!   to first byte. It takes one short lock and counts into a fixed-size [`window::Window`].
//! * [`snapshot`] builds the JSON snapshot a viewer receives: the window's recent rates and
//!   totals, plus the routing core's deployment state (in flight, effective limit, health,
//!   ejection, cooldown), which the caller (`edge::dashboard`) reads at snapshot time.
//! * [`Feed`] shares snapshots among viewers: one ticker task builds a snapshot once a second
//!   while anyone watches and hands the same bytes to every viewer, so viewers cost the request
//!   path nothing; when the last viewer leaves the ticker stops.
//! * [`assets`]: the page, its script and style sheet, embedded in the binary.
//!
//! The dashboard lives in the process's state and survives reloads (like the metrics): its
//! figures are keyed by region and tenant names, not by positions in a configuration.
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub mod assets;
mod feed;
pub mod snapshot;
pub mod window;

pub use feed::Feed;

use spillway_core::Reason;
use window::{Class, Entry, Route, Window};

/// Seconds over which rates (requests/s, flows/s, throttles/s) are averaged.
pub const RATE_SECS: u64 = 10;

/// One ended request, as `drive::finish` describes it.
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    pub source: &'a str,
    /// Where it was served (or was being served when it ended).
    pub served_in: Option<&'a str>,
    pub reason: Option<Reason>,
    /// The outcome label of metrics and logs (`ok`, `throttled`, `bad_request`, …).
    pub outcome: &'a str,
    /// Refused at the edge, before it had an exchange (a `throttled` there is the tenant's
    /// quota; from an exchange it is capacity).
    pub at_edge: bool,
    pub tenant: Option<&'a str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars at the source region's price.
    pub cost: Option<f64>,
    /// A streamed answer's time from admission to its first byte, in seconds.
    pub stream_ttft: Option<f64>,
}

/// The dashboard's aggregator and its feed of snapshots.
#[derive(Debug)]
pub struct Dashboard {
    epoch: Instant,
    window: Mutex<Window>,
    pub feed: Arc<Feed>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            epoch: Instant::now(),
            window: Mutex::new(Window::default()),
            feed: Arc::default(),
        }
    }
}

impl Dashboard {
    /// Count one ended request.
    pub fn record(&self, e: &Ended<'_>) {
        let second = self.second();
        let class = match e.outcome {
            "ok" => Class::Served,
            "throttled" if e.at_edge => Class::ThrottledQuota,
            "throttled" => Class::ThrottledCapacity,
            _ => Class::Error,
        };
        let route = match e.reason {
            Some(
                Reason::SpillCapacity
                | Reason::SpillUnhealthy
                | Reason::SpillCache
                | Reason::SpillBalance,
            ) => Route::Spill,
            Some(Reason::Failover(_) | Reason::Resume(_)) => Route::Failover,
            Some(Reason::Local) | None => Route::Local,
        };
        let mut w = self.window();
        let entry = Entry {
            source: w.intern(e.source),
            served_in: e.served_in.map(|r| (w.intern(r), route)),
            tenant: e.tenant.map(|t| w.intern(t)),
            class,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cost: e.cost.unwrap_or(0.0),
            ttft_ms: e.stream_ttft.map(|s| s * 1000.0),
        };
        w.record(second, &entry);
    }

    /// Whole seconds since the dashboard started.
    pub fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    pub(crate) fn window(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

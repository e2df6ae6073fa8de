//! Prometheus metrics (`GET /metrics` on the admin listener), with `prometheus-client`.
//!
//! * **Per request** ([`ended`]): everything about a request — requests, flows between
//!   regions, throttles, tokens, cost, TTFT, TPOT, end-to-end and gateway-overhead histograms,
//!   upstream attempts — is written once, from the one end-of-request summary that
//!   `drive::finish` also writes the log line and the audit record from, so the three agree.
//! * **Per deployment** (in flight, effective limit, health, remaining cooldown and ejection):
//!   read from the routing core at scrape time ([`Metrics::observe_deployment`]); the remote
//!   ones (other instances' in-flight, ejections learned from them) are set by the shared-state
//!   sync task (`state::shared_deployments`).
//! * **Process**: shared-state health and call latency (`state::redis_link`), connections per
//!   listener (`edge::conn`), tokio tasks.
//!
//! Labels are bounded by the configuration ([`labels`]). The scrape is OpenMetrics for a
//! scraper that asks for it (Prometheus does) and classic text otherwise ([`exposition`]).
//! `docs/METRICS.md` lists every family.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

pub mod ended;
pub mod exposition;
pub mod labels;

pub use ended::Ended;
pub use exposition::Format;
pub use labels::*;

use crate::config::Config;

/// A histogram family whose buckets are chosen per family.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
/// A counter of a fractional amount (dollars).
pub type FloatCounter = Counter<f64, AtomicU64>;

fn latency_buckets() -> Histogram {
    // 5 ms .. 82 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn tpot_buckets() -> Histogram {
    // 1 ms .. 2 s
    Histogram::new(exponential_buckets(0.001, 2.0, 12))
}

fn overhead_buckets() -> Histogram {
    // 25 µs .. 0.8 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

fn state_call_buckets() -> Histogram {
    // 0.1 ms .. 0.8 s
    Histogram::new(exponential_buckets(0.000_1, 2.0, 14))
}

fn histograms<L>(buckets: fn() -> Histogram) -> Histograms<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(buckets)
}

/// Connection counters per listener (kept by `edge::conn`).
#[derive(Clone, Default)]
pub struct ConnMetrics {
    pub open: Family<ListenerLabels, Gauge>,
    pub accepted: Family<ListenerLabels, Counter>,
    pub refused: Family<ListenerLabels, Counter>,
    pub evicted: Family<ListenerLabels, Counter>,
}

/// The shared state's health and the latency of its calls (kept by `state::redis_link`).
#[derive(Clone)]
pub struct StateMetrics {
    /// 1 while the shared state answers (always 1 with the memory backend).
    pub up: Gauge,
    pub call_seconds: Histogram,
    pub call_errors: Counter,
}

/// What is written at the end of each request (see [`ended`]).
pub struct RequestMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub flows: Family<FlowLabels, Counter>,
    pub throttles: Family<ThrottleLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost: Family<CostLabels, FloatCounter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub duration: Histograms<DurationLabels>,
    pub ttft: Histograms<RouteLabels>,
    pub tpot: Histograms<RouteLabels>,
    pub overhead: Histograms<ApiLabels>,
    pub upstream_first_byte: Histograms<DeploymentLabels>,
}

/// Per-deployment gauges, read from the routing core at each scrape.
#[derive(Default)]
pub struct DeploymentMetrics {
    pub in_flight: Family<DeploymentLabels, Gauge>,
    pub limit: Family<DeploymentLabels, Gauge>,
    pub healthy: Family<DeploymentLabels, Gauge>,
    pub cooldown: Family<DeploymentLabels, Gauge<f64, AtomicU64>>,
    pub ejected: Family<DeploymentLabels, Gauge<f64, AtomicU64>>,
    /// The share of the cached prompt tokens the routing expected here that the upstream's
    /// reports bore out (1 until a report).
    pub prefix_cache_trust: Family<DeploymentLabels, Gauge<f64, AtomicU64>>,
    /// Requests that waited in the deployment, their full source, on the tail budget.
    pub tail_waits: Family<DeploymentLabels, Counter>,
    /// The core's count of tail waits at the last scrape, per deployment (not exported): the
    /// counter adds what it grew by since.
    tail_waits_seen: Family<DeploymentLabels, Gauge>,
    /// Requests in flight per deployment on the other live instances, as last synced (Redis).
    pub remote_in_flight: Family<DeploymentLabels, Gauge>,
    /// Ejections per deployment learned from the other instances through Redis.
    pub remote_ejections: Family<DeploymentLabels, Counter>,
}

pub struct Metrics {
    registry: Registry,
    pub request: RequestMetrics,
    pub deployment: DeploymentMetrics,
    pub state: StateMetrics,
    pub connections: ConnMetrics,
    /// tokio tasks alive in the process, read at each scrape (a leak shows as growth).
    pub runtime_tasks: Gauge,
}

impl Metrics {
    pub fn new(_cfg: &Config) -> Metrics {
        let mut registry = Registry::with_prefix("spillway");
        let request = register_requests(&mut registry);
        let deployment = register_deployments(&mut registry);
        let state = register_state(&mut registry);
        let connections = register_connections(&mut registry);
        let runtime_tasks = Gauge::default();
        registry.register(
            "runtime_tasks",
            "tokio tasks alive in the gateway process, read at each scrape",
            runtime_tasks.clone(),
        );
        Metrics {
            registry,
            request,
            deployment,
            state,
            connections,
            runtime_tasks,
        }
    }

    /// One deployment's state as the routing core sees it now.
    pub fn observe_deployment(&self, labels: &DeploymentLabels, v: &DeploymentNow) {
        let d = &self.deployment;
        d.in_flight
            .get_or_create(labels)
            .set(i64::from(v.in_flight));
        d.limit.get_or_create(labels).set(i64::from(v.limit));
        d.healthy.get_or_create(labels).set(i64::from(v.healthy));
        d.cooldown.get_or_create(labels).set(v.cooldown_seconds);
        d.ejected.get_or_create(labels).set(v.ejected_seconds);
        d.prefix_cache_trust
            .get_or_create(labels)
            .set(v.prefix_cache_trust);
        // The core keeps the running count; the counter adds what it grew by since the last
        // scrape. A count lower than the last is a new core (a reload that changed the routing
        // inputs starts one at zero, while the metrics carry on): all of it is new.
        let now = i64::try_from(v.tail_waits).unwrap_or(i64::MAX);
        let before = d.tail_waits_seen.get_or_create(labels).set(now);
        let grown = if now >= before { now - before } else { now };
        d.tail_waits
            .get_or_create(labels)
            .inc_by(u64::try_from(grown).unwrap_or(0));
    }

    /// The scrape, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        match format {
            Format::OpenMetrics => out,
            Format::Classic => exposition::to_classic(&out),
        }
    }
}

/// A deployment's state at a scrape.
pub struct DeploymentNow {
    pub in_flight: u32,
    pub limit: u32,
    pub healthy: bool,
    /// Until the cooldown after a 429 ends (0 when none).
    pub cooldown_seconds: f64,
    /// Until the ejection (open circuit) ends (0 when none).
    pub ejected_seconds: f64,
    /// How far the upstream's cached-token reports bear the prefix estimate out (0 to 1).
    pub prefix_cache_trust: f64,
    /// Requests that waited here, their full source, on the tail budget so far.
    pub tail_waits: u64,
}

fn register_requests(r: &mut Registry) -> RequestMetrics {
    let m = RequestMetrics {
        requests: Family::default(),
        flows: Family::default(),
        throttles: Family::default(),
        tokens: Family::default(),
        cost: Family::default(),
        attempts: Family::default(),
        duration: histograms(latency_buckets),
        ttft: histograms(latency_buckets),
        tpot: histograms(tpot_buckets),
        overhead: histograms(overhead_buckets),
        upstream_first_byte: histograms(latency_buckets),
    };
    r.register("requests", "Client requests by tenant, profile, canonical model, source region, serving region (destination), API and outcome", m.requests.clone());
    r.register("flows", "Requests served outside their source region, by source, serving region (destination) and reason (spill:capacity, spill:unhealthy, spill:cache, spill:balance, failover:<kind>, resume:<kind>)", m.flows.clone());
    r.register("throttles", "429s given to clients, by what ran out: tenant_in_region or tenant_cross_region quota, capacity (no destination had room), reserve (only other regions' reserves for their own requests had room), upstream (every destination tried answered 429)", m.throttles.clone());
    r.register(
        "tokens",
        "Input and output tokens of answered requests, by tenant, profile and canonical model",
        m.tokens.clone(),
    );
    r.register("cost_usd", "Cost in US dollars at the source region's price, by tenant, profile, canonical model and source region", m.cost.clone());
    r.register("upstream_attempts", "Upstream attempts by serving region, canonical model and result (ok, cancelled or the failure kind)", m.attempts.clone());
    r.register(
        "request_duration_seconds",
        "End to end: from the request's first byte at the gateway to its last byte to the client",
        m.duration.clone(),
    );
    r.register("ttft_seconds", "Time to first token of streamed requests, as the client sees it (from the request's arrival); non-streamed requests are not counted", m.ttft.clone());
    r.register("tpot_seconds", "Time per output token after the first, of streamed requests with two or more output tokens", m.tpot.clone());
    r.register("gateway_overhead_seconds", "The gateway's own time on a request: end to end minus the time an upstream attempt was under way", m.overhead.clone());
    r.register(
        "upstream_first_byte_seconds",
        "Per upstream attempt that answered: from sending it to the first byte of its answer",
        m.upstream_first_byte.clone(),
    );
    m
}

fn register_deployments(r: &mut Registry) -> DeploymentMetrics {
    let m = DeploymentMetrics::default();
    r.register(
        "deployment_in_flight",
        "Requests in flight per deployment on this instance",
        m.in_flight.clone(),
    );
    r.register(
        "deployment_limit",
        "Effective (adaptive) concurrency limit per deployment",
        m.limit.clone(),
    );
    r.register(
        "deployment_healthy",
        "1 when the deployment is not ejected",
        m.healthy.clone(),
    );
    r.register(
        "deployment_cooldown_seconds",
        "Seconds left of the deployment's cooldown after a 429 (0 when none)",
        m.cooldown.clone(),
    );
    r.register(
        "deployment_ejected_seconds",
        "Seconds left of the deployment's ejection (open circuit; 0 when none)",
        m.ejected.clone(),
    );
    r.register("deployment_prefix_cache_trust", "Share of the cached prompt tokens the routing expected on the deployment that the upstream reported reading from its prefix cache (a fast average; 1 until a report): the factor on the prefill its cache is credited with", m.prefix_cache_trust.clone());
    r.register("deployment_tail_waits", "Requests that waited in the deployment, their full source region, on the tail budget (`[routing] tail_budget`) rather than be throttled", m.tail_waits.clone());
    r.register("deployment_remote_in_flight", "Requests in flight per deployment on the other gateway instances (shared state; 0 while Redis is unreachable)", m.remote_in_flight.clone());
    r.register(
        "deployment_remote_ejections",
        "Ejections per deployment learned from other gateway instances (shared state)",
        m.remote_ejections.clone(),
    );
    m
}

fn register_state(r: &mut Registry) -> StateMetrics {
    let m = StateMetrics {
        up: Gauge::default(),
        call_seconds: state_call_buckets(),
        call_errors: Counter::default(),
    };
    m.up.set(1);
    r.register("shared_state_up", "1 while the shared state (Redis) answers; 0 while quotas run on local shares (always 1 with the memory backend)", m.up.clone());
    r.register(
        "shared_state_call_seconds",
        "Latency of each call to the shared state (Redis), answered or not",
        m.call_seconds.clone(),
    );
    r.register(
        "shared_state_call_errors",
        "Calls to the shared state (Redis) that failed or timed out",
        m.call_errors.clone(),
    );
    m
}

fn register_connections(r: &mut Registry) -> ConnMetrics {
    let m = ConnMetrics::default();
    r.register(
        "connections_open",
        "Client connections open per API listener",
        m.open.clone(),
    );
    r.register(
        "connections_accepted",
        "Client connections accepted per API listener",
        m.accepted.clone(),
    );
    r.register("connections_refused", "Client connections closed at once because the listener's cap was reached and every connection had a request in flight", m.refused.clone());
    r.register(
        "connections_evicted",
        "Idle client connections closed to make room for a new one at the listener's cap",
        m.evicted.clone(),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(tail_waits: u64) -> DeploymentNow {
        DeploymentNow {
            in_flight: 3,
            limit: 16,
            healthy: true,
            cooldown_seconds: 0.0,
            ejected_seconds: 0.0,
            prefix_cache_trust: 1.0,
            tail_waits,
        }
    }

    /// The embedded default's metrics and one deployment's labels.
    fn one_deployment() -> (Metrics, DeploymentLabels) {
        let cfg = Config::embedded_default().expect("the embedded default");
        let labels = DeploymentLabels {
            region: "us-east-1".into(),
            model: "m".into(),
        };
        (Metrics::new(&cfg), labels)
    }

    fn tail_waits_line(m: &Metrics) -> String {
        let text = m.encode(Format::Classic);
        text.lines()
            .find(|l| l.starts_with("spillway_deployment_tail_waits_total{"))
            .unwrap_or_else(|| panic!("no tail waits in:\n{text}"))
            .to_string()
    }

    #[test]
    fn the_tail_waits_counter_follows_the_core_s_count() {
        let (m, labels) = one_deployment();
        m.observe_deployment(&labels, &seen(0));
        assert!(
            tail_waits_line(&m).ends_with(" 0"),
            "{}",
            tail_waits_line(&m)
        );
        m.observe_deployment(&labels, &seen(7));
        m.observe_deployment(&labels, &seen(7));
        let line = tail_waits_line(&m);
        assert!(line.contains("region=\"us-east-1\""), "{line}");
        assert!(line.ends_with(" 7"), "scraped twice, counted once: {line}");
        m.observe_deployment(&labels, &seen(9));
        assert!(tail_waits_line(&m).ends_with(" 9"));
    }

    #[test]
    fn the_tail_waits_counter_keeps_counting_across_a_new_core() {
        let (m, labels) = one_deployment();
        m.observe_deployment(&labels, &seen(7));
        // A reload that changed the routing inputs: the new core counts from zero.
        m.observe_deployment(&labels, &seen(2));
        let line = tail_waits_line(&m);
        assert!(line.ends_with(" 9"), "7 before, 2 since: {line}");
        m.observe_deployment(&labels, &seen(5));
        assert!(tail_waits_line(&m).ends_with(" 12"));
    }
}

//! Prometheus metrics (`GET /metrics`), written in the source region's listener like Bedrock's.
//!
//! Per-request counters and latency histograms are updated on the request path; deployment
//! gauges (in-flight, adaptive limit, health) are read from the routing core at scrape time; the
//! remote ones (other instances' in-flight, ejections learned from them) are updated by the
//! shared-state sync task (`shared_deployments`).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::Config;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub source: String,
    pub destination: String,
    pub model: String,
    pub outcome: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub source: String,
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub destination: String,
    pub model: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub region: String,
    pub model: String,
}

/// One listener: its region and address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub region: String,
    pub bind: String,
}

/// Connection counters per listener (kept by `edge::conn`).
#[derive(Clone, Default)]
pub struct ConnMetrics {
    pub open: Family<ListenerLabels, Gauge>,
    pub accepted: Family<ListenerLabels, Counter>,
    pub refused: Family<ListenerLabels, Counter>,
    pub evicted: Family<ListenerLabels, Counter>,
}

impl ConnMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_open",
            "Client connections open per API listener",
            self.open.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted per API listener",
            self.accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at once because the listener's cap was reached and every connection had a request in flight",
            self.refused.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle client connections closed to make room for a new one at the listener's cap",
            self.evicted.clone(),
        );
    }
}

fn ttft_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.002, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub ttft: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub in_flight: Family<DeploymentLabels, Gauge>,
    pub limit: Family<DeploymentLabels, Gauge>,
    pub healthy: Family<DeploymentLabels, Gauge>,
    /// Requests in flight per deployment on the other live instances, as last synced (Redis).
    pub remote_in_flight: Family<DeploymentLabels, Gauge>,
    /// Ejections per deployment learned from the other instances through Redis.
    pub remote_ejections: Family<DeploymentLabels, Counter>,
    /// 1 while the shared state answers (always 1 with the memory backend).
    pub shared_state_up: Gauge,
    pub connections: ConnMetrics,
    /// tokio tasks alive in the process, read at each scrape (a leak shows as growth).
    pub runtime_tasks: Gauge,
}

impl Metrics {
    pub fn new(_cfg: &Config) -> Metrics {
        let mut registry = Registry::with_prefix("spillway");
        let requests = Family::<RequestLabels, Counter>::default();
        let ttft = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            ttft_histogram as fn() -> Histogram,
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        let in_flight = Family::<DeploymentLabels, Gauge>::default();
        let limit = Family::<DeploymentLabels, Gauge>::default();
        let healthy = Family::<DeploymentLabels, Gauge>::default();
        let remote_in_flight = Family::<DeploymentLabels, Gauge>::default();
        let remote_ejections = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests by source, serving region, outcome and routing reason",
            requests.clone(),
        );
        registry.register(
            "ttft_seconds",
            "Time to first byte of the upstream answer, as seen by the gateway",
            ttft.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Upstream attempts by destination and result",
            attempts.clone(),
        );
        registry.register(
            "deployment_in_flight",
            "Requests in flight per deployment",
            in_flight.clone(),
        );
        registry.register(
            "deployment_limit",
            "Adaptive concurrency limit per deployment",
            limit.clone(),
        );
        registry.register(
            "deployment_healthy",
            "1 when the deployment is not ejected",
            healthy.clone(),
        );
        registry.register(
            "deployment_remote_in_flight",
            "Requests in flight per deployment on the other gateway instances (shared state; \
             0 while Redis is unreachable)",
            remote_in_flight.clone(),
        );
        registry.register(
            "deployment_remote_ejections",
            "Ejections per deployment learned from other gateway instances (shared state)",
            remote_ejections.clone(),
        );
        let (shared_state_up, connections, runtime_tasks) = register_process(&mut registry);
        Metrics {
            runtime_tasks,
            connections,
            shared_state_up,
            registry,
            requests,
            ttft,
            attempts,
            in_flight,
            limit,
            healthy,
            remote_in_flight,
            remote_ejections,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process-wide figures: shared state up, connections, tokio tasks.
fn register_process(registry: &mut Registry) -> (Gauge, ConnMetrics, Gauge) {
    let shared_state_up = Gauge::default();
    shared_state_up.set(1);
    registry.register(
        "shared_state_up",
        "1 while the shared state (Redis) answers; 0 while quotas run on local shares",
        shared_state_up.clone(),
    );
    let connections = ConnMetrics::default();
    connections.register(registry);
    let runtime_tasks = Gauge::default();
    registry.register(
        "runtime_tasks",
        "tokio tasks alive in the gateway process, read at each scrape",
        runtime_tasks.clone(),
    );
    (shared_state_up, connections, runtime_tasks)
}

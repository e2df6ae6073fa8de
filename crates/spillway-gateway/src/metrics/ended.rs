//! The metrics of one ended request, written from the figures `drive::finish` gathered once
//! for the log line and the audit record too.
use std::time::Duration;

use super::RequestMetrics;
use super::labels::*;

/// What ran out when a client got a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The tenant's in-region quota (a plain model id).
    TenantInRegion,
    /// The tenant's cross-region quota (an inference profile).
    TenantCrossRegion,
    /// No destination had room.
    Capacity,
    /// Room only in other regions' reserves for their own requests (`spill_reserve`).
    Reserve,
    /// Every destination tried answered 429.
    Upstream,
}

impl Throttle {
    pub fn as_str(self) -> &'static str {
        match self {
            Throttle::TenantInRegion => "tenant_in_region",
            Throttle::TenantCrossRegion => "tenant_cross_region",
            Throttle::Capacity => "capacity",
            Throttle::Reserve => "reserve",
            Throttle::Upstream => "upstream",
        }
    }
}

/// One upstream attempt of the request.
pub struct Attempt<'a> {
    pub destination: &'a str,
    /// `ok`, `cancelled` or the failure kind.
    pub result: &'a str,
    /// From sending it to its answer's first byte, when one came.
    pub first_byte: Option<Duration>,
    /// A continuation of a broken stream: its reason (`resume:<kind>`), counted as a flow from
    /// the source to its destination.
    pub resumed: Option<&'a str>,
}

/// One ended request, as the metrics see it. Empty strings stand for "none" (no tenant, no
/// profile, not served).
pub struct Ended<'a> {
    pub tenant: &'a str,
    pub profile: &'a str,
    pub model: &'a str,
    pub source: &'a str,
    pub destination: &'a str,
    pub api: &'a str,
    pub outcome: &'a str,
    /// Why the serving region was chosen (`local`, `spill:…`, `failover:…`).
    pub reason: Option<&'a str>,
    pub throttle: Option<Throttle>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the source region's price.
    pub cost_usd: Option<f64>,
    pub total: Duration,
    /// Streams only: arrival to the first piece sent to the client.
    pub ttft: Option<Duration>,
    /// Streams with two or more output tokens: time per output token after the first.
    pub tpot: Option<Duration>,
    /// `total` minus the time an upstream attempt was under way.
    pub overhead: Duration,
    pub attempts: &'a [Attempt<'a>],
}

impl RequestMetrics {
    /// Write every per-request family from `e`.
    pub fn observe(&self, e: &Ended<'_>) {
        self.requests
            .get_or_create(&RequestLabels {
                tenant: e.tenant.into(),
                profile: e.profile.into(),
                model: e.model.into(),
                source: e.source.into(),
                destination: e.destination.into(),
                api: e.api.into(),
                outcome: e.outcome.into(),
            })
            .inc();
        if !e.destination.is_empty() && e.destination != e.source {
            let flow = FlowLabels {
                source: e.source.into(),
                destination: e.destination.into(),
                reason: e.reason.unwrap_or("").into(),
            };
            self.flows.get_or_create(&flow).inc();
        }
        for a in e.attempts {
            if let Some(reason) = a.resumed {
                let flow = FlowLabels {
                    source: e.source.into(),
                    destination: a.destination.into(),
                    reason: reason.into(),
                };
                self.flows.get_or_create(&flow).inc();
            }
        }
        if let Some(kind) = e.throttle {
            let t = ThrottleLabels {
                tenant: e.tenant.into(),
                profile: e.profile.into(),
                source: e.source.into(),
                kind: kind.as_str().into(),
            };
            self.throttles.get_or_create(&t).inc();
        }
        self.usage(e);
        self.latency(e);
    }

    fn usage(&self, e: &Ended<'_>) {
        for (direction, n) in [("input", e.input_tokens), ("output", e.output_tokens)] {
            if n > 0 {
                let l = TokenLabels {
                    tenant: e.tenant.into(),
                    profile: e.profile.into(),
                    model: e.model.into(),
                    r#type: direction.into(),
                };
                self.tokens.get_or_create(&l).inc_by(n);
            }
        }
        if let Some(usd) = e.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            let l = CostLabels {
                tenant: e.tenant.into(),
                profile: e.profile.into(),
                model: e.model.into(),
                source: e.source.into(),
            };
            self.cost.get_or_create(&l).inc_by(usd);
        }
    }

    fn latency(&self, e: &Ended<'_>) {
        let route = RouteLabels {
            source: e.source.into(),
            destination: e.destination.into(),
        };
        let duration = DurationLabels {
            source: e.source.into(),
            destination: e.destination.into(),
            api: e.api.into(),
        };
        self.duration
            .get_or_create(&duration)
            .observe(e.total.as_secs_f64());
        if let Some(ttft) = e.ttft {
            self.ttft.get_or_create(&route).observe(ttft.as_secs_f64());
        }
        if let Some(tpot) = e.tpot {
            self.tpot.get_or_create(&route).observe(tpot.as_secs_f64());
        }
        let api = ApiLabels { api: e.api.into() };
        self.overhead
            .get_or_create(&api)
            .observe(e.overhead.as_secs_f64());
        for a in e.attempts {
            let labels = AttemptLabels {
                destination: a.destination.into(),
                model: e.model.into(),
                result: a.result.into(),
            };
            self.attempts.get_or_create(&labels).inc();
            if let Some(fb) = a.first_byte {
                let d = DeploymentLabels {
                    region: a.destination.into(),
                    model: e.model.into(),
                };
                self.upstream_first_byte
                    .get_or_create(&d)
                    .observe(fb.as_secs_f64());
            }
        }
    }
}

/// The time covered by the union of `spans` (start, end): the part of a request during which
/// some upstream attempt was under way (attempts may overlap: a hedge, a failover racing a
/// slow first try).
pub fn covered(spans: &mut [(Duration, Duration)]) -> Duration {
    spans.sort_unstable();
    let mut total = Duration::ZERO;
    let mut current: Option<(Duration, Duration)> = None;
    for &(start, end) in spans.iter() {
        let end = end.max(start);
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn covered_merges_overlaps_and_counts_gaps_out() {
        assert_eq!(covered(&mut []), Duration::ZERO);
        assert_eq!(covered(&mut [(ms(10), ms(20)), (ms(15), ms(30))]), ms(20));
        assert_eq!(covered(&mut [(ms(40), ms(50)), (ms(10), ms(20))]), ms(20));
        assert_eq!(covered(&mut [(ms(10), ms(5))]), Duration::ZERO);
    }

    fn ended<'a>(attempts: &'a [Attempt<'a>]) -> Ended<'a> {
        Ended {
            tenant: "acme",
            profile: "us.m",
            model: "m",
            source: "us-east-1",
            destination: "us-west-2",
            api: "openai.chat",
            outcome: "ok",
            reason: Some("failover:server_error"),
            throttle: None,
            input_tokens: 10,
            output_tokens: 0,
            cost_usd: Some(0.25),
            total: ms(120),
            ttft: None,
            tpot: None,
            overhead: ms(1),
            attempts,
        }
    }

    #[test]
    fn one_request_writes_each_family_once() {
        let m = crate::metrics::register_requests(&mut Default::default());
        let tries = [
            Attempt {
                destination: "us-east-1",
                result: "server_error",
                first_byte: None,
                resumed: None,
            },
            Attempt {
                destination: "us-west-2",
                result: "ok",
                first_byte: Some(ms(30)),
                resumed: None,
            },
        ];
        m.observe(&ended(&tries));
        let mut r = prometheus_client::registry::Registry::default();
        r.register("flows", "", m.flows.clone());
        r.register("tokens", "", m.tokens.clone());
        r.register("ttft", "", m.ttft.clone());
        r.register("attempts", "", m.attempts.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encodes");
        let text = crate::metrics::exposition::to_classic(&text);
        assert!(text.contains("flows_total{source=\"us-east-1\",destination=\"us-west-2\",reason=\"failover:server_error\"} 1"), "{text}");
        assert!(text.contains("type=\"input\"} 10"), "{text}");
        assert!(
            !text.contains("type=\"output\""),
            "no output tokens, no series: {text}"
        );
        assert!(
            !text.contains("ttft_bucket"),
            "not a stream, no TTFT: {text}"
        );
        assert!(
            text.contains("result=\"server_error\"} 1") && text.contains("result=\"ok\"} 1"),
            "{text}"
        );
    }
}
